"""Routine 03: sacrum (26) and coccyx (27) -> background, T13 (28) -> 26, in every grouped mask.

Safe to run twice: a revised mask is marked (header and info yaml) and skipped,
so T13 is never turned into background by a second pass.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import add_common_args, fail, plural, run_main, run_per_sample, setup_logging
from utils.files.sample_info import find_samples
from verse.archive import DESCRIPTOR_DIR, VerseRules
from verse.label_revision import ALREADY_REVISED, revise_sample_labels


logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", type=Path, required=True, help="grouped dataset folder (root_dir/grouped)")
    parser.add_argument("--rules", type=Path, default=DESCRIPTOR_DIR / "archive.yaml", help="archive rules (label_revision, raw_labels)")
    return add_common_args(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        rules = VerseRules.load(args.rules)
        samples = find_samples(args.root_dir)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    work = functools.partial(revise_sample_labels, mapping=rules.label_revision, raw_range=rules.raw_labels)
    report = run_per_sample(samples, work, desc="revise labels", workers=args.workers, key=lambda s: s.id, show_progress=not args.no_pbar,
                            dask_scheduler=args.dask_scheduler, input_dirs=[args.root_dir], output_dirs=[args.root_dir])  # fmt: skip
    skipped = [sid for sid, summary in report.results.items() if summary.startswith(ALREADY_REVISED)]
    if skipped:
        logger.info("%s already revised, skipped (the remap is never applied twice): %s", plural(len(skipped), "sample"), ", ".join(skipped))
    return report.exit_code()


if __name__ == "__main__":
    run_main(main)

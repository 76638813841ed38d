"""Dataset audit: one coded report of everything that looks wrong in a grouped dataset.

Reads every sample below --root_dir once (volume and mask) and checks geometry, labels
against anatomy, intensities, duplicates and metadata. Writes, in --output_dir,
audit.json (one finding per problem: code, severity, sample, file, message, suggestion,
values; a summary by code; the thresholds used; per-sample statistics), audit.xlsx
(the same tables) and audit_signatures.npz. The policy is
descriptors/<dataset>/audit.yaml, overridden by --policy FILE. Codes: docs/audit.md.

Exit code: 0 when no finding at or above --fail_on was reported, 1 otherwise, 2 when
the input as a whole is unusable.

  python utils/audit_dataset.py --root_dir root_dir/grouped --output_dir root_dir/audit
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.audit.codes import FAIL_ON
from utils.run.cli import add_common_args, fail, run_main, setup_logging
from utils.review.options import add_review_args

logger = logging.getLogger("audit_dataset")


def build_parser(datasets: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", type=Path, required=True, help="grouped dataset folder")
    parser.add_argument("--output_dir", type=Path, required=True, help="audit folder (audit.json, audit.xlsx, audit_signatures.npz)")
    parser.add_argument("--dataset", choices=["auto", *datasets], default="auto",
                        help="which descriptors/<dataset>/audit.yaml (and dataset.yaml) to use; auto: told from the info yamls (default)")
    parser.add_argument("--policy", type=Path, metavar="FILE",
                        help="your policy file, applied over the dataset's: thresholds, severities, anatomy, ignored findings (docs/audit.md)")
    parser.add_argument("--fail_on", choices=FAIL_ON, default="error",
                        help="exit 1 when a finding of this severity or above is reported (default %(default)s; never: always 0)")
    parser.add_argument("--manifest_file", type=Path,
                        help="dataset manifest whose split sheets are checked for leaks (default: ROOT_DIR/dataset_manifest.xlsx if present)")
    parser.add_argument("--label_explanation", type=Path,
                        help="label_map.yaml (default: ROOT_DIR/../descriptor/label_map.yaml if present, else the dataset's)")
    add_review_args(parser, "findings on samples marked pass are accepted, with the reviewer's note as the reason (docs/audit.md)")
    parser.add_argument("--recompute", action="store_true",
                        help="read every sample again, also those whose files did not change since the last audit in --output_dir")
    return add_common_args(parser)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from utils.report.dataset_profile import available_profiles

    try:
        datasets = list(available_profiles())
    except ValueError as exc:
        return fail(str(exc))
    args = build_parser(datasets).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    from utils.audit.run import prepare, run_audit
    from utils.labels.label_maps import LabelError

    try:
        setup = prepare(
            args.root_dir,
            args.output_dir,
            dataset=args.dataset,
            policy_file=args.policy,
            manifest_file=args.manifest_file,
            label_map_file=args.label_explanation,
            review_file=args.review,
            no_review=args.no_review,
        )
    except (OSError, ValueError, LabelError) as exc:
        return fail(str(exc))
    result = run_audit(setup, fail_on=args.fail_on, workers=args.workers, dask_scheduler=args.dask_scheduler, show_progress=not args.no_pbar,
                        recompute=args.recompute)
    return result.exit_code


if __name__ == "__main__":
    run_main(main)

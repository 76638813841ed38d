"""Routines that are the same for every dataset; each dataset's numbered script calls one of these.

- :func:`extract_binary_masks_main` — VerSe 04, NME 03, ESO 03
- :func:`dataset_manifest_main` — VerSe 05, NME 04, ESO 04 (dataset's info columns as parameter)
- :func:`index_manifests_main` — VerSe 07, NME 06, ESO 06

The command lines are the tutorials'; options beyond them are marked in --help.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Sequence
from pathlib import Path

from utils.binary_masks import extract_sample_binary_masks
from utils.cli import add_common_args, fail, run_per_sample, setup_logging
from utils.dataset_manifest import build_dataset_manifest
from utils.labels import LabelMap
from utils.sample_info import find_samples
from utils.splits import extract_index_manifests

__all__ = ["extract_binary_masks_main", "dataset_manifest_main", "index_manifests_main"]

logger = logging.getLogger(__name__)


def _parser(description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def extract_binary_masks_main(argv: Sequence[str] | None, description: str | None) -> int:
    """``--root_dir --label_explanation``: write every label's binary mask of every sample that has a mask."""
    parser = _parser(description)
    parser.add_argument("--root_dir", type=Path, required=True, help="grouped dataset folder")
    parser.add_argument("--label_explanation", type=Path, required=True, help="label_map.yaml (root_dir/descriptor/label_map.yaml)")
    args = add_common_args(parser).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        label_map = LabelMap.load(args.label_explanation)
        samples = find_samples(args.root_dir)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    without = [s.id for s in samples if not s.mask.is_file()]
    if without:
        logger.info("%d sample(s) have no mask and get no binary masks: %s", len(without), ", ".join(without))
    work = functools.partial(extract_sample_binary_masks, label_map=label_map)
    report = run_per_sample(
        [s for s in samples if s.mask.is_file()], work, desc="binary masks", workers=args.workers, key=lambda s: s.id, show_progress=not args.no_pbar
    )
    return report.exit_code()


def dataset_manifest_main(argv: Sequence[str] | None, description: str | None, info_columns: Sequence[str]) -> int:
    """``--root_dir --output_manifest_file``: index every sample folder in the ``Manifest`` sheet."""
    parser = _parser(description)
    parser.add_argument("--root_dir", type=Path, required=True, help="grouped dataset folder")
    parser.add_argument("--output_manifest_file", type=Path, required=True, help="dataset_manifest.xlsx to write")
    parser.add_argument("--skip_invalid", action="store_true", help="(addition) write the manifest without the samples that fail the checks")
    args = add_common_args(parser).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        report = build_dataset_manifest(
            args.root_dir, args.output_manifest_file, info_columns, workers=args.workers, skip_invalid=args.skip_invalid, show_progress=not args.no_pbar
        )
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return report.exit_code()


def index_manifests_main(argv: Sequence[str] | None, description: str | None) -> int:
    """``--manifest_file --split_name --output_index_manifest_dir --subsets …`` (repeatable): all or nothing."""
    parser = _parser(description)
    parser.add_argument("--manifest_file", type=Path, required=True, help="dataset_manifest.xlsx holding the split sheet")
    parser.add_argument("--split_name", required=True, help="split worksheet, e.g. split01_standard")
    parser.add_argument("--output_index_manifest_dir", type=Path, required=True, help="folder of the index manifests")
    parser.add_argument(
        "--subsets", nargs="+", action="append", required=True, choices=("train", "val", "test"), metavar="SUBSET",
        help="subsets of one index manifest (repeatable): --subsets train val --subsets test",
    )  # fmt: skip
    args = add_common_args(parser, workers=False).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        written = extract_index_manifests(args.manifest_file, args.split_name, args.subsets, args.output_index_manifest_dir)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    logger.info("%d index manifests in %s", len(written), args.output_index_manifest_dir)
    return 0

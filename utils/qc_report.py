"""Dataset QC report: one picture per sample, one offline index.html, the dataset card in Markdown and JSON.

For every sample folder below --root_dir (a folder holding {ID}_info.yaml) the
three orthogonal planes through the centre of the labelled region are drawn in
patient orientation (radiological convention: the patient's left on the
picture's right in the axial and coronal views), windowed for the modality,
with the mask as a coloured overlay and a legend, into
--output_dir/images/<sample path>.png. --output_dir/index.html shows the
dataset summary, the resolution and label tables of the dataset card and one
sortable, filterable row per sample; dataset_card.md / dataset_card.json hold
the same tables. A sample that cannot be read gets a row with its error.

  python utils/qc_report.py --root_dir root_dir/grouped --output_dir root_dir/qc
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import add_common_args, fail, plural, positive_int, run_main, setup_logging
from utils.files.output_paths import archive_of_dataset, check_not_inside, check_output_dir, portable_path
from utils.review.options import add_review_args, default_review_path, resolve_review
from utils.report.dataset_profile import GENERIC, ReportProfile, Window, available_profiles, detect_sample_profile
from utils.files.sample_info import SampleDir, find_samples

logger = logging.getLogger("qc_report")


def build_parser(datasets: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", type=Path, required=True, help="grouped dataset folder")
    parser.add_argument("--output_dir", type=Path, required=True, help="report folder (index.html, dataset_card.md/.json, images/)")
    parser.add_argument("--dataset", choices=["auto", *datasets], default="auto",
                        help="dataset profile in descriptors/<dataset>/report.yaml (modality, window, summary columns); "
                             "auto: told from the info yamls (default)")
    parser.add_argument("--label_explanation", type=Path,
                        help="label_map.yaml for the names (default: ROOT_DIR/../descriptor/label_map.yaml if present, "
                             "else descriptors/<dataset>/label_map.yaml)")
    parser.add_argument("--small_region_manifest", type=Path,
                        help="xlsx written by small_connected_region_detect.py: flags samples with small regions")
    parser.add_argument("--audit", type=Path, metavar="FILE",
                        help="audit.json of utils/audit_dataset.py: its findings as a table and per-sample flags "
                             "(default: ROOT_DIR/../audit/audit.json if present)")
    parser.add_argument("--samples", nargs="+", metavar="ID", help="report only these samples (IDs or paths below --root_dir)")
    win = parser.add_mutually_exclusive_group()
    win.add_argument("--window", nargs=2, type=float, metavar=("LO", "HI"),
                     help="display window in the volume's units (CT: HU), instead of the dataset's default")
    win.add_argument("--window_percentiles", nargs=2, type=float, metavar=("PLO", "PHI"),
                     help="display window from these percentiles of the planes shown (e.g. 1 99.5)")
    parser.add_argument("--panel_size", type=positive_int, default=256, metavar="PX",
                        help="picture pixels along the largest physical extent of a sample (default %(default)s)")
    add_review_args(parser, "the page shows its verdicts and its review controls start from them")
    parser.add_argument("--diff", type=Path, metavar="FILE",
                        help="(addition) JSON written by utils/diff_datasets.py: the page shows what changed since the old release")
    return add_common_args(parser)  # fmt: skip


def _choose_profile(name: str, samples: list[SampleDir], profiles: dict[str, ReportProfile]) -> ReportProfile:
    if name != "auto":
        return profiles[name]
    profile = detect_sample_profile(samples, profiles)
    if profile is None:
        logger.warning("the info yamls match no descriptors/*/report.yaml; generic report (percentile window, summary by "
                       "subset); pass --dataset %s to choose", "|".join(profiles))  # fmt: skip
        return GENERIC
    logger.info("dataset: %s (told from the info yamls; --dataset to choose)", profile.dataset)
    return profile


def _label_map_path(args: argparse.Namespace, profile: ReportProfile) -> Path | None:
    if args.label_explanation is not None:
        return args.label_explanation
    installed = args.root_dir.resolve().parent / "descriptor" / "label_map.yaml"
    return installed if installed.is_file() else profile.label_map


def _select(samples: list[SampleDir], wanted: list[str], root_dir: Path) -> list[SampleDir]:
    from utils.report.sample import sample_key

    chosen = [s for s in samples if s.id in wanted or sample_key(s, root_dir) in wanted]
    found = {s.id for s in chosen} | {sample_key(s, root_dir) for s in chosen}
    missing = [w for w in wanted if w not in found]
    if missing:
        raise ValueError(f"--samples: no sample folder for {missing} below {root_dir}")
    return chosen


def _audit(args: argparse.Namespace):
    """The audit findings to show: ``--audit FILE``, else ``ROOT_DIR/../audit/audit.json`` when present, else None."""
    from utils.report.findings import default_audit_path, load_audit

    path = args.audit or default_audit_path(args.root_dir)
    if path is None:
        return None
    audit = load_audit(path)
    logger.info("audit findings from %s: %d findings shown", path, len(audit.findings))
    return audit


def main(argv: list[str] | None = None) -> int:
    try:
        profiles = available_profiles()
    except ValueError as exc:
        return fail(str(exc))
    args = build_parser(list(profiles)).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    from utils.labels.label_maps import LabelError, LabelMap
    from utils.maskqc.steps import threads_per_sample
    from utils.diff.report_json import read_diff_json
    from utils.report.build import build_report, read_small_regions

    try:
        samples = find_samples(args.root_dir)
        check_not_inside(args.output_dir, archive_of_dataset(samples), "--output_dir")
        check_output_dir(args.output_dir, "--output_dir")  # before any picture is drawn: a read-only or full folder is one line
        if args.samples:
            samples = _select(samples, args.samples, args.root_dir)
        profile = _choose_profile(args.dataset, samples, profiles)
        window = profile.window
        if args.window:
            window = Window(values=tuple(args.window), name="")
        elif args.window_percentiles:
            window = Window(percentiles=tuple(args.window_percentiles), name="percentiles")
        label_path = _label_map_path(args, profile)
        label_map = LabelMap.load(label_path) if label_path is not None else None
        if label_map is None:
            logger.warning("no label map: the legend shows label values only and no label is flagged as unknown")
        small = read_small_regions(args.small_region_manifest) if args.small_region_manifest else None
        review = resolve_review(args.review, default_review_path(args.root_dir), disabled=args.no_review,
                                dataset=None if profile is GENERIC else profile.dataset)
        diff = read_diff_json(args.diff) if args.diff else None
        audit = _audit(args)
    except (OSError, ValueError, LabelError) as exc:
        return fail(str(exc))
    try:
        outputs = build_report(
            samples,
            root_dir=args.root_dir,
            output_dir=args.output_dir,
            profile=profile,
            window=window,
            label_map=label_map,
            label_map_source=portable_path(label_path, args.output_dir) if label_path is not None else "",
            small_regions=small,
            panel_px=args.panel_size,
            workers=args.workers,
            threads=threads_per_sample(args.workers),
            show_progress=not args.no_pbar,
            review=review,
            diff=diff,
            audit=audit,
        )
    except OSError as exc:
        return fail(f"--output_dir {args.output_dir}: cannot write the report ({exc.strerror or exc})")
    n_bytes = sum(r.image_bytes for r in outputs.records)
    n_failed = sum(r.error is not None for r in outputs.records)
    logger.info("QC report of %s (%s, %.1f MB%s): %s", plural(len(outputs.records), "sample"), plural(len(outputs.records) - n_failed, "picture"),
                n_bytes / 1e6, f", {plural(n_failed, 'sample')} not readable" if n_failed else "", outputs.index)  # fmt: skip
    return outputs.run.exit_code() if outputs.run is not None else 0


if __name__ == "__main__":
    run_main(main)

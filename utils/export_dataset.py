"""Export one split of the clean dataset to nnU-Net v2, MONAI and/or SAT-DS.

  python utils/export_dataset.py --manifest_file root_dir/grouped/dataset_manifest.xlsx \\
      --split_name split01_standard --format nnunetv2 monai satds --output_dir root_dir/export

writes, for the samples of the split worksheet --split_name:
  OUTPUT_DIR/nnUNet_raw/Dataset{ID:03d}_{name}_{split}/   imagesTr labelsTr imagesTs labelsTs
                                                          dataset.json splits_final.json
  OUTPUT_DIR/nnUNet_preprocessed/Dataset{ID:03d}_{name}_{split}/dataset_fingerprint.json
                                                          (nnU-Net's fingerprint of the training cases)
  OUTPUT_DIR/monai/{name}_{split}/datalist.json           (paths into the grouped dataset)
                                  data_stats.yaml data_stats_by_case.yaml  (MONAI DataAnalyzer's statistics)
  OUTPUT_DIR/satds/{name}_{split}/{name}.jsonl split.json

Every case is checked first (complete files, finite voxels, labels of the label map,
image and mask on one grid); a patient with scans in two of train/val/test is refused.
The statistics nnU-Net and MONAI would compute by reading every case again are taken
from the same read (see docs/exports.md); a re-export with no changed case reuses them.
Files are hard-linked where possible (else copied). Re-running reproduces the same
files; an existing export that differs is refused unless --overwrite. Dataset facts
(name, channel names, references, default nnU-Net id) come from descriptors/<dataset>/dataset.yaml.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import add_common_args, fail, run_main, setup_logging
from utils.export import FORMATS
from utils.export.files import LINK_MODES, ExportConflict
from utils.review.options import add_review_args, default_review_path, resolve_review

logger = logging.getLogger("export_dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest_file", type=Path, required=True, help="dataset_manifest.xlsx holding the split sheet")
    parser.add_argument("--split_name", required=True, help="split worksheet, e.g. split01_standard")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS), help="formats to write (default: all three)")
    parser.add_argument("--output_dir", type=Path, required=True, help="export folder, e.g. root_dir/export")
    parser.add_argument("--root_dir", type=Path, default=None, help="folder the manifest's paths are relative to (default: the manifest's folder)")
    parser.add_argument("--dataset", default=None, help="descriptors/<dataset> to use (default: told from the manifest columns)")
    parser.add_argument("--label_map", type=Path, default=None, help="label_map.yaml (default: ROOT_DIR/../descriptor/label_map.yaml, else the descriptor's)")
    parser.add_argument("--dataset_id", type=int, default=None, help="nnU-Net dataset id 1..999 (default: nnunet_dataset_id of dataset.yaml)")
    parser.add_argument("--link", choices=LINK_MODES, default="hard", help="hard links (default; copies where impossible), absolute symlinks, or copies")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export that differs")
    parser.add_argument("--headers_only", action="store_true", help="check image headers only, take labels from the manifest (fast)")
    parser.add_argument("--allow_patient_overlap", action="store_true", help="export a split where a patient has scans in several subsets (warned)")
    add_review_args(parser, "samples of the split marked fail are left out and listed in qc_review_excluded.json")
    return add_common_args(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    from utils.export.run import export_split  # heavy modules (pandas, nibabel) only when exporting

    try:
        root_dir = args.root_dir if args.root_dir is not None else args.manifest_file.parent
        review = resolve_review(args.review, default_review_path(root_dir), disabled=args.no_review)
        result = export_split(
            args.manifest_file, args.split_name, list(dict.fromkeys(args.format)), args.output_dir,
            root_dir=args.root_dir, dataset=args.dataset, label_map_file=args.label_map, dataset_id=args.dataset_id,
            link=args.link, overwrite=args.overwrite, headers_only=args.headers_only,
            allow_patient_overlap=args.allow_patient_overlap, workers=args.workers, show_progress=not args.no_pbar,
            dask_scheduler=args.dask_scheduler, review=review,
        )  # fmt: skip
    except ExportConflict as exc:
        logger.error("%s", exc)
        return 1
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    if "nnunetv2" in result.status:
        folder = result.folders["nnunetv2"]
        fingerprint = not result.statistics.get("nnU-Net fingerprint", "not").startswith("not")
        logger.info(
            "next: export nnUNet_raw=%s nnUNet_preprocessed=%s nnUNet_results=…; nnUNetv2_plan_and_preprocess -d %d; "
            "nnUNetv2_train %d 3d_fullres 0   (planning %s and copies splits_final.json; fold 0 = this split's train/val)",
            folder.parent, folder.parent.parent / "nnUNet_preprocessed", int(folder.name[7:10]), int(folder.name[7:10]),
            "takes the fingerprint found there" if fingerprint else "extracts the fingerprint",
        )  # fmt: skip
    return result.exit_code()


if __name__ == "__main__":
    run_main(main)

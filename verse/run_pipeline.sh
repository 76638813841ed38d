#!/usr/bin/env bash
# Run the VerSe tutorial's routines 01-07 on ROOT_DIR (which holds ROOT_DIR/archive), exactly as the tutorial does.
# Usage: bash verse/run_pipeline.sh ROOT_DIR        (PYTHON=python3, WORKERS=2 and DASK_SCHEDULER may be set)
set -euo pipefail
root_dir=${1:?usage: run_pipeline.sh ROOT_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
py=${PYTHON:-python}
w=(--workers "${WORKERS:-1}")
# DASK_SCHEDULER=tcp://host:port (or a scheduler file) runs every per-sample step on that Dask cluster (README)
d=(); [ -z "${DASK_SCHEDULER:-}" ] || d=(--dask_scheduler "$DASK_SCHEDULER"); w+=(${d[@]+"${d[@]}"})

$py "$here/01_gen_archive_manifest.py" --root_dir "$root_dir/archive" --output_manifest_file "$root_dir/descriptor/archive_manifest.xlsx" "${w[@]}"
$py "$here/02_confirm_pairs.py" --root_dir "$root_dir/archive" --output_dir "$root_dir/grouped" --archive_manifest "$root_dir/descriptor/archive_manifest.xlsx" "${w[@]}"
$py "$here/03_reduce_sacrum_cocygis_and_revise_T13_label.py" --root_dir "$root_dir/grouped" "${w[@]}"
$py "$here/04_extract_binary_masks.py" --root_dir "$root_dir/grouped" --label_explanation "$root_dir/descriptor/label_map.yaml" "${w[@]}"
# [Additional] mask denoising and quality optimization (runs when the QC tools are present)
if [ -f "$repo/utils/small_connected_region_detect.py" ] && [ -f "$repo/utils/morphological_close_on_slice_small_region.py" ]; then
  # the report before the repair is written once: on a re-run the masks are already repaired (delete it to redo it)
  [ -f "$root_dir/descriptor/small_connected_region_100_manifest.xlsx" ] ||
  $py "$repo/utils/small_connected_region_detect.py" --root_dir "$root_dir/grouped" --region_volume_thresh 100.0 --output_manifest "$root_dir/descriptor/small_connected_region_100_manifest.xlsx" ${d[@]+"${d[@]}"}
  $py "$repo/utils/morphological_close_on_slice_small_region.py" --root_dir "$root_dir/grouped" --output_dir "$root_dir/grouped" --kernel_size 5 5 --filter_halfedge 3 --region_area_thresh 2.0 ${d[@]+"${d[@]}"}
  $py "$repo/utils/small_connected_region_detect.py" --root_dir "$root_dir/grouped" --region_volume_thresh 100.0 --output_manifest "$root_dir/descriptor/small_connected_region_100_after_modification_manifest.xlsx" ${d[@]+"${d[@]}"}
fi
$py "$here/05_gen_dataset_manifest.py" --root_dir "$root_dir/grouped" --output_manifest_file "$root_dir/grouped/dataset_manifest.xlsx" "${w[@]}"
$py "$here/06_make_split.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split01_standard
$py "$here/06_make_split.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split02_verse19 --inclusion VerSe19
$py "$here/06_make_split.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split03_verse20 --inclusion VerSe20
for split in split01_standard split02_verse19 split03_verse20; do
  $py "$here/07_extract_split_index_manifest.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name "$split" --output_index_manifest_dir "$root_dir/grouped/splits/$split" --subsets train val --subsets train --subsets val --subsets test
done
# Export the standard split for training: nnU-Net v2, MONAI, SAT-DS (utils/export_dataset.py)
$py "$repo/utils/export_dataset.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split01_standard --output_dir "$root_dir/export" "${w[@]}"
echo "VerSe pipeline done: manifests in $root_dir/descriptor and $root_dir/grouped, samples in $root_dir/grouped, splits in $root_dir/grouped/splits, training exports in $root_dir/export"

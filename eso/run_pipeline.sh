#!/usr/bin/env bash
# Run the ESO tutorial's routines 01-06 and its additional mask tools on ROOT_DIR (which holds ROOT_DIR/archive),
# exactly as the tutorial does. The mask tools run when they are present in utils/.
# Usage: bash eso/run_pipeline.sh ROOT_DIR        (PYTHON=python3, WORKERS=2 and DASK_SCHEDULER may be set)
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
# [Additional] mask thresholding
if [ -f "$repo/utils/mask_thresholding.py" ]; then
  $py "$repo/utils/mask_thresholding.py" --root_dir "$root_dir/grouped" --thresh -140.0 1000.0 --output_dir "$root_dir/grouped" ${d[@]+"${d[@]}"}
fi
$py "$here/03_extract_binary_masks.py" --root_dir "$root_dir/grouped" --label_explanation "$root_dir/descriptor/label_map.yaml" "${w[@]}"
# [Additional] mask denoising and quality optimization
# the report before the repair is written once: on a re-run the masks are already repaired (delete it to redo it)
if [ -f "$repo/utils/small_connected_region_detect.py" ] && [ ! -f "$root_dir/descriptor/small_connected_region_300_manifest.xlsx" ]; then
  $py "$repo/utils/small_connected_region_detect.py" --root_dir "$root_dir/grouped" --region_volume_thresh 300.0 --output_manifest "$root_dir/descriptor/small_connected_region_300_manifest.xlsx" ${d[@]+"${d[@]}"}
fi
if [ -f "$repo/utils/morphological_open_on_slice_small_region.py" ]; then
  $py "$repo/utils/morphological_open_on_slice_small_region.py" --root_dir "$root_dir/grouped" --output_dir "$root_dir/grouped" --kernel_size 2 2 --filter_halfedge 3 --region_area_thresh 10 ${d[@]+"${d[@]}"}
fi
if [ -f "$repo/utils/small_connected_region_detect.py" ]; then
  $py "$repo/utils/small_connected_region_detect.py" --root_dir "$root_dir/grouped" --region_volume_thresh 300.0 --output_manifest "$root_dir/descriptor/small_connected_region_300_after_modification_manifest.xlsx" ${d[@]+"${d[@]}"}
fi
$py "$here/04_gen_dataset_manifest.py" --root_dir "$root_dir/grouped" --output_manifest_file "$root_dir/grouped/dataset_manifest.xlsx" "${w[@]}"
$py "$here/05_make_split.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split01_TJ --site TJ --test_ratio 0.4 --val_ratio 0.2 --random_seed 0
$py "$here/05_make_split.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split02_SYTH --site SYTH --test_ratio 1.0 --val_ratio 0.0
$py "$here/05_make_split.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split03_XY --site XY --test_ratio 1.0 --val_ratio 0.0
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split01_TJ --output_index_manifest_dir "$root_dir/grouped/splits/split01_TJ" --subsets train val --subsets train --subsets val --subsets test
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split02_SYTH --output_index_manifest_dir "$root_dir/grouped/splits/split02_SYTH" --subsets test
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split03_XY --output_index_manifest_dir "$root_dir/grouped/splits/split03_XY" --subsets test
# Export the standard split for training: nnU-Net v2, MONAI, SAT-DS (utils/export_dataset.py)
$py "$repo/utils/export_dataset.py" --manifest_file "$root_dir/grouped/dataset_manifest.xlsx" --split_name split01_TJ --output_dir "$root_dir/export" "${w[@]}"
echo "ESO pipeline done: manifests in $root_dir/descriptor and $root_dir/grouped, samples in $root_dir/grouped, splits in $root_dir/grouped/splits, training exports in $root_dir/export"

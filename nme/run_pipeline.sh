#!/usr/bin/env bash
# Run the NME tutorial's routines 01-06 on ROOT_DIR (which holds ROOT_DIR/archive), exactly as the tutorial does.
# Usage: bash nme/run_pipeline.sh ROOT_DIR        (PYTHON=python3, WORKERS=2 and DASK_SCHEDULER may be set)
# A failing routine stops the script (set -e), with one exception: when routine 02 exits 1 (some archive
# samples could not be paired or written — mask without image, image without mask, bad mask; every good
# sample is written), the later routines run on the samples written and the script exits 1 at the end.
set -euo pipefail
root_dir=${1:?usage: run_pipeline.sh ROOT_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=${PYTHON:-python}
w=(--workers "${WORKERS:-1}")
# DASK_SCHEDULER=tcp://host:port (or a scheduler file) runs every per-sample step on that Dask cluster (README)
d=(); [ -z "${DASK_SCHEDULER:-}" ] || d=(--dask_scheduler "$DASK_SCHEDULER"); w+=(${d[@]+"${d[@]}"})
manifest="$root_dir/grouped/dataset_manifest.xlsx"

$py "$here/01_gen_archive_manifest.py" --root_dir "$root_dir/archive" --output_manifest_file "$root_dir/descriptor/archive_manifest.xlsx" "${w[@]}"
rc02=0
$py "$here/02_confirm_pairs.py" --root_dir "$root_dir/archive" --output_dir "$root_dir/grouped" --archive_manifest "$root_dir/descriptor/archive_manifest.xlsx" "${w[@]}" || rc02=$?
[ "$rc02" -le 1 ] || exit "$rc02"
$py "$here/03_extract_binary_masks.py" --root_dir "$root_dir/grouped" --label_explanation "$root_dir/descriptor/label_map.yaml" "${w[@]}"
$py "$here/04_gen_dataset_manifest.py" --root_dir "$root_dir/grouped" --output_manifest_file "$manifest" "${w[@]}"
$py "$here/05_make_split_predefined.py" --manifest_file "$manifest" --split_name split01_Tongji --site Tongji --collection train-val test-inner-01
$py "$here/05_make_split_predefined.py" --manifest_file "$manifest" --split_name split02_Yunnan --site Yunnan --collection test-outer-02
$py "$here/05_make_split_predefined.py" --manifest_file "$manifest" --split_name split03_Zhongnan --site Zhongnan --collection test-outer-03
$py "$here/05_make_split_predefined.py" --manifest_file "$manifest" --split_name split04_HKU-SZH --site HKU-SZH --collection test-outer-04
$py "$here/05_make_split_predefined.py" --manifest_file "$manifest" --split_name split05_External --site Yunnan Zhongnan HKU-SZH --collection test-outer-02 test-outer-03 test-outer-04
$py "$here/05_make_split_predefined.py" --manifest_file "$manifest" --split_name split06_Whole --site Tongji Yunnan Zhongnan HKU-SZH --collection train-val test-inner-01 test-outer-02 test-outer-03 test-outer-04
$py "$here/05_make_split_across_sites.py" --manifest_file "$manifest" --split_name split07_Mix --test_ratio 0.3 --val_ratio 0.2 --random_seed 0
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$manifest" --split_name split01_Tongji --output_index_manifest_dir "$root_dir/grouped/splits/split01_Tongji" --subsets train val --subsets train --subsets val --subsets test
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$manifest" --split_name split02_Yunnan --output_index_manifest_dir "$root_dir/grouped/splits/split02_Yunnan" --subsets test
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$manifest" --split_name split03_Zhongnan --output_index_manifest_dir "$root_dir/grouped/splits/split03_Zhongnan" --subsets test
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$manifest" --split_name split04_HKU-SZH --output_index_manifest_dir "$root_dir/grouped/splits/split04_HKU-SZH" --subsets test
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$manifest" --split_name split05_External --output_index_manifest_dir "$root_dir/grouped/splits/split05_External" --subsets test
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$manifest" --split_name split06_Whole --output_index_manifest_dir "$root_dir/grouped/splits/split06_Whole" --subsets train val --subsets train --subsets val --subsets test
$py "$here/06_extract_split_index_manifest.py" --manifest_file "$manifest" --split_name split07_Mix --output_index_manifest_dir "$root_dir/grouped/splits/split07_Mix" --subsets train val --subsets train --subsets val --subsets test
# Export the standard split for training: nnU-Net v2, MONAI, SAT-DS (utils/export_dataset.py)
$py "$(dirname "$here")/utils/export_dataset.py" --manifest_file "$manifest" --split_name split01_Tongji --output_dir "$root_dir/export" "${w[@]}"
if [ "$rc02" -ne 0 ]; then
  echo "NME pipeline finished WITHOUT the archive samples routine 02 could not pair or write (see its summary above)" >&2
  exit 1
fi
echo "NME pipeline done: manifests in $root_dir/descriptor and $root_dir/grouped, samples in $root_dir/grouped, splits in $root_dir/grouped/splits, training exports in $root_dir/export"

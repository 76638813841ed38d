#!/usr/bin/env bash
# Build the synthetic demo archives and run every dataset pipeline on them, exactly as the tutorials do.
# Usage: bash demo/run_demo.sh [OUTPUT_DIR]       (default: ./demo_output; WORKERS=2 to use both cores)
# OUTPUT_DIR is rebuilt from scratch; a folder that was not made by this script is never deleted.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/demo_output}
export PYTHON=${PYTHON:-python}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ -e "$out" ]; then
  if [ ! -f "$out/.toolkit-demo" ]; then
    echo "refusing to overwrite $out: it was not made by demo/run_demo.sh" >&2
    exit 2
  fi
  rm -rf "$out"
fi
mkdir -p "$out" && touch "$out/.toolkit-demo"

for dataset in verse nme eso; do
  echo "== $dataset: synthetic archive in $out/$dataset/archive"
  "$PYTHON" "$repo/demo/make_demo_archive.py" "$dataset" "$out/$dataset"
  bash "$repo/$dataset/run_pipeline.sh" "$out/$dataset"
  echo "== $dataset: QC report in $out/$dataset/qc"
  regions=("$out/$dataset"/descriptor/small_connected_region_*_after_modification_manifest.xlsx)
  [ -f "${regions[0]}" ] && regions=(--small_region_manifest "${regions[0]}") || regions=()
  "$PYTHON" "$repo/utils/qc_report.py" --root_dir "$out/$dataset/grouped" --output_dir "$out/$dataset/qc" --dataset "$dataset" \
    ${regions[@]+"${regions[@]}"} --workers "${WORKERS:-1}"
done

echo
echo "Demo finished. Outputs:"
for dataset in verse nme eso; do
  [ -d "$out/$dataset" ] || continue
  echo "  $dataset: archive manifest  $out/$dataset/descriptor/archive_manifest.xlsx"
  echo "  $dataset: grouped samples   $out/$dataset/grouped"
  echo "  $dataset: dataset manifest  $out/$dataset/grouped/dataset_manifest.xlsx"
  echo "  $dataset: split manifests   $out/$dataset/grouped/splits"
  echo "  $dataset: QC report         $out/$dataset/qc/index.html"
  echo "  $dataset: training exports  $out/$dataset/export (nnUNet_raw, monai, satds)"
done

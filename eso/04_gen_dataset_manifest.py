"""Routine 04: index every grouped ESO sample in dataset_manifest.xlsx (sheet ``Manifest``).

One row per sample folder: ID, site, phase, pid, valid labels, every file
(paths relative to --root_dir), each ROI's existence (empty when the sample
has no mask), the shared geometry and dtypes, then the metadata attributes
from the sites' data_meta sheets (Sex, Age, Chemotherapeutic Drugs, …). A
sample whose files disagree in size, affine, spacing or origin, or whose
masks differ in dtype, is an error; nothing is written then unless --skip_invalid.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from eso.archive import INFO_COLUMNS
from utils.run.cli import run_main
from utils.dataset.routines import dataset_manifest_main


def main(argv: list[str] | None = None) -> int:
    return dataset_manifest_main(argv, __doc__, INFO_COLUMNS)


if __name__ == "__main__":
    run_main(main)

"""Routine 05: index every grouped VerSe sample in dataset_manifest.xlsx (sheet ``Manifest``).

One row per sample folder: ID, archive attributes, valid labels, every file
(paths relative to --root_dir), each ROI's existence, the shared geometry and
dtypes. A sample whose files disagree in size, affine, spacing or origin, or
whose masks differ in dtype, is an error; nothing is written then unless
--skip_invalid. The extra columns ``verse19_subset`` / ``verse20_subset`` hold
each scan's subset in either archive (used by routine 06 --inclusion).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import run_main
from utils.dataset.routines import dataset_manifest_main
from verse.archive import INFO_COLUMNS


def main(argv: list[str] | None = None) -> int:
    return dataset_manifest_main(argv, __doc__, INFO_COLUMNS)


if __name__ == "__main__":
    run_main(main)

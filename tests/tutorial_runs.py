"""The demo tutorials run up to their index manifests, and digests of what the splits and the export wrote.

Used by the QC-review tests (``tests/test_review_loop.py``) to build a dataset and to compare two runs.
The pinned outputs themselves (split sheets, index manifests, exports, with every cell and header
field) are in ``tests/golden/<dataset>.json``, checked by ``tests/test_golden_outputs.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from tests.conftest import run_script

EXPORT = "utils/export_dataset.py"
FIRST_SPLIT = {"verse": "split01_standard", "nme": "split01_Tongji", "eso": "split01_TJ"}


def build_tutorial_dataset(dataset: str, root: Path) -> None:
    """Demo archive of ``dataset`` in ``root/archive`` and the tutorial's routines up to the index manifests."""
    if dataset == "verse":
        from tests.test_verse_pipeline import run_01_02, run_03_to_07
        from verse.demo_archive import make_demo_archive

        make_demo_archive(root / "archive")
        assert run_01_02(root) == (0, 0)
        assert run_03_to_07(root) == [0] * 9
    elif dataset == "eso":
        from eso.demo_archive import make_demo_archive
        from tests.test_eso_pipeline import run_01_02, run_03_to_06

        make_demo_archive(root / "archive")
        assert run_01_02(root) == (0, 0)
        assert run_03_to_06(root) == [0] * 8
    else:
        from nme.demo_archive import make_demo_archive
        from tests.test_nme_pipeline import TUTORIAL, run_tutorial

        make_demo_archive(root / "archive")
        assert run_tutorial(root) == [0] * len(TUTORIAL)


def export_first_split(dataset: str, root: Path, *extra: object) -> int:
    """The pipeline script's last command: all three formats of the first split into ``root/export``."""
    return run_script(
        EXPORT, "--manifest_file", root / "grouped/dataset_manifest.xlsx", "--split_name", FIRST_SPLIT[dataset],
        "--output_dir", root / "export", "--no_pbar", "-q", *extra,
    )  # fmt: skip


def xlsx_digest(path: Path) -> str:
    """sha256 of the sheet names (in order) and every sheet's cell values."""
    from utils.files.spreadsheet import read_sheet, sheet_names

    cells = [[name, read_sheet(path, name).to_json(orient="split", default_handler=str)] for name in sheet_names(path)]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def file_digest(path: Path, root: Path) -> str:
    """sha256 of a file: NIfTI decompressed, JSON text with ``root`` replaced by ``<ROOT>``, other files as they are."""
    data = path.read_bytes()
    if path.name.endswith(".nii.gz"):
        data = gzip.decompress(data)
    elif path.suffix in (".json", ".jsonl"):
        text = data.decode("utf-8")
        for prefix in {str(root.resolve()), str(root)}:
            text = text.replace(prefix, "<ROOT>")
        data = text.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def split_export_digests(root: Path) -> dict[str, str]:
    """Digests of the dataset manifest, the index manifests and every export file, by path relative to ``root``."""
    digests = {}
    for path in sorted((root / "grouped").rglob("*.xlsx")):
        digests[path.relative_to(root).as_posix()] = xlsx_digest(path)
    for path in sorted((root / "export").rglob("*")):
        if path.is_file():
            digests[path.relative_to(root).as_posix()] = file_digest(path, root)
    return digests

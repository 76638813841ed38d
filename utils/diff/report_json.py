"""The release diff as JSON: written by ``utils/diff_datasets.py``, read by the QC report (``--diff FILE``).

The format is documented in ``docs/diff.md``: ``format`` (``dataset_diff``), ``version`` (1), the two
roots, ``summary`` (counts per status) and ``samples`` (one record per sample).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from utils.files.aliases import PathLike
from utils.files.atomic import atomic_write_text

__all__ = ["FORMAT", "FORMAT_VERSION", "diff_json_text", "write_diff_json", "read_diff_json"]

FORMAT = "dataset_diff"
FORMAT_VERSION = 1


def diff_json_text(data: dict[str, Any]) -> str:
    """The JSON text (indented, UTF-8, no NaN)."""
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_diff_json(path: PathLike, data: dict[str, Any]) -> None:
    """Write the diff atomically."""
    atomic_write_text(path, diff_json_text(data))


def read_diff_json(path: PathLike) -> dict[str, Any]:
    """Read a diff written by ``utils/diff_datasets.py``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not JSON, or not a diff of this format and version (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"diff file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
        found = (data.get("format"), data.get("version")) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: not a release diff of format {FORMAT!r} version {FORMAT_VERSION} (found {found}); write it with utils/diff_datasets.py")
    if not isinstance(data.get("samples"), list) or not isinstance(data.get("summary"), dict):
        raise ValueError(f"{path}: a release diff needs 'summary' and 'samples'")
    return data

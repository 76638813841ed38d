"""Files of an export: hard links, symlinks or copies, JSON text, and folders committed all at once.

Every export format is one folder. It is built in a hidden staging folder next
to its final place (``.{name}.staging``), then compared with what is already
there and committed:

- no folder yet -> the staging folder is renamed into place (one atomic rename);
- an identical folder (same files; each pair the same inode, the same symlink
  target or the same bytes) -> kept as it is, the staging folder removed;
- a different folder -> refused (:class:`ExportConflict`) unless ``overwrite``:
  then the old folder is renamed aside, the new one renamed into place and the
  old one deleted.

So an interrupted export leaves the previous export or the new one, never a
mix, and re-running an export reproduces the same files.

Image files are hard-linked where the file system allows it (no extra disk;
a routine that later rewrites a source file renames a new file into place, so
the linked export keeps the old content and the next export sees the
difference), else copied; ``symlink`` makes relative symbolic links (they keep
working when the dataset and the export move together).
"""

from __future__ import annotations

import errno
import filecmp
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.files.atomic import atomic_path, atomic_write_text

__all__ = [
    "LINK_MODES",
    "ExportConflict",
    "place_file",
    "write_json",
    "json_text",
    "StagedFolder",
    "commit_folders",
]

logger = logging.getLogger(__name__)

LINK_MODES = ("hard", "symlink", "copy")

#: os.link errors that mean "this file system (pair) cannot hard-link": copy instead.
_NO_HARD_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}


class ExportConflict(ValueError):
    """An export folder already exists and differs from the one just built."""


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _link(make, src: str | Path, dst: Path) -> None:
    """``make(src, tmp)`` then rename ``tmp`` onto ``dst`` (a link is never half-made either)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
    tmp.unlink(missing_ok=True)
    make(src, tmp)
    try:
        os.replace(tmp, dst)
    finally:
        # rename() of two links to one inode does nothing and leaves tmp behind
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


def place_file(src: Path, dst: Path, mode: str) -> str:
    """Make ``dst`` a hard link to, symbolic link to, or copy of ``src``.

    Parameters
    ----------
    src : Path
        Existing file.
    dst : Path
        Destination (its folder is created).
    mode : {'hard', 'symlink', 'copy'}
        ``hard`` falls back to a copy where the file system cannot hard-link.

    Returns
    -------
    used : str
        The mode actually used (``copy`` after a fallback).
    """
    if mode not in LINK_MODES:
        raise ValueError(f"link mode {mode!r} is not one of {list(LINK_MODES)}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "copy":
        _copy(src, dst)
        return "copy"
    if mode == "symlink":  # relative: the link still works after the dataset and the export were moved together
        _link(os.symlink, os.path.relpath(Path(src).resolve(), Path(dst).parent.resolve()), dst)
        return "symlink"
    try:
        _link(os.link, src, dst)
        return "hard"
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINK:
            raise
        _copy(src, dst)
        return "copy"


def json_text(obj: Any) -> str:
    """Deterministic JSON text: keys in insertion order, 2-space indent, UTF-8 kept, final newline."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    """Write :func:`json_text` of ``obj`` atomically."""
    atomic_write_text(path, json_text(obj))


def _same_file(a: Path, b: Path) -> bool:
    if a.is_symlink() and b.is_symlink():
        return os.readlink(a) == os.readlink(b)
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        return False
    return filecmp.cmp(a, b, shallow=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


@dataclass
class StagedFolder:
    """An export folder being built: ``staging`` now, ``final`` once committed."""

    final: Path

    @property
    def staging(self) -> Path:
        return self.final.with_name(f".{self.final.name}.staging")

    def start(self) -> Path:
        """Create an empty staging folder (a stale one from an interrupted run is removed)."""
        _remove(self.staging)
        self.staging.mkdir(parents=True)
        return self.staging

    def discard(self) -> None:
        """Remove the staging folder (links and copies only; sources are never touched)."""
        _remove(self.staging)

    def differences(self) -> list[str]:
        """How the existing final folder differs from the staging folder (empty: identical or absent)."""
        if not self.final.exists():
            return []
        if not self.final.is_dir():
            return ["(not a folder)"]
        new, old = _files(self.staging), _files(self.final)
        diffs = [f"{p} is new" for p in sorted(new - old)] + [f"{p} is not in this export" for p in sorted(old - new)]
        diffs += [f"{p} differs" for p in sorted(new & old) if not _same_file(self.staging / p, self.final / p)]
        return diffs

    def commit(self, overwrite: bool) -> str:
        """Move the staging folder into place; return ``written``, ``unchanged`` or ``replaced``."""
        if not self.final.exists():
            os.rename(self.staging, self.final)
            return "written"
        if not self.differences():
            self.discard()
            return "unchanged"
        if not overwrite:
            raise ExportConflict(f"{self.final} exists and differs")
        old = self.final.with_name(f".{self.final.name}.old")
        _remove(old)
        os.rename(self.final, old)
        os.rename(self.staging, self.final)
        _remove(old)
        return "replaced"


def commit_folders(folders: list[StagedFolder], overwrite: bool) -> dict[Path, str]:
    """Commit every staged folder, or none: an existing folder that differs is refused unless ``overwrite``.

    Returns
    -------
    status : dict of Path to str
        Final folder -> ``written`` / ``unchanged`` / ``replaced``.

    Raises
    ------
    ExportConflict
        Without ``overwrite``, when an existing folder differs (the message names the first
        differences); every staging folder is then removed and nothing is changed.
    """
    if not overwrite:
        for folder in folders:
            diffs = folder.differences()
            if diffs:
                for f in folders:
                    f.discard()
                shown = "; ".join(diffs[:3]) + (f"; … {len(diffs) - 3} more" if len(diffs) > 3 else "")
                raise ExportConflict(
                    f"{folder.final} exists and differs from this export ({shown}); nothing was written "
                    f"(--overwrite replaces it)"
                )
    return {folder.final: folder.commit(overwrite) for folder in folders}

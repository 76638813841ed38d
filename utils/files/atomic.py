"""Atomic file output: write to a temporary sibling, then rename into place.

A crash, ``kill`` or Ctrl-C while writing leaves either the old file or the new
one at the destination, never half of one. Temporary files are hidden
(``.<name>.<pid>-<8 hex>.tmp``) so that no scanner of ``*.nii.gz`` or ``*.xlsx``
files ever picks one up, and they are removed when the write fails.

File modes: the temporary file is created the way a plain ``open(path, "w")``
creates a new file — mode ``0o666`` minus the user's umask (``0o644`` under
umask 022) — so that the rest of a lab can read the outputs on a shared server.
Every output gets that mode when it is written, also one that replaces (or is
identical to) a file of an earlier version that had another mode.

Unchanged content: when the new content is byte-identical to the file already
at the destination, the temporary file is dropped and the destination is left
untouched (same inode, same mtime), so re-running a routine does not churn
files that backup or versioning tools (git-annex, DVC, rsync) watch.

Interrupted writes: every temporary file this process creates is registered
(before it is created) until it is renamed or removed, so that Ctrl-C, which
can arrive between any two steps of a write, never leaves one behind:
:func:`remove_live_temporaries` (called by :func:`utils.run.cli.run_main` and by
each worker process on ``KeyboardInterrupt``) deletes them before the routine
says it was interrupted.

Stale temporaries: a ``kill -9`` leaves the temporary file of the write in
progress. :func:`remove_stale_temporaries` deletes, in one folder, the hidden
temporaries that carry this module's name pattern (or the ``mkstemp`` pattern
of earlier versions) and are older than :data:`STALE_TEMPORARY_AGE_S`; every
atomic write does that for its destination folder, and the routines do it for
each sample folder they visit.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from utils.files.aliases import PathLike

__all__ = [
    "STALE_TEMPORARY_AGE_S",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_our_temporary",
    "remove_stale_temporaries",
    "remove_live_temporaries",
]

logger = logging.getLogger(__name__)

#: A temporary file of ours older than this (seconds since its last write) belongs to a dead run.
STALE_TEMPORARY_AGE_S = 3600.0

#: ``.<name>.<pid>-<8 hex>.tmp`` (this module) or ``.<name>.<8 of [a-z0-9_]>.tmp`` (tempfile.mkstemp, earlier versions).
_TEMPORARY_RE = re.compile(r"^\.(?P<target>.+)\.(?:\d+-[0-9a-f]{8}|[a-z0-9_]{8})\.tmp$")


#: Temporary files of this process not yet renamed into place or removed (see the module docstring).
_LIVE: set[Path] = set()
_LIVE_GUARD = threading.Lock()


def remove_live_temporaries() -> tuple[list[Path], list[Path]]:
    """Delete every temporary file this process registered and has not renamed or removed yet.

    Returns
    -------
    removed, failed : list of Path
        Files deleted, and files that exist but could not be deleted.
    """
    with _LIVE_GUARD:
        paths = sorted(_LIVE)
        _LIVE.clear()
    removed, failed = [], []
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            failed.append(path)
            continue
        removed.append(path)
    return removed, failed


def is_our_temporary(name: str) -> bool:
    """True for a file name made by :func:`atomic_path` (or by the ``mkstemp`` naming of earlier versions)."""
    return _TEMPORARY_RE.match(name) is not None


def remove_stale_temporaries(folder: PathLike, max_age_s: float = STALE_TEMPORARY_AGE_S) -> list[Path]:
    """Delete our hidden temporary files in ``folder`` (not below it) last written more than ``max_age_s`` ago.

    Only names matching our pattern are considered, so files of other programs
    are never touched; a recent temporary may belong to a run still in progress
    and is kept.

    Parameters
    ----------
    folder : str or Path
        A folder this toolkit writes into (never the archive).
    max_age_s : float

    Returns
    -------
    removed : list of Path
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp") and is_our_temporary(entry.name)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime <= max_age_s:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    if removed:
        n = len(removed)
        logger.info("%s: removed %d stale temporary %s left by an interrupted run or a lost worker: %s", folder, n,
                    "file" if n == 1 else "files", ", ".join(p.name for p in removed))  # fmt: skip
    return removed


def _create_temporary(path: Path) -> Path:
    """Create an empty hidden sibling of ``path`` with the mode ``open()`` gives a new file; return its path.

    The path is registered in :data:`_LIVE` *before* the file is created, so no
    interruption can leave a file that :func:`remove_live_temporaries` does not know.
    """
    for _attempt in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        with _LIVE_GUARD:
            _LIVE.add(tmp)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        except FileExistsError:
            _forget(tmp)
            continue
        except OSError:
            _forget(tmp)
            raise
        # (a KeyboardInterrupt raised as os.open returns leaves tmp registered: the file may exist)
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, f"no free temporary file name next to {path}")


def _forget(tmp: Path) -> None:
    """``tmp`` was renamed into place or removed: no longer ours to clean up."""
    with _LIVE_GUARD:
        _LIVE.discard(tmp)


def _same_content(a: Path, b: Path) -> bool:
    """True when both files exist with byte-identical content (sizes compared first)."""
    try:
        if os.stat(a).st_size != os.stat(b).st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                ca, cb = fa.read(1 << 20), fb.read(1 << 20)
                if ca != cb:
                    return False
                if not ca:
                    return True
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : str or Path
        Final destination. Its parent folder is created when missing.

    Yields
    ------
    tmp : Path
        Where the caller writes the complete content (the file exists, empty,
        with the destination's future mode).

    Notes
    -----
    The rename is :func:`os.replace`, atomic on POSIX and Windows when source
    and destination are on the same file system, which a sibling always is.
    Content identical to the existing destination is not renamed over it
    (the destination stays untouched). Stale temporaries of earlier
    interrupted runs in the destination folder are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    tmp = _create_temporary(path)
    try:
        yield tmp
        if _same_content(tmp, path):
            mode = os.stat(tmp).st_mode & 0o777
            if os.stat(path).st_mode & 0o777 != mode:
                os.chmod(path, mode)
            tmp.unlink()
            _forget(tmp)
            return
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _forget(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        _forget(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"))

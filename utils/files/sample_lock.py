"""One writer per sample folder at a time: a lock file in the folder, held while a routine rewrites it.

Routine 02, VerSe routine 03, the binary-mask routines and the mask-QC tools
rewrite a sample folder in place (read the info yaml, decide, write images,
write the info yaml). Two of them on one folder at once (a second terminal, a
second Dask cluster, a script started twice) could interleave those steps and
leave binary masks that no longer match the mask, or lose a history entry.
Each therefore holds :func:`sample_lock` on the folder for the whole of its
work on that sample:

- the lock is an ``flock`` on the hidden file ``.sample.lock`` in the folder,
  which records who holds it (routine, process id, host, start time);
- a second writer **waits** for it (up to :data:`LOCK_WAIT_S` seconds, so
  running two tools one after the other or at once gives the same result);
  after that it refuses the sample with one line naming the other run;
- the lock is released on exit, and by the kernel when the holder dies
  (``kill -9``, power loss): a lock file left behind by a dead run is **stale**,
  taken over by the next run and removed when that run releases it;
- since every writer of a sample folder holds the lock, the temporary files of
  ours found in the folder when the lock is taken belong to no running writer
  (a killed run, a lost worker): they are removed then, whatever their age.

Locks work between threads, processes and, on a shared file system with
working ``flock`` (NFSv4, Lustre, GPFS, CephFS), between machines. Where
``fcntl`` does not exist (Windows) :func:`sample_lock` only guards against
other threads of the same process.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from utils.files.aliases import PathLike
from utils.files.atomic import remove_stale_temporaries

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "LOCK_WAIT_S", "SampleBusyError", "sample_lock", "try_sample_lock", "lock_holder", "clean_abandoned_folder"]

#: Name of the lock file in a sample folder (hidden: no scanner of the dataset ever lists it).
LOCK_NAME = ".sample.lock"

#: Seconds a routine waits for another run to finish with a sample before it refuses that sample.
LOCK_WAIT_S = 120.0

_POLL_S = 0.1

#: Folders (real paths) whose lock this process holds, for threads of one process.
_HELD: set[str] = set()
_HELD_GUARD = threading.Lock()


class SampleBusyError(ValueError):
    """Another run holds the sample folder's lock; the message names the folder and the other run."""


def lock_holder(folder: PathLike) -> str:
    """Who holds (or last held) the lock of ``folder``, as recorded in its lock file; ``"another run"`` when unknown."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0][:200] if text else "another run"


def _who() -> str:
    program = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "python"
    since = _dt.datetime.now().isoformat(timespec="seconds")
    return f"{program} (pid {os.getpid()} on {socket.gethostname()}, since {since})"


def _acquire_file(path: Path, deadline: float) -> int | None:
    """An fd of ``path`` holding its exclusive flock, or None once ``deadline`` (monotonic) has passed."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            if time.monotonic() >= deadline:
                return None
            time.sleep(_POLL_S)
            continue
        try:  # the holder we waited for may have removed the file: lock the file now at that path
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def sample_lock(folder: PathLike, *, wait_s: float | None = None, create: bool = False) -> Iterator[Path]:
    """Hold the lock of one sample folder for the duration of the ``with`` block.

    Parameters
    ----------
    folder : str or Path
        The sample folder.
    wait_s : float, optional
        How long to wait for another holder (default :data:`LOCK_WAIT_S`; 0: do not wait).
    create : bool
        Create the folder (and missing parents) first; folders created here are
        removed again on exit when they are still empty (a sample that failed
        before writing anything leaves no empty folder).

    Yields
    ------
    folder : Path

    Raises
    ------
    SampleBusyError
        Another run still held the lock after ``wait_s`` seconds.
    FileNotFoundError
        ``folder`` does not exist and ``create`` is False.
    """
    folder = Path(folder)
    wait_s = LOCK_WAIT_S if wait_s is None else float(wait_s)
    created: list[Path] = []
    if create:
        created = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise FileNotFoundError(f"{folder}: sample folder missing")
    key = os.path.realpath(folder)
    deadline = time.monotonic() + wait_s
    try:
        while True:  # one holder per process (threads), then one per file system (flock)
            with _HELD_GUARD:
                if key not in _HELD:
                    _HELD.add(key)
                    break
            if time.monotonic() >= deadline:
                raise SampleBusyError(f"{folder}: another task of this run is writing this sample folder; it was left alone")
            time.sleep(_POLL_S)
        fd = None
        try:
            if fcntl is not None:
                fd = _acquire_file(folder / LOCK_NAME, deadline)
                if fd is None:
                    raise SampleBusyError(
                        f"{folder}: being written by {lock_holder(folder)}; this sample was left alone "
                        f"(waited {wait_s:.0f} s): run again when that run has finished"
                    )
                os.ftruncate(fd, 0)
                os.write(fd, (_who() + "\n").encode("utf-8"))
                # every writer of a sample folder holds this lock, so a temporary file of ours in it now
                # belongs to no running writer: a lost worker's or a killed run's, whatever its age
                remove_stale_temporaries(folder, max_age_s=-1.0)
            yield folder
        finally:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(folder / LOCK_NAME)  # while still locked: a waiter then sees another inode and retries
                os.close(fd)  # releases the flock
            with _HELD_GUARD:
                _HELD.discard(key)
    finally:
        for path in created:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty


@contextlib.contextmanager
def try_sample_lock(folder: PathLike) -> Iterator[bool]:
    """Take the lock of ``folder`` without waiting; yield whether it was taken (False: another run holds it)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(sample_lock(folder, wait_s=0))
            taken = True
        except (SampleBusyError, FileNotFoundError):
            taken = False
        yield taken


def clean_abandoned_folder(folder: PathLike) -> list[Path]:
    """Remove our temporary files from a sample folder whose writer died, and the folder if that leaves it empty.

    Used when a worker process or a Dask worker was lost mid-sample. Nothing is
    touched while another run holds the folder's lock (its temporaries are its
    own); a folder that is still in use or holds any other file is kept.

    Returns
    -------
    removed : list of Path
        The temporary files deleted.
    """
    from utils.files.atomic import is_our_temporary

    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    with try_sample_lock(folder) as taken:
        if not taken:
            return []
        for entry in list(os.scandir(folder)):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and is_our_temporary(entry.name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty: a new sample's folder that the lost work had just created
    return removed

"""Check output paths before the long work: a routine must not read a whole archive and then fail to write.

:func:`check_output_file` and :func:`check_output_dir` write and delete a hidden
probe file in the output folder (or in its nearest existing ancestor, where the
routine will have to create it), which is the only test that holds for every
case (missing permission, read-only file system, a file where a folder is
expected, ACLs, running as root). Nothing is created.
Problems are raised as :class:`OutputPathError`, one line naming the option,
the path and what is wrong.

The archive is read-only to us, enforced: :func:`check_not_inside` refuses an
output equal to or inside it (routines 01 and 02 know the archive from their
``--root_dir``; the routines and tools that work on a grouped dataset find it
with :func:`archive_of_dataset`, from the info yamls).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from utils.files.aliases import PathLike

__all__ = ["OutputPathError", "check_output_file", "check_output_dir", "check_not_inside", "archive_of_dataset", "archive_of_manifest", "portable_path"]


class OutputPathError(ValueError):
    """An output path that cannot be written; the message names the option and the path."""


def _probe_folder(folder: Path, option: str) -> None:
    """Write + delete a probe file in ``folder``, or in its nearest existing ancestor when it does not exist yet.

    Creating the missing folders later needs exactly that permission; nothing
    is created now, so a run that stops at a later check leaves no empty folder.
    """
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise OutputPathError(f"{option} {folder}: cannot create the folder, {existing} is not a folder")
    probe = existing / f".write-probe.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"probe")
    except OSError as exc:
        what = "write in this folder" if existing == folder else f"create the folder (in {existing})"
        raise OutputPathError(f"{option} {folder}: cannot {what} ({exc.strerror or exc})") from exc
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def check_output_file(path: PathLike, option: str, suffix: str | None = ".xlsx") -> Path:
    """Check that ``path`` can be written (its folder exists or can be created) and has the right file-name ending.

    Parameters
    ----------
    path : str or Path
        File the routine will write (replaced atomically).
    option : str
        Command-line option that gave it (``--output_manifest_file``), for the message.
    suffix : str or None
        Required ending (case-insensitive), e.g. ``.xlsx``: the file is written in
        that format whatever its name says, so another name would mislead.

    Returns
    -------
    path : Path

    Raises
    ------
    OutputPathError
    """
    path = Path(path)
    if suffix is not None and not path.name.lower().endswith(suffix):
        raise OutputPathError(f"{option} {path}: the file is written as {suffix}; give a name ending in {suffix}")
    if path.is_dir():
        raise OutputPathError(f"{option} {path}: is a folder; a file name ending in {suffix or 'the right suffix'} was expected")
    _probe_folder(path.parent, option)
    return path


def check_output_dir(path: PathLike, option: str) -> Path:
    """Check that the folder ``path`` exists or can be created, and can be written into.

    Raises
    ------
    OutputPathError
    """
    path = Path(path)
    _probe_folder(path, option)
    return path


def check_not_inside(path: PathLike, folder: PathLike | None, option: str, what: str = "the archive") -> None:
    """Refuse an output ``path`` equal to or inside ``folder`` (a read-only input such as the archive).

    Both are compared after resolving ``..`` and symbolic links, so another
    spelling of the same folder is caught too. ``folder`` None: nothing to check.

    Raises
    ------
    OutputPathError
        One line naming the option, the path and the folder.
    """
    if folder is None:
        return
    out, base = Path(path).resolve(), Path(folder).resolve()
    if out == base or base in out.parents:
        where = "is" if out == base else "lies inside"
        raise OutputPathError(f"{option} {path} {where} {what} {folder}, which this toolkit only reads; write the output elsewhere")


def archive_of_dataset(sample_folders: Iterable[PathLike], limit: int = 5) -> Path | None:
    """The archive a grouped dataset was built from, as routine 02 recorded it (``source.archive_root``), or None.

    Reads the info yamls of the first ``limit`` sample folders that have one;
    the recorded path is relative to the sample folder, so it follows a dataset
    moved together with its archive. None when nothing usable is recorded or the
    folder is gone.
    """
    from utils.files.sample_info import SampleDir, read_info

    for n, folder in enumerate(sample_folders):
        if n >= limit:
            break
        sample = folder if isinstance(folder, SampleDir) else SampleDir(Path(folder))
        try:
            source = read_info(sample.info).get("source")
        except (OSError, ValueError):
            continue
        rel = source.get("archive_root") if isinstance(source, dict) else None
        if isinstance(rel, str) and rel:
            archive = (sample.path / rel).resolve()
            if archive.is_dir():
                return archive
    return None


def archive_of_manifest(manifest_file: PathLike) -> Path | None:
    """The archive of the dataset a dataset manifest indexes (:func:`archive_of_dataset` of its first samples), or None."""
    from utils.files.spreadsheet import MAIN_SHEET, read_sheet

    try:
        frame = read_sheet(manifest_file, MAIN_SHEET, missing_ok=True)
    except (OSError, ValueError):
        return None
    if frame is None or "info" not in frame.columns:
        return None
    base = Path(manifest_file).parent
    folders = [(base / str(v)).parent for v in frame["info"].tolist()[:5] if isinstance(v, str) and v]
    return archive_of_dataset(folders)


#: This repository (a descriptor file inside it is named relative to it).
_REPO = Path(__file__).resolve().parents[2]


def portable_path(path: PathLike, base: PathLike) -> str:
    """How a file we write names another file: relative to ``base`` (the folder of the file written), never absolute.

    A file of this repository (``descriptors/verse/label_map.yaml``) is named
    relative to the repository instead, since it does not move with the dataset.
    """
    resolved = Path(path).resolve()
    if resolved.is_relative_to(_REPO):
        return resolved.relative_to(_REPO).as_posix()
    return Path(os.path.relpath(resolved, Path(base).resolve())).as_posix()

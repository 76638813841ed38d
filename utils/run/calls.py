"""One work item's call and its outcome, shared by the per-sample loop (:mod:`utils.run.cli`) and the Dask runner.

:func:`call_item` turns an expected problem with one sample (:class:`SampleError`, or any of
:data:`EXPECTED_ERRORS`) into ``(False, one-line message)`` and a bug into a message that asks for a report;
:func:`abandon` cleans the folders of work whose worker died. Both the local loop and
:mod:`utils.run.dask_runner` import from here, so neither imports the other at module level.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from utils.files.atomic import remove_live_temporaries
from utils.files.sample_lock import clean_abandoned_folder

__all__ = ["SampleError", "EXPECTED_ERRORS", "WorkersLost", "plural", "call_item", "abandon", "sample_folder_of"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``1 sample``, ``2 samples``, ``0 samples`` (``plural_form`` for irregular words).

    Examples
    --------
    >>> plural(1, "sample"), plural(3, "mask"), plural(2, "was", "were")
    ('1 sample', '3 masks', '2 were')
    """
    return f"{n} {singular if n == 1 else (plural_form or singular + 's')}"


class WorkersLost(SystemExit):
    """Every worker of a run died (killed, out of memory): the run stops with one line, exit code 2."""

    def __init__(self) -> None:
        super().__init__(2)


class SampleError(ValueError):
    """An expected problem with one sample's input; the message names the file and the value found."""


#: Exceptions that count as bad input (reported in one line, no traceback).
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError)


def call_item(func: Callable[[T], R], item: T) -> tuple[bool, Any]:
    """Run one item; turn an expected error into ``(False, message)`` (runs in worker processes too)."""
    try:
        return True, func(item)
    except EXPECTED_ERRORS as exc:
        return False, str(exc)
    except KeyboardInterrupt:  # Ctrl-C (also in a worker process): no temporary file of ours stays behind
        remove_live_temporaries()
        raise
    except Exception as exc:  # a bug: keep the traceback
        logger.exception("unexpected error")
        return False, f"unexpected {type(exc).__name__}: {exc} (a bug; please report it with the log above)"


def abandon(items: Sequence[Any], key: Callable[[Any], str] = str) -> list[Path]:
    """Clean the sample folders of items whose worker died: our temporary files there, and a folder left empty.

    Only folders whose lock (:mod:`utils.files.sample_lock`) nobody holds are touched:
    a temporary file in such a folder belongs to no running writer.

    Returns
    -------
    removed : list of Path
    """
    removed: list[Path] = []
    for item in items:
        folder = sample_folder_of(item)
        if folder is not None:
            removed.extend(clean_abandoned_folder(folder))
    if removed:
        logger.info("removed %s left by the lost work: %s", plural(len(removed), "temporary file"), ", ".join(p.name for p in removed))
    return removed


def sample_folder_of(item: Any) -> Path | None:
    """The sample folder a work item writes (``SampleDir.path``, ``PairJob.sample_dir``), or None."""
    folder = getattr(item, "sample_dir", None)
    if folder is None and type(item).__name__ == "SampleDir":
        folder = getattr(item, "path", None)
    return Path(folder) if folder is not None else None

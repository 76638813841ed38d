"""What every script shares: common options, logging set-up, the per-sample loop and its summary.

A numbered routine reads::

    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose - args.quiet)
        report = run_per_sample(samples, functools.partial(work, ...), workers=args.workers, desc="...")
        return report.exit_code()

Per-sample problems that are expected (bad input) are raised as
:class:`SampleError` (or any ``ValueError``/``OSError``) and reported as one
line naming the file; the loop goes on with the other samples and the script
exits 1 with a summary. Anything else is a bug: it is logged with its traceback.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import logging
import os
import signal
import sys
from pathlib import Path
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tqdm import tqdm

from utils.files.atomic import remove_live_temporaries
from utils.run.calls import EXPECTED_ERRORS, SampleError, WorkersLost, abandon, call_item, plural

__all__ = [
    "SampleError",
    "EXPECTED_ERRORS",
    "RunReport",
    "add_common_args",
    "setup_logging",
    "run_per_sample",
    "positive_int",
    "plural",
    "WorkersLost",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class _TqdmHandler(logging.StreamHandler):
    """Log handler that writes around an active tqdm bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def program_name() -> str:
    """Name of the script the user ran (``02_confirm_pairs``), from ``sys.argv[0]``."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = argv0.stem if argv0.suffix == ".py" else argv0.name
    return argv0.parent.name if name == "__main__" else name


def setup_logging(verbosity: int = 0, program: str | None = None) -> None:
    """Configure the root logger: WARNING at -1, INFO at 0, DEBUG at 1+; output to stderr around tqdm bars.

    Every line starts with the level and the routine the user ran
    (``ERROR 02_confirm_pairs: …``); with ``-v`` the library module that
    wrote the line follows in brackets.
    """
    level = logging.INFO if verbosity == 0 else (logging.DEBUG if verbosity > 0 else logging.WARNING)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _TqdmHandler):
            root.removeHandler(handler)
    handler = _TqdmHandler(sys.stderr)
    name = (program or program_name()).replace("%", "%%")
    handler.setFormatter(logging.Formatter(f"%(levelname)s {name}{' [%(name)s]' if verbosity > 0 else ''}: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_common_args(parser: argparse.ArgumentParser, *, workers: bool = True) -> argparse.ArgumentParser:
    """Add ``-v/--verbose``, ``-q/--quiet``, ``--no_pbar``/``--pbar`` and (optionally) ``--workers N``, ``--dask_scheduler ADDRESS``.

    The progress bar is shown only when stderr is a terminal (a bar written
    into a log file would run together with the log lines) unless ``--pbar``
    asks for it; ``--no_pbar`` hides it everywhere. Code reads ``args.no_pbar``.
    """
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    parser.add_argument("--no_pbar", action="store_true", default=not _stderr_is_terminal(), help="hide the progress bar")
    parser.add_argument("--pbar", action="store_false", dest="no_pbar",
                        help="show the progress bar also when stderr is not a terminal (default: only on a terminal)")  # fmt: skip
    if workers:
        parser.add_argument(
            "--workers",
            type=positive_int,
            default=1,
            help="samples processed in parallel processes (default 1; up to the number of cores helps)",
        )
        parser.add_argument(
            "--dask_scheduler",
            metavar="ADDRESS",
            help="run the samples on this Dask cluster instead (tcp://host:port or a scheduler JSON file; "
            "needs the 'distributed' package and the same paths on every worker, see README)",
        )
    return parser


@dataclass
class RunReport:
    """Outcome of :func:`run_per_sample`.

    Attributes
    ----------
    results : dict
        Key of each successful item -> its result, in input order.
    errors : dict
        Key of each failed item -> one-line error message.
    """

    desc: str
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def log_summary(self) -> None:
        """Log the one-line summary and, on failure, every error once more."""
        total = len(self.results) + len(self.errors)
        if self.errors:
            logger.error("%s: %d of %s failed:", self.desc, len(self.errors), plural(total, "sample"))
            for key, msg in self.errors.items():
                logger.error("  %s: %s", key, msg)
        else:
            logger.info("%s: %s done", self.desc, plural(total, "sample"))

    def exit_code(self) -> int:
        """0 when every item succeeded, 1 otherwise."""
        return 1 if self.errors else 0


def _ignore_sigint() -> None:
    """Worker processes leave Ctrl-C to the parent: it stops handing out samples and waits for the running ones,
    which finish their writes (an idle worker interrupted while waiting would print a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_per_sample(
    items: Iterable[T],
    func: Callable[[T], R],
    *,
    desc: str,
    workers: int = 1,
    key: Callable[[T], str] = str,
    show_progress: bool = True,
    dask_scheduler: str | None = None,
    input_dirs: Sequence[os.PathLike | str] = (),
    output_dirs: Sequence[os.PathLike | str] = (),
) -> RunReport:
    """Apply ``func`` to every item with a tqdm bar, in ``workers`` processes or on a Dask cluster, collecting errors.

    Parameters
    ----------
    items : iterable
        Work items (sample folders, manifest rows …); they and ``func`` must be
        picklable when ``workers > 1`` (module-level functions, ``functools.partial``).
    func : callable
        Work on one item. Raise ``SampleError`` / ``ValueError`` / ``OSError``
        with a message naming the file for bad input.
    desc : str
        Progress-bar and summary label.
    workers : int
        Number of processes; 1 runs in this process.
    key : callable
        Item -> name used in the report.
    show_progress : bool
        Show the tqdm bar (on stderr).
    dask_scheduler : str, optional
        Run every item as a future on this Dask cluster instead
        (:mod:`utils.run.dask_runner`; ``workers`` is then ignored).
    input_dirs, output_dirs : sequence of path
        Folders ``func`` reads / writes: with ``dask_scheduler``, every worker
        is checked to see them as this machine does before any item runs.

    Returns
    -------
    RunReport
        Results and errors keyed by ``key(item)``, in input order.
    """
    items = list(items)
    report = RunReport(desc)
    outcomes: dict[int, tuple[bool, Any]] = {}
    bar = tqdm(total=len(items), desc=desc, unit="sample", disable=not show_progress, file=sys.stderr)
    try:
        if dask_scheduler and items:
            from utils.run.dask_runner import run_on_dask

            for i, outcome in run_on_dask(dask_scheduler, func, items, desc=desc, input_dirs=input_dirs, output_dirs=output_dirs):
                outcomes[i] = outcome
                if not outcome[0]:
                    logger.error("%s: %s", key(items[i]), outcome[1])
                bar.update(1)
        elif workers <= 1 or len(items) <= 1:
            for i, item in enumerate(items):
                outcomes[i] = call_item(func, item)
                if not outcomes[i][0]:
                    logger.error("%s: %s", key(item), outcomes[i][1])
                bar.update(1)
        else:
            pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(items), os.cpu_count() or workers), initializer=_ignore_sigint)
            try:
                futures = {pool.submit(call_item, func, item): i for i, item in enumerate(items)}
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    try:
                        outcomes[i] = fut.result()
                    except cf.process.BrokenProcessPool:
                        lost = [items[j] for j in range(len(items)) if j not in outcomes]
                        abandon(lost, key)
                        logger.error(
                            "a worker process died (killed, or out of memory): %d of %s finished, %d not processed; "
                            "their temporary files were removed; re-run to finish them", len(outcomes), plural(len(items), "sample"), len(lost),
                        )  # fmt: skip
                        raise WorkersLost() from None
                    if not outcomes[i][0]:
                        logger.error("%s: %s", key(items[i]), outcomes[i][1])
                    bar.update(1)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: queued samples are not started
                raise
            pool.shutdown(wait=True)
    finally:
        bar.close()
    for i, item in enumerate(items):
        ok, value = outcomes[i]
        if ok:
            report.results[key(item)] = value
        else:
            report.errors[key(item)] = value
    report.log_summary()
    return report


def fail(message: str) -> int:
    """Log a fatal, expected problem in one line and return exit code 2 (for ``return fail(...)`` in ``main``)."""
    logger.error(message)
    return 2


def interrupted_message() -> str:
    """Remove this process's temporary files (:func:`utils.files.atomic.remove_live_temporaries`) and say what happened."""
    removed, failed = remove_live_temporaries()
    if failed:
        return (f"interrupted; {plural(len(failed), 'temporary file')} could not be removed: "
                f"{', '.join(str(p) for p in failed)}; finished files are complete")  # fmt: skip
    cleaned = f"{plural(len(removed), 'temporary file')} of unfinished writes removed" if removed else "no unfinished write was in progress"
    return f"interrupted; {cleaned}; finished files are complete"


def run_main(main: Callable[[Sequence[str] | None], int]) -> None:
    """``sys.exit(main())`` for the ``__main__`` block; Ctrl-C exits 130 without a traceback.

    On Ctrl-C the temporary files of the writes in progress are removed before
    the routine says so (worker processes remove their own).
    """
    try:
        sys.exit(main(None))
    except KeyboardInterrupt:
        logging.getLogger().error(interrupted_message())
        sys.exit(130)

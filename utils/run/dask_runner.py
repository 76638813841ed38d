"""The per-sample loop of :func:`utils.run.cli.run_per_sample` on an existing Dask cluster (``--dask_scheduler``).

Every sample becomes one Dask future on the cluster whose scheduler is given
(``tcp://host:port`` or a scheduler JSON file). What a run with ``--workers``
gives is kept: the client yields each sample's outcome as its future
completes (the caller feeds the tqdm bar, logs the per-sample error line and
the summary), expected errors come back as values, and log records a sample
emits on a worker (warnings such as "qform and sform disagree") are sent back
and logged here, as if the sample had run in this process.

Before any sample is submitted, a probe runs on every worker (and again on the
first task of a worker that joins later) and checks that the worker

- sees every input folder, with the same content listing as this machine;
- sees every output folder as the *same* folder: this machine writes a hidden
  file ``.dask_probe_<token>`` into it, which the worker must read back, and
  the worker must be able to create a file there;
- sees this machine's working directory, when relative paths are in play
  (tasks then run in it);
- can import ``utils`` and the module of the per-sample function from the code
  this command shipped (else: the workers lack a dependency).

**The project's own code travels with the run**: the command zips ``utils/``,
the dataset packages, ``descriptors/`` and ``requirements.txt`` of this
checkout (:func:`make_code_bundle`, named by its SHA-256) and registers it on
the cluster with distributed's ``UploadFile`` worker plugin, which writes it
into every worker's local directory, also on workers that join later. Each
worker unpacks it once into a folder of that name and imports our packages
from there (:func:`make_activator`), so workers need only the dependencies
installed, never ``PYTHONPATH`` or a checkout: a cluster someone else started
(a lab's shared scheduler, Dask Gateway, Kubernetes) works as it is.

A failed check stops the run before any sample with one line naming the
worker and the path (exit 2), as does a missing ``distributed`` package or an
unreachable scheduler.

A worker lost mid-run (killed, machine gone) is handled by Dask: the
scheduler re-runs its tasks on other workers. Every output is written to a
temporary file and renamed into place (:mod:`utils.files.atomic`), so a re-run
sample replaces whatever the lost attempt left with complete files. A sample
whose task kills its workers more often than the scheduler's
``distributed.scheduler.allowed-failures`` (default 3) fails with one line.
When the **last** worker is lost and none joins within
:data:`LOST_WORKERS_WAIT_S`, the run stops with one line (exit 2) instead of
waiting forever; the temporary files the lost work left in the sample folders
of the unfinished samples are removed first (only where no other run holds
the sample's lock).

``distributed`` is imported only here, only when ``--dask_scheduler`` is used.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from utils.run.calls import abandon, call_item, plural

__all__ = [
    "MISSING_DISTRIBUTED",
    "PROBE_PREFIX",
    "WAIT_FOR_WORKERS_S",
    "LOST_WORKERS_WAIT_S",
    "make_code_bundle",
    "make_activator",
    "run_on_dask",
    "run_item_on_worker",
    "make_probe",
    "make_task",
]

logger = logging.getLogger(__name__)

#: The one line printed when ``--dask_scheduler`` is used without the optional dependency.
MISSING_DISTRIBUTED = "--dask_scheduler needs the 'distributed' package: pip install distributed"

#: Name prefix of the hidden file the client writes into every output folder for the probe.
PROBE_PREFIX = ".dask_probe_"

#: Seconds to wait for the first worker when the scheduler has none (e.g. SLURM jobs still queued).
WAIT_FOR_WORKERS_S = 120.0

#: Seconds a run waits, once every worker has left during the run, for one to join before it stops (exit 2).
LOST_WORKERS_WAIT_S = 120.0

#: Seconds between two looks at the cluster while samples are pending.
POLL_S = 1.0

#: Name of the worker plugin that carries the toolkit's code (one slot: the latest run's code is sent to new workers).
CODE_PLUGIN = "segmentation-toolkit-code"

#: What is shipped to the workers: the packages and the data files they read.
_BUNDLE_DIRS = ("utils", "verse", "nme", "eso", "descriptors")
_BUNDLE_FILES = ("requirements.txt",)

#: Repository root as this machine sees it (told to the user when a worker cannot import ``utils``).
REPO_ROOT = str(Path(__file__).resolve().parents[2])

#: Top-level packages of this repository: their loggers' records are sent back from the workers.
_PACKAGES = ("utils", "verse", "nme", "eso")


def _fatal(message: str) -> SystemExit:
    """Log a one-line, expected problem with the cluster and return ``SystemExit(2)`` to raise."""
    logger.error("%s", message)
    return SystemExit(2)


# --------------------------------------------------------------------------------------------------
# The probe. It runs on workers that may lack this repository on their path (that is one of the
# things it checks), so it is built inside a function: cloudpickle then sends its code by value,
# and it uses the standard library only.
# --------------------------------------------------------------------------------------------------


def make_code_bundle(repo: str | os.PathLike[str] = REPO_ROOT) -> tuple[str, bytes]:
    """A zip of the code and data files the workers need, named by its content.

    Returns
    -------
    name : str
        ``segmentation-toolkit-<12 hex>.zip`` (SHA-256 of the content: the same code gives the same name).
    data : bytes
        The zip: ``utils/``, ``verse/``, ``nme/``, ``eso/``, ``descriptors/`` and
        ``requirements.txt`` (no ``__pycache__``), fixed dates, sorted entries.
    """
    import hashlib
    import io
    import zipfile

    root = Path(repo)
    files = [root / f for f in _BUNDLE_FILES if (root / f).is_file()]
    for folder in _BUNDLE_DIRS:
        files += [p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(files):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return f"segmentation-toolkit-{hashlib.sha256(data).hexdigest()[:12]}.zip", data


def make_activator() -> Callable[[list[Any], str], str | None]:
    """The worker-side step that makes the shipped code the one imported, as a function pickled by value.

    Returns
    -------
    activate : callable
        ``activate(code, local_directory) -> error or None`` with ``code = [zip name, packages]``:
        unpacks ``local_directory/<zip name>`` once into ``local_directory/<name without .zip>``
        (atomically, so concurrent tasks agree), drops modules of our packages imported from
        anywhere else (an older version, a ``PYTHONPATH`` checkout) and puts the folder first on
        ``sys.path``. Standard library only.
    """

    def activate(code: list[Any], local_directory: str) -> str | None:
        import importlib
        import os
        import shutil
        import sys
        import tempfile
        import zipfile

        zip_name, packages = code[0], list(code[1])
        target = os.path.join(local_directory, zip_name[: -len(".zip")])
        if not os.path.isdir(target):
            source = os.path.join(local_directory, zip_name)
            if not os.path.isfile(source):
                return f"did not receive the toolkit's code {zip_name} (the '{'segmentation-toolkit-code'}' worker plugin)"
            unpacked = tempfile.mkdtemp(prefix=".unpack-", dir=local_directory)
            try:
                with zipfile.ZipFile(source) as bundle:
                    bundle.extractall(unpacked)
                os.rename(unpacked, target)
            except OSError:
                shutil.rmtree(unpacked, ignore_errors=True)
                if not os.path.isdir(target):
                    raise
        prefix = target + os.sep
        for name in list(sys.modules):
            if name.split(".")[0] in packages:
                origin = getattr(sys.modules[name], "__file__", None) or ""
                if not os.path.abspath(origin).startswith(prefix):
                    del sys.modules[name]
        if not sys.path or sys.path[0] != target:
            while target in sys.path:
                sys.path.remove(target)
            sys.path.insert(0, target)
            importlib.invalidate_caches()
        return None

    return activate


def make_probe() -> tuple[Callable[[dict[str, Any]], dict[str, Any]], Callable[[str], str]]:
    """The worker check and the folder fingerprint it compares, as functions pickled by value.

    Returns
    -------
    probe : callable
        ``probe(spec, dask_worker=None) -> {"error": str or None, "repo": str or None}``; ``spec``
        holds only built-in types: ``token``, ``cwd`` (str or None),
        ``input_dirs`` (list of ``[path, fingerprint or None]``), ``output_dirs``
        (list of str), ``modules`` (list of str), ``repo`` (str), ``code``
        (``[zip name, packages]`` or None: activated first, see :func:`make_activator`).
        ``client.run`` passes the worker as ``dask_worker``.
    fingerprint : callable
        Folder -> digest of its sorted entry names (how an input folder is
        recognised as the same on another machine).
    """

    def fingerprint(path: str) -> str:
        import hashlib
        import os

        return hashlib.sha1("\n".join(sorted(os.listdir(path))).encode("utf-8", "surrogateescape")).hexdigest()

    activate = make_activator()

    def probe(spec: dict[str, Any], dask_worker: Any = None) -> dict[str, Any]:
        import importlib
        import os
        import sys
        import tempfile

        def check() -> str | None:
            code = spec.get("code")
            if code and dask_worker is not None:
                problem = activate(code, dask_worker.local_directory)
                if problem:
                    return problem
            cwd = spec.get("cwd")
            if cwd and not os.path.isdir(cwd):
                return f"does not see the working directory {cwd} (relative paths are resolved in it; pass absolute paths or use a shared folder)"
            outputs = set(spec["output_dirs"])
            for path, digest in spec["input_dirs"]:
                if not os.path.isdir(path):
                    return f"does not see {path} (no such folder there)"
                if path not in outputs and digest is not None and fingerprint(path) != digest:
                    return f"sees another folder at {path} (its entries differ from this machine's)"
            for path in spec["output_dirs"]:
                if not os.path.isdir(path):
                    return f"does not see {path} (no such folder there)"
                token_file = os.path.join(path, spec["probe_prefix"] + spec["token"])
                try:
                    with open(token_file, encoding="utf-8") as fh:
                        same = fh.read() == spec["token"]
                except OSError:
                    same = False
                if not same:
                    return f"sees another folder at {path} (a file written there by this machine is not visible)"
                try:
                    fd, tmp = tempfile.mkstemp(prefix=spec["probe_prefix"], suffix=".w", dir=path)
                    os.close(fd)
                    os.unlink(tmp)
                except OSError as exc:
                    return f"cannot write to {path} ({exc.strerror or exc})"
            for module in spec["modules"]:
                try:
                    importlib.import_module(module)
                except ImportError as exc:
                    missing = getattr(exc, "name", None) or ""
                    package = module.split(".")[0]
                    if missing.split(".")[0] == package:
                        return f"cannot import {module} ({exc}) from the toolkit's code shipped to the worker"
                    return f"cannot import {module} ({exc}): install requirements.txt in the workers' Python environment"
                except SystemExit:  # utils' own dependency check
                    return f"cannot import {module}: a dependency is missing: install requirements.txt in the workers' Python environment"
            return None

        try:
            error = check()
        except Exception as exc:  # the probe must answer, whatever happens
            error = f"cannot run the check ({type(exc).__name__}: {exc})"
        utils_module = sys.modules.get("utils")
        utils_file = getattr(utils_module, "__file__", None)
        repo = os.path.dirname(os.path.dirname(os.path.abspath(utils_file))) if utils_file else None
        return {"error": error, "repo": repo}

    return probe, fingerprint


def make_task(repo: str) -> Callable[..., bytes]:
    """The function every sample's task runs, pickled by value (see below).

    Recent schedulers unpickle the task graph; so that a scheduler started
    without this repository on its path can run ours, what it sees is this
    standard-library function and bytes: the item, and ``(work, spec)``
    (pickled once for all tasks) pickled on the client, unpickled on the
    worker (after the shipped code was activated, see :func:`make_activator`),
    and the outcome pickled back.

    Parameters
    ----------
    repo : str
        Repository root on the client, named in messages.
    """
    activate = make_activator()

    def run_task(item: bytes, shared: bytes, code: list[Any] | None = None) -> bytes:
        import pickle

        if code:
            try:
                from distributed import get_worker

                local_directory = get_worker().local_directory
            except (ImportError, ValueError):
                local_directory = None
            problem = activate(code, local_directory) if local_directory else None
            if problem:
                return pickle.dumps(("probe", problem, []))
        try:
            from utils.run.dask_runner import run_item_on_worker
        except ImportError as exc:
            return pickle.dumps(("probe", f"cannot import utils.run.dask_runner ({exc}) from the toolkit's code shipped to the worker (client checkout {repo})", []))
        except SystemExit:
            return pickle.dumps(("probe", "cannot import utils: a dependency is missing: install requirements.txt in the workers' Python environment", []))
        work, spec = pickle.loads(shared)
        return pickle.dumps(run_item_on_worker(pickle.loads(item), work=work, spec=spec))

    return run_task


# --------------------------------------------------------------------------------------------------
# Worker side of every task
# --------------------------------------------------------------------------------------------------

#: Probe result of each run (token -> error or None) in this worker process.
_CHECKED: dict[str, str | None] = {}
_CHECK_LOCK = threading.Lock()


class _RecordCollector(logging.Handler):
    """Keeps the log records one task emits in its own thread, made picklable."""

    def __init__(self, level: int, thread: int) -> None:
        super().__init__(level)
        self.thread = thread
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            portable = logging.makeLogRecord(record.__dict__)
            portable.msg, portable.args = record.getMessage(), None
            if record.exc_info:
                portable.exc_text = logging.Formatter().formatException(record.exc_info)
            portable.exc_info = None
            self.records.append(portable)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextlib.contextmanager
def _collect_records(level: int) -> Iterator[list[logging.LogRecord]]:
    collector = _RecordCollector(level, threading.get_ident())
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector.records
    finally:
        root.removeHandler(collector)


def run_item_on_worker(item: Any, *, work: Callable[[Any], Any], spec: dict[str, Any]) -> tuple[str, Any, list[logging.LogRecord]]:
    """One sample's task on a Dask worker.

    Parameters
    ----------
    item : object
        The work item.
    work : callable
        The per-sample function.
    spec : dict
        The probe specification of this run (see :func:`make_probe`) plus ``log_level``.

    Returns
    -------
    status : str
        ``"ok"``, ``"error"`` (an expected or unexpected error, as in :func:`utils.run.calls.call_item`)
        or ``"probe"`` (this worker failed the check; ``value`` says why).
    value : object
        Result, error message or probe failure.
    records : list of LogRecord
        What the work logged at or above ``spec["log_level"]``.
    """

    token = spec["token"]
    if token not in _CHECKED:
        with _CHECK_LOCK:
            if token not in _CHECKED:
                _CHECKED[token] = make_probe()[0](spec)["error"]
                for name in _PACKAGES:  # let our loggers emit what the client wants to see
                    logging.getLogger(name).setLevel(min(logging.getLogger(name).getEffectiveLevel(), spec["log_level"]))
    if _CHECKED[token] is not None:
        return "probe", _CHECKED[token], []
    if spec["cwd"] and os.getcwd() != spec["cwd"]:
        os.chdir(spec["cwd"])
    with _collect_records(spec["log_level"]) as records:
        ok, value = call_item(work, item)
    return ("ok" if ok else "error"), value, records


# --------------------------------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------------------------------


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise _fatal(MISSING_DISTRIBUTED) from None
    return distributed


def _connect(distributed: Any, address: str) -> Any:
    """A client of the scheduler at ``address`` (``tcp://host:port`` …) or in the scheduler file ``address``."""
    import dask

    timeout = dask.config.get("distributed.comm.timeouts.connect")
    is_file = address.endswith(".json") or os.path.isfile(address)
    if is_file and not os.path.isfile(address):
        raise _fatal(f"--dask_scheduler: scheduler file not found: {address}")
    where = f"in the scheduler file {address}" if is_file else f"at {address}"
    try:
        with _quiet_distributed():
            if is_file:
                return distributed.Client(scheduler_file=address, timeout=timeout, set_as_default=False)
            return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:  # TimeoutError is an OSError
        raise _fatal(f"cannot connect to the Dask scheduler {where}: {type(exc).__name__}: {exc}") from None


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """Silence distributed's own tracebacks for problems that we report in one line."""
    log = logging.getLogger("distributed")
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(old)


def _module_of(func: Callable[..., Any]) -> str | None:
    """Module a worker must import to run ``func`` (``None`` when it travels by value, e.g. ``__main__``)."""
    while isinstance(func, functools.partial):
        func = func.func
    module = getattr(func, "__module__", None) or getattr(type(func), "__module__", None)
    if not module or module == "__main__" or module not in sys.modules or module.split(".")[0] not in _PACKAGES:
        return None
    return module


def _write_token(folder: str, token: str) -> str:
    """Write the probe file ``folder/.dask_probe_<token>`` holding ``token``; return its path."""
    token_file = os.path.join(folder, PROBE_PREFIX + token)
    with open(token_file, "w", encoding="utf-8") as fh:
        fh.write(token)
    return token_file


@contextlib.contextmanager
def _probe_spec(
    func: Callable[[Any], Any], input_dirs: Sequence[os.PathLike[str] | str], output_dirs: Sequence[os.PathLike[str] | str], code: list[Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The probe specification; writes the token file into every output folder (created when missing) and removes it after."""
    token = uuid.uuid4().hex
    relative = any(not os.path.isabs(os.fspath(p)) for p in (*input_dirs, *output_dirs))
    outputs = list(dict.fromkeys(os.path.abspath(p) for p in output_dirs))
    _probe, fingerprint = make_probe()
    created: list[tuple[str, str]] = []  # (folder, its highest ancestor that did not exist)
    written: list[str] = []
    try:
        for path in outputs:
            if not os.path.isdir(path):
                top = path
                while not os.path.isdir(os.path.dirname(top)) and os.path.dirname(top) != top:
                    top = os.path.dirname(top)
                os.makedirs(path, exist_ok=True)
                created.append((path, top))
            written.append(_write_token(path, token))
        inputs = []
        for path in dict.fromkeys(os.path.abspath(p) for p in input_dirs):
            digest = fingerprint(path) if os.path.isdir(path) and path not in outputs else None
            inputs.append([path, digest])
        modules = ["utils", "utils.run.dask_runner"]
        module = _module_of(func)
        if module and module not in modules:
            modules.append(module)
        level = min(logging.getLogger(name).getEffectiveLevel() for name in ("", *_PACKAGES))
        yield {
            "token": token, "probe_prefix": PROBE_PREFIX, "cwd": os.getcwd() if relative else None,
            "input_dirs": inputs, "output_dirs": outputs, "modules": modules, "repo": REPO_ROOT, "log_level": level,
            "code": code,
        }  # fmt: skip
    finally:
        for token_file in written:
            with contextlib.suppress(OSError):
                os.unlink(token_file)
        for path, top in created:  # folders made only for the probe are removed again when nothing was written into them
            while True:
                try:
                    os.rmdir(path)  # only an empty folder
                except OSError:
                    break
                if path == top:
                    break
                path = os.path.dirname(path)


def _check_workers(client: Any, spec: dict[str, Any], address: str) -> int:
    """Run the probe on every worker; fatal one-line error for the first that fails. Returns the worker count."""
    if not client.scheduler_info().get("workers"):
        logger.info("waiting up to %.0f s for a worker to join the Dask scheduler at %s", WAIT_FOR_WORKERS_S, address)
        try:
            client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
        except (TimeoutError, OSError):
            raise _fatal(f"no Dask worker joined the scheduler at {address} within {WAIT_FOR_WORKERS_S:.0f} s") from None
    probe, _fingerprint = make_probe()
    with _quiet_distributed():
        answers = client.run(probe, spec, on_error="return")
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            raise _fatal(f"dask worker {worker}: cannot run the start-up check ({type(answer).__name__}: {answer})")
        if answer["error"]:
            raise _fatal(f"dask worker {worker} {answer['error']}")
    return len(answers)


def _ship_code(client: Any) -> list[Any]:
    """Register this checkout's code on the cluster (:data:`CODE_PLUGIN`); return ``[zip name, packages]`` for the tasks."""
    import tempfile

    from distributed.diagnostics.plugin import UploadFile

    name, data = make_code_bundle()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        plugin = UploadFile(str(path), load=False)  # reads the file now: the plugin carries the bytes
    try:
        with _quiet_distributed():
            client.register_plugin(plugin, name=CODE_PLUGIN)
    except Exception as exc:  # noqa: BLE001 - any failure of the cluster to take the plugin is one line
        raise _fatal(f"cannot send the toolkit's code to the Dask workers ({type(exc).__name__}: {exc})") from None
    logger.debug("toolkit code %s (%d kB) sent to the Dask workers", name, len(data) // 1024)
    return [name, list(_PACKAGES)]


def _worker_count(client: Any, address: str) -> int:
    try:
        return len(client.scheduler_info().get("workers") or {})
    except Exception:  # noqa: BLE001 - scheduler gone: the futures are cancelled, reported by the loop
        return -1


def _failure_message(fut: Any, distributed: Any) -> str:
    """One line for a future that failed on the cluster (not an error of the sample's own work)."""
    exc = fut.exception()
    if isinstance(exc, distributed.KilledWorker):
        return ("the Dask workers running this sample died too often (more than the scheduler's "
                "distributed.scheduler.allowed-failures); it may need more memory than a worker has")  # fmt: skip
    return f"failed on the Dask cluster: {type(exc).__name__}: {exc}"


def run_on_dask(
    address: str,
    func: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    desc: str,
    input_dirs: Sequence[os.PathLike[str] | str] = (),
    output_dirs: Sequence[os.PathLike[str] | str] = (),
) -> Iterator[tuple[int, tuple[bool, Any]]]:
    """Run ``func`` on every item on the Dask cluster at ``address``; yield outcomes as they complete.

    Parameters
    ----------
    address : str
        Scheduler address (``tcp://host:port``, any address ``distributed.Client``
        accepts) or a scheduler JSON file (``dask scheduler --scheduler-file``).
    func : callable
        Per-sample work; it and the items are pickled to the workers.
    items : sequence
        Work items.
    desc : str
        Label of the run (task keys on the Dask dashboard).
    input_dirs, output_dirs : sequence of Path
        Folders the work reads and writes; every worker must see them as this machine does.

    Yields
    ------
    index : int
        Position of the item in ``items``.
    outcome : (bool, object)
        ``(True, result)`` or ``(False, one-line message)``, as :func:`utils.run.calls.call_item` returns.

    Raises
    ------
    SystemExit
        Code 2, after logging one line: ``distributed`` missing, scheduler
        unreachable, no worker, a worker failing the probe (also one that
        joins during the run), or the scheduler lost during the run.
    """
    distributed = _import_distributed()
    import cloudpickle  # a dependency of distributed

    client = _connect(distributed, address)
    futures: list[Any] = []
    finished: set[int] = set()
    try:
        code = _ship_code(client)
        with _probe_spec(func, input_dirs, output_dirs, code) as spec:
            n_workers = _check_workers(client, spec, address)
            logger.info("Dask scheduler %s: %s checked (they see %s); %s submitted",
                        address, plural(n_workers, "worker"), ", ".join(spec["output_dirs"] + [p for p, _ in spec["input_dirs"] if p not in spec["output_dirs"]]) or "-",
                        plural(len(items), "sample"))  # fmt: skip
            keys = [f"{desc}-{i}-{spec['token']}" for i in range(len(items))]
            shared = cloudpickle.dumps((func, spec))
            futures = client.map(make_task(REPO_ROOT), [cloudpickle.dumps(item) for item in items], key=keys, pure=False, shared=shared, code=code)
            index = {fut.key: i for i, fut in enumerate(futures)}
            completed: queue.Queue[Any] = queue.Queue()
            for fut in futures:
                fut.add_done_callback(completed.put)  # called in distributed's callback thread
            pending = set(futures)
            no_worker_since: float | None = None
            while pending:
                try:
                    done = [completed.get(timeout=POLL_S)]
                except queue.Empty:
                    done = []
                while True:  # whatever else completed meanwhile
                    try:
                        done.append(completed.get_nowait())
                    except queue.Empty:
                        break
                pending.difference_update(done)
                if not done:
                    workers = _worker_count(client, address)
                    if workers == 0:
                        no_worker_since = no_worker_since if no_worker_since is not None else time.monotonic()
                        if time.monotonic() - no_worker_since >= LOST_WORKERS_WAIT_S:
                            unfinished = [items[index[f.key]] for f in pending]
                            _abandon(unfinished)
                            raise _fatal(
                                f"every Dask worker of the scheduler at {address} was lost during the run and none joined within "
                                f"{LOST_WORKERS_WAIT_S:.0f} s: {len(finished)} of {plural(len(items), 'sample')} finished, "
                                f"{len(unfinished)} not processed (the temporary files of the lost work were removed); re-run to finish them"
                            )
                    else:
                        no_worker_since = None
                    continue
                no_worker_since = None
                for fut in sorted(done, key=lambda f: index[f.key]):
                    i = index[fut.key]
                    if fut.status == "cancelled":
                        raise _fatal(f"lost the Dask scheduler at {address} during the run; samples already done are complete, re-run for the others")
                    if fut.status == "error":
                        outcome: tuple[bool, Any] = (False, _failure_message(fut, distributed))
                    else:
                        status, value, records = pickle.loads(fut.result())
                        if status == "probe":
                            worker = next(iter(client.who_has([fut]).get(fut.key, ())), "?")
                            raise _fatal(f"dask worker {worker} (joined during the run) {value}")
                        for record in records:
                            target = logging.getLogger(record.name)
                            if target.isEnabledFor(record.levelno):
                                target.handle(record)
                        outcome = (status == "ok", value)
                    fut.release()
                    finished.add(i)
                    yield i, outcome
    finally:
        pending_futures = [f for f in futures if not f.done()]
        if pending_futures:
            with contextlib.suppress(Exception):
                client.cancel(pending_futures)
        with _quiet_distributed(), contextlib.suppress(Exception):
            client.close()


def _abandon(items: Sequence[Any]) -> None:
    """Clean the sample folders of work lost with its workers (:func:`utils.run.calls.abandon`)."""
    abandon(items)

"""Mutation testing of one library module at a time with mutmut 3, and its score.

For every module named on the command line (``utils/labels/label_stats.py`` or just
``label_stats``), this script

1. copies the working tree (tracked and new files, ``git ls-files``) into
   ``.mutmut/<module>/`` (git-ignored; kept for ``mutmut results`` / ``mutmut show``),
2. writes there a ``setup.cfg`` whose ``[mutmut]`` section is the repository's
   shared one plus ``only_mutate`` (this module) and
   ``pytest_add_cli_args_test_selection`` (the module's tests, from the
   ``[mutation-tests]`` section of the repository's ``setup.cfg``),
3. runs ``mutmut run --max-children N`` there (N = 1 by default: the machine is shared),
4. reads the verdict of every mutant, matches each survivor against the
   equivalent mutants listed in ``dev/mutation_equivalents.yaml`` (module,
   function, the mutated line before/after, and a one-line reason), and prints
   one line per module: mutants, killed, timeouts, survivors explained as
   equivalent, survivors unexplained (with their diffs), the score and the time.

Score = (killed + timeout) / (mutants - equivalent). A mutant no test reaches
("no tests") counts as a survivor. Exit code 1 when a module has an unexplained
survivor or scores below ``--min_score``.

Usage::

    python dev/mutation.py label_stats binary_masks --max_children 1
    python dev/mutation.py --list                     # the modules configured in setup.cfg
"""

from __future__ import annotations

import argparse
import configparser
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".mutmut"
EQUIVALENTS = REPO / "dev" / "mutation_equivalents.yaml"
TESTS_SECTION = "mutation-tests"

logger = logging.getLogger("mutation")

#: mutmut 3's exit-code verdicts (mutmut.stats.status_by_exit_code), grouped.
KILLED_CODES = {1, 3}
TIMEOUT_CODES = {36, -24, 24, 152, 255}
SURVIVED_CODES = {0}
NO_TESTS_CODES = {5, 33}


@dataclass
class Survivor:
    """A mutant no test killed: its name, function and the changed lines."""

    name: str
    function: str
    removed: list[str]
    added: list[str]
    diff: str
    status: str
    reason: str | None = None


@dataclass
class ModuleScore:
    module: str
    total: int = 0
    killed: int = 0
    timeout: int = 0
    other: int = 0
    survivors: list[Survivor] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def equivalent(self) -> int:
        return sum(s.reason is not None for s in self.survivors)

    @property
    def unexplained(self) -> list[Survivor]:
        return [s for s in self.survivors if s.reason is None]

    @property
    def score(self) -> float:
        denominator = self.total - self.equivalent
        return 100.0 * (self.killed + self.timeout) / denominator if denominator else 100.0


def read_config() -> tuple[dict[str, str], dict[str, list[str]]]:
    """The shared ``[mutmut]`` options and ``{module path: [test paths]}`` of the repository's setup.cfg."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep the case of the module paths
    parser.read(REPO / "setup.cfg")
    shared = dict(parser["mutmut"]) if parser.has_section("mutmut") else {}
    tests = {k: v.split() for k, v in parser[TESTS_SECTION].items()} if parser.has_section(TESTS_SECTION) else {}
    return shared, tests


def module_path(name: str, configured: dict[str, list[str]]) -> str:
    """``label_stats`` -> ``utils/labels/label_stats.py`` (or any configured path ending that way)."""
    if name in configured:
        return name
    matches = [m for m in configured if m.endswith(f"/{name}.py") or m == f"{name}.py" or m.endswith(f"/{name}")]
    if len(matches) != 1:
        raise SystemExit(f"module {name!r}: {'ambiguous' if matches else 'not in'} [{TESTS_SECTION}] of setup.cfg ({sorted(configured)})")
    return matches[0]


def copy_tree(dest: Path) -> None:
    """Copy the tracked and new (not ignored) files of the working tree into ``dest``."""
    listing = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True)
    for rel in listing.stdout.decode().split("\0"):
        if not rel or rel == "setup.cfg":
            continue
        src = REPO / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def write_setup_cfg(dest: Path, shared: dict[str, str], module: str, tests: list[str]) -> None:
    section = dict(shared)
    section["only_mutate"] = module
    section["pytest_add_cli_args_test_selection"] = "\n".join(tests)
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser["mutmut"] = {k: ("\n" + v if "\n" in v else v) for k, v in section.items()}
    with open(dest / "setup.cfg", "w", encoding="utf-8") as f:
        parser.write(f)


def load_equivalents() -> list[dict[str, str]]:
    if not EQUIVALENTS.is_file():
        return []
    data = yaml.safe_load(EQUIVALENTS.read_text(encoding="utf-8")) or []
    return [e for e in data if isinstance(e, dict)]


def _norm(line: str) -> str:
    return re.sub(r"\s+", " ", line.strip())


def parse_diff(diff: str) -> tuple[list[str], list[str]]:
    removed = [_norm(line[1:]) for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [_norm(line[1:]) for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def function_of(mutant: str) -> str:
    """``utils.labels.label_stats.xǁLabelStatsǁboxes__mutmut_3`` -> ``LabelStats.boxes``; ``x_foo__mutmut_1`` -> ``foo``."""
    key = mutant.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]
    if "ǁ" in key:
        _, cls, func = key.split("ǁ")
        return f"{cls}.{func}"
    return key[2:] if key.startswith("x_") else key


def explain(survivor: Survivor, module: str, equivalents: list[dict[str, str]]) -> str | None:
    """The reason of the equivalents entry that matches ``survivor``, if any."""
    for entry in equivalents:
        if entry.get("module") != module or entry.get("function") != survivor.function:
            continue
        before, after = _norm(str(entry.get("before", ""))), _norm(str(entry.get("after", "")))
        if before in (" | ".join(survivor.removed), *survivor.removed) and after in (" | ".join(survivor.added), *survivor.added):
            return str(entry.get("reason") or "equivalent")
    return None


def stale_equivalents(module: str, equivalents: list[dict[str, str]]) -> list[dict[str, str]]:
    """Entries of ``module`` whose line before the mutation is no longer in its source (to be removed or updated)."""
    source = {_norm(line) for line in (REPO / module).read_text(encoding="utf-8").splitlines()}
    out = []
    for entry in equivalents:
        if entry.get("module") != module:
            continue
        before = _norm(str(entry.get("before", "")))
        if before in source:
            continue
        if not all(_norm(part) in source for part in before.split(" | ")):  # a multi-line mutation, joined with " | "
            out.append(entry)
    return out


def previous_tests(dest: Path) -> list[str] | None:
    """The test selection of the last run in ``dest`` (None when there was none)."""
    cfg = dest / "setup.cfg"
    if not cfg.is_file():
        return None
    parser = configparser.ConfigParser()
    parser.read(cfg)
    return parser.get("mutmut", "pytest_add_cli_args_test_selection", fallback="").split()


def run_module(module: str, tests: list[str], shared: dict[str, str], max_children: int, retest: bool) -> ModuleScore:
    dest = WORK / Path(module).with_suffix("").as_posix().replace("/", ".")
    names: list[str] = []
    meta = dest / "mutants" / f"{module}.meta"
    previous = dest / module
    if retest and previous.is_file() and previous.read_bytes() != (REPO / module).read_bytes():
        logger.info("%s changed since the last run: all its mutants are tested again", module)
        retest = False
    if retest and previous_tests(dest) != tests:
        logger.info("%s: its tests changed since the last run (mutmut forgets the verdicts): all its mutants are tested again", module)
        retest = False
    if retest and meta.is_file():  # only the previous survivors, against the current tests
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        names = sorted(n for n, c in codes.items() if c in SURVIVED_CODES or c in NO_TESTS_CODES)
        for child in dest.iterdir():
            if child.name != "mutants":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        shutil.rmtree(dest / "mutants" / "tests", ignore_errors=True)
        keep = {str(Path("mutants") / module) + suffix for suffix in ("", ".meta", ".spans")}
        for path in (dest / "mutants" / "utils").rglob("*.py"):  # other library modules: copied again, fresh
            if str(path.relative_to(dest)) not in keep:
                path.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copy_tree(dest)
    write_setup_cfg(dest, shared, module, tests)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    with open(dest / "mutmut.log", "w", encoding="utf-8") as log:
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names], cwd=dest, env=env, stdout=log,
                       stderr=subprocess.STDOUT, check=False)  # fmt: skip
    result = ModuleScore(module, seconds=time.perf_counter() - start)
    meta = dest / "mutants" / f"{module}.meta"
    if not meta.is_file():
        raise SystemExit(f"{module}: mutmut wrote no results ({meta}); see {dest / 'mutmut.log'}")
    codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    equivalents = load_equivalents()
    surviving = sorted(name for name, code in codes.items() if code in SURVIVED_CODES or code in NO_TESTS_CODES)
    diffs = mutant_diffs(dest, module, surviving)
    for name, code in sorted(codes.items()):
        result.total += 1
        if code in KILLED_CODES:
            result.killed += 1
        elif code in TIMEOUT_CODES:
            result.timeout += 1
        elif code in SURVIVED_CODES or code in NO_TESTS_CODES:
            shown = diffs.get(name, "")
            removed, added = parse_diff(shown)
            survivor = Survivor(name, function_of(name), removed, added, shown, "survived" if code in SURVIVED_CODES else "no tests")
            survivor.reason = explain(survivor, module, equivalents)
            result.survivors.append(survivor)
        else:
            result.other += 1
            logger.warning("%s: verdict %r (exit code %s)", name, code, code)
    return result


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
path, names = sys.argv[1], json.loads(sys.stdin.read())
print(json.dumps({name: get_diff_for_mutant(name, path=path) for name in names}))
"""


def mutant_diffs(dest: Path, module: str, names: list[str]) -> dict[str, str]:
    """``mutmut show`` of every named mutant, in one interpreter (one start-up instead of one per mutant)."""
    if not names:
        return {}
    proc = subprocess.run([sys.executable, "-c", _DIFFS, module], cwd=dest, input=json.dumps(names), capture_output=True,
                          text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{module}: cannot read the mutants' diffs ({proc.stderr.strip()[-500:]})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="modules to test (path or name, as in setup.cfg [mutation-tests])")
    parser.add_argument("--all", action="store_true", help="every module of setup.cfg [mutation-tests]")
    parser.add_argument("--list", action="store_true", help="print the configured modules and their tests")
    parser.add_argument("--max_children", type=int, default=1, help="mutants tested in parallel (default 1)")
    parser.add_argument("--retest", action="store_true",
                        help="re-run only the previous run's survivors against the current tests (a full run when the module changed)")
    parser.add_argument("--min_score", type=float, default=90.0, help="exit 1 below this score in %% (default 90)")
    parser.add_argument("--brief", action="store_true", help="one line per unexplained survivor instead of its diff")
    parser.add_argument("--stubs", type=Path,
                        help="append an entry per unexplained survivor to this YAML file (to edit into dev/mutation_equivalents.yaml)")
    parser.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    shared, configured = read_config()
    if args.list:
        for module, tests in configured.items():
            sys.stdout.write(f"{module}: {' '.join(tests)}\n")
        return 0
    names = list(configured) if args.all else [module_path(n, configured) for n in args.modules]
    if not names:
        build_parser().error("name modules or use --all")
    results = []
    for module in names:
        logger.info("%s: mutmut with %s", module, " ".join(configured[module]))
        score = run_module(module, configured[module], shared, args.max_children, args.retest)
        results.append(score)
        for s in score.unexplained:
            if args.brief:
                sys.stdout.write(f"{s.status}: {s.name.rsplit('.', 1)[-1]}: {' | '.join(s.removed)}  ->  {' | '.join(s.added)}\n")
            else:
                sys.stdout.write(f"--- {s.status}: {s.name} ({s.function})\n{s.diff.strip()}\n")
        for entry in stale_equivalents(module, load_equivalents()):
            sys.stdout.write(f"stale equivalent entry (line no longer in {module}): {entry.get('function')}: {entry.get('before')}\n")
        sys.stdout.write(
            f"{module}: {score.total} mutants, {score.killed} killed, {score.timeout} timeout, "
            f"{score.equivalent} equivalent, {len(score.unexplained)} unexplained survivors, {score.other} other; "
            f"score {score.score:.1f} %; {score.seconds / 60:.1f} min\n"
        )
        sys.stdout.flush()
    if args.stubs:
        stubs = [{"module": r.module, "function": s.function, "before": " | ".join(s.removed), "after": " | ".join(s.added),
                  "reason": "TODO"} for r in results for s in r.unexplained]  # fmt: skip
        with open(args.stubs, "a", encoding="utf-8") as f:
            yaml.safe_dump(stubs, f, sort_keys=False, allow_unicode=True, width=200)
    if args.json:
        rows = [{"module": r.module, "mutants": r.total, "killed": r.killed, "timeout": r.timeout, "equivalent": r.equivalent,
                 "unexplained": [s.name for s in r.unexplained], "score": round(r.score, 1), "minutes": round(r.seconds / 60, 1)}
                for r in results]  # fmt: skip
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    bad = [r.module for r in results if r.unexplained or r.score < args.min_score]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

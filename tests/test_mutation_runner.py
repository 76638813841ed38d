"""The mutation-testing runner (dev/mutation.py) without running mutmut: its reading of a survivor, the score,
and the list of equivalent mutants (complete entries with a reason, for configured modules)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import yaml

from tests.conftest import REPO


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("dev_mutation", REPO / "dev" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


DIFF = """# utils.labels.label_stats.xǁLabelStatsǁboxes__mutmut_12: survived
--- utils/labels/label_stats.py
+++ utils/labels/label_stats.py
@@ -14,7 +14,7 @@
     candidates = self.foreground_labels if labels is None else {int(v) for v in labels}
-    wanted = sorted(v for v in candidates if 0 < v < 256 and self.counts[v])
+    wanted = sorted(v for v in candidates if 0 < v <=  256 and self.counts[v])
     todo = [v for v in wanted if v not in self._boxes]
"""


def test_a_survivor_is_read_from_its_diff_and_matched_by_function_and_lines(runner):
    removed, added = runner.parse_diff(DIFF)
    assert removed == ["wanted = sorted(v for v in candidates if 0 < v < 256 and self.counts[v])"]
    assert added == ["wanted = sorted(v for v in candidates if 0 < v <= 256 and self.counts[v])"]
    assert runner.function_of("utils.labels.label_stats.xǁLabelStatsǁboxes__mutmut_12") == "LabelStats.boxes"
    assert runner.function_of("utils.labels.label_stats.x_map_threads__mutmut_3") == "map_threads"
    survivor = runner.Survivor("utils.labels.label_stats.xǁLabelStatsǁboxes__mutmut_12", "LabelStats.boxes", removed, added, DIFF, "survived")
    entry = {"module": "utils/labels/label_stats.py", "function": "LabelStats.boxes", "before": removed[0], "after": added[0], "reason": "r"}
    assert runner.explain(survivor, "utils/labels/label_stats.py", [entry]) == "r"
    assert runner.explain(survivor, "utils/labels/label_maps.py", [entry]) is None
    assert runner.explain(survivor, "utils/labels/label_stats.py", [{**entry, "function": "label_stats"}]) is None
    assert runner.explain(survivor, "utils/labels/label_stats.py", [{**entry, "after": "something else"}]) is None


def test_score_counts_timeouts_as_detected_and_leaves_equivalents_out(runner):
    score = runner.ModuleScore("m", total=100, killed=80, timeout=5)
    score.survivors = [runner.Survivor(f"n{i}", "f", [], [], "", "survived", "eq" if i < 5 else None) for i in range(15)]
    assert score.equivalent == 5 and len(score.unexplained) == 10
    assert score.score == pytest.approx(100 * 85 / 95)


def test_equivalent_mutants_are_complete_entries_of_configured_modules(runner):
    _, configured = runner.read_config()
    entries = runner.load_equivalents()
    assert entries, "dev/mutation_equivalents.yaml is empty"
    raw = yaml.safe_load((REPO / "dev" / "mutation_equivalents.yaml").read_text(encoding="utf-8"))
    assert len(raw) == len(entries)  # every item is a mapping
    seen = set()
    for entry in entries:
        assert set(entry) == {"module", "function", "before", "after", "reason"}, entry
        assert entry["module"] in configured, entry
        assert all(str(entry[k]).strip() for k in entry), entry
        assert str(entry["reason"]).strip().upper() != "TODO", entry
        key = (entry["module"], entry["function"], entry["before"], entry["after"])
        assert key not in seen, f"duplicate entry {key}"
        seen.add(key)
    for module, tests in configured.items():
        assert (REPO / module).is_file(), module
        files = [t for t in tests if t.endswith(".py") and "::" not in t]  # options such as --deselect NODE are allowed
        assert files and all((REPO / t).is_file() for t in files), (module, tests)

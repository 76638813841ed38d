"""Findings: one problem each, graded by the policy, summarised by code.

A check creates a :class:`Finding` with its code, the sample, the file, a one-line
message (value found, value expected) and the numbers behind it. :func:`grade`
then applies the policy: each finding gets its code's severity (a code set to
``off`` is dropped), and a finding that an ``ignore`` rule (or a reviewer's note)
accepts is moved to the ignored list with the reason — never silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from utils.audit.codes import CODES, SEVERITIES, severity_rank
from utils.audit.policy import IgnoreRule, Policy

__all__ = ["Finding", "Graded", "grade", "summary", "fails"]

logger = logging.getLogger(__name__)


@dataclass
class Finding:
    """One problem.

    Attributes
    ----------
    code : str
        One of :data:`utils.audit.codes.CODES`.
    sample : str
        Sample ID.
    path : str
        Sample folder relative to the audited root (unique even when IDs repeat).
    file : str
        The file concerned, relative to the root (``''`` for a finding about several files).
    message : str
        One line: the value found and the value expected.
    values : dict
        The numbers behind it (JSON types).
    related : list of str
        Other sample folders concerned (the other scan of a duplicate pair, the patient's other scans).
    severity : str
        Set by :func:`grade`.
    suggestion : str
        Set by :func:`grade` from the code.
    reason : str
        Why it was accepted (ignored findings only).
    """

    code: str
    sample: str
    path: str
    file: str
    message: str
    values: dict[str, Any] = field(default_factory=dict)
    related: list[str] = field(default_factory=list)
    severity: str = ""
    suggestion: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.reason:
            del out["reason"]
        return out

    def sort_key(self) -> tuple:
        return (severity_rank(self.severity) if self.severity in SEVERITIES else 9, self.code, self.path, self.message)


@dataclass
class Graded:
    """Findings after the policy: reported and ignored (each ignored one with its reason)."""

    findings: list[Finding]
    ignored: list[Finding]
    unused_rules: list[IgnoreRule]


def _matches(rule: IgnoreRule, finding: Finding) -> bool:
    if rule.code != finding.code:
        return False
    return rule.sample in (finding.sample, finding.path) or any(rule.sample in (r, r.rsplit("/", 1)[-1]) for r in finding.related)


def grade(findings: list[Finding], policy: Policy, extra_rules: list[IgnoreRule] = ()) -> Graded:
    """Apply severities and ignore rules.

    Parameters
    ----------
    findings : list of Finding
        Raw findings of every check.
    policy : Policy
    extra_rules : list of IgnoreRule
        Further accepted findings (e.g. from a review file), after the policy's.

    Returns
    -------
    Graded
        Both lists sorted by severity, code, sample; rules that matched nothing are listed
        (and logged) so that a stale or mistyped rule is seen.
    """
    rules = [*policy.ignore, *extra_rules]
    used: set[int] = set()
    kept, ignored = [], []
    for finding in findings:
        grade_ = policy.severity.get(finding.code, CODES[finding.code].severity)
        if grade_ == "off":
            continue
        finding.severity = grade_
        finding.suggestion = CODES[finding.code].suggestion
        hit = next((i for i, rule in enumerate(rules) if _matches(rule, finding)), None)
        if hit is None:
            kept.append(finding)
        else:
            used.add(hit)
            finding.reason = rules[hit].reason + (f" ({rules[hit].source})" if rules[hit].source else "")
            ignored.append(finding)
    unused = [rule for i, rule in enumerate(rules) if i not in used and rule.report_unused]
    for rule in unused:
        logger.warning("ignore rule %s for %s (%s) matched no finding", rule.code, rule.sample, rule.source or "policy")
    kept.sort(key=Finding.sort_key)
    ignored.sort(key=Finding.sort_key)
    return Graded(kept, ignored, unused)


def summary(graded: Graded) -> dict[str, Any]:
    """Counts by severity and by code (codes in documentation order, only those found)."""
    by_code = Counter(f.code for f in graded.findings)
    ignored = Counter(f.code for f in graded.ignored)
    severity_of = {f.code: f.severity for f in [*graded.findings, *graded.ignored]}
    return {
        "by_severity": {s: sum(1 for f in graded.findings if f.severity == s) for s in SEVERITIES},
        "by_code": {
            code: {"severity": severity_of[code], "count": by_code.get(code, 0), "ignored": ignored.get(code, 0)}
            for code in CODES
            if code in by_code or code in ignored
        },
        "ignored": len(graded.ignored),
    }


def fails(graded: Graded, fail_on: str) -> bool:
    """True when a reported finding is at or above ``fail_on`` (``never``: never)."""
    if fail_on == "never":
        return False
    limit = severity_rank(fail_on)
    return any(severity_rank(f.severity) <= limit for f in graded.findings)

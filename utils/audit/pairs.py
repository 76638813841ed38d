"""Checks between samples: duplicate and near-duplicate scans, patients' metadata, patients and scans across split subsets.

Everything here works on the records and signatures in memory (no image is read):

- **exact duplicates**: samples with the same voxel key (:func:`utils.audit.signature.voxel_key`:
  every voxel in the canonical orientation, so flipped or permuted storage does not hide a copy);
- **near-duplicates**: samples of the same canonical shape whose residual signatures correlate by at
  least ``near_duplicate.min_residual_correlation`` and whose thumbnails by at least
  ``near_duplicate.min_thumbnail_correlation`` (one matrix product per shape group);
- each pair is graded by who holds it: two patients → ``DUPLICATE_ACROSS_PATIENTS``; two subsets of a
  split (a split sheet of the dataset manifest, or the archive's own ``subset``) →
  ``DUPLICATE_ACROSS_SUBSETS``; otherwise ``DUPLICATE_SCAN`` / ``NEAR_DUPLICATE_SCAN``;
- **metadata**: one patient with two sexes; ages that decrease along the policy's scan order;
  one patient in two subsets of a split.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from utils.audit.findings import Finding
from utils.audit.policy import Policy
from utils.audit.signature import (
    correlations,
    masked_correlations,
    noise_part,
    normalised,
)

__all__ = ["ARCHIVE_SUBSET", "Pair", "duplicate_pairs", "pair_findings", "metadata_findings", "normalise_sex"]

#: Name used for the archive's own subsets (the info yaml's ``subset``) among the split sheets.
ARCHIVE_SUBSET = "subset (archive)"

Pair = tuple[str, str, dict[str, Any]]

_SEX = {"m": "M", "male": "M", "man": "M", "男": "M", "f": "F", "female": "F", "woman": "F", "女": "F"}


def normalise_sex(value: Any) -> str | None:
    """``'M'`` / ``'F'`` for the usual spellings, the case-folded text otherwise, None when empty."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().casefold()
    return _SEX.get(text, text)


def duplicate_pairs(records: list[dict[str, Any]], signatures: Mapping[str, Mapping[str, npt.NDArray]], policy: Policy) -> list[Pair]:
    """Exact and near-duplicate pairs ``(path_a, path_b, values)`` with ``path_a < path_b``.

    ``values``: ``kind`` (``exact`` / ``near``) and, for near pairs, the two correlations.
    """
    ok = [r for r in records if not r.get("error") and r.get("voxel_key")]
    pairs: list[Pair] = []
    by_key: dict[str, list[str]] = defaultdict(list)
    for r in ok:
        by_key[r["voxel_key"]].append(r["path"])
    exact = set()
    for paths in by_key.values():
        for a, b in itertools.combinations(sorted(paths), 2):
            pairs.append((a, b, {"kind": "exact"}))
            exact.add((a, b))
    min_res = policy.t("near_duplicate", "min_residual_correlation")
    min_thumb = policy.t("near_duplicate", "min_thumbnail_correlation")
    by_shape: dict[tuple[int, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        if r["path"] in signatures:
            by_shape[tuple(r["geometry"]["canonical_shape"])].append(r)
    for group in by_shape.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda r: r["path"])
        res = masked_correlations([noise_part(signatures[r["path"]]["residual"]) for r in group])
        thumb = correlations([normalised(signatures[r["path"]]["thumbnail"]) for r in group])
        for i, j in zip(*np.nonzero(np.triu(np.nan_to_num(res, nan=-1.0) >= min_res, k=1))):
            a, b = group[i]["path"], group[j]["path"]
            if (a, b) in exact or not thumb[i, j] >= min_thumb:
                continue
            pairs.append((a, b, {"kind": "near", "residual_correlation": round(float(res[i, j]), 4),
                                 "thumbnail_correlation": round(float(thumb[i, j]), 4)}))  # fmt: skip
    return sorted(pairs, key=lambda p: (p[0], p[1]))


def _splits_of(rec: dict[str, Any], splits: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """``{split: subset}`` of one sample: the split sheets by sample ID, and the archive's own subset."""
    out = {name: str(sheet[rec["sample"]]) for name, sheet in splits.items() if rec["sample"] in sheet}
    subset = (rec.get("meta") or {}).get("subset")
    if subset not in (None, ""):
        out[ARCHIVE_SUBSET] = str(subset)
    return out


def _describe(rec: dict[str, Any], splits: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    meta = rec.get("meta") or {}
    return {"sample": rec["sample"], "path": rec["path"], "patient": meta.get("patient"), "groups": meta.get("keys") or {},
            "subsets": _splits_of(rec, splits), "orientation": rec["geometry"]["orientation"]}  # fmt: skip


def pair_findings(
    records: list[dict[str, Any]],
    signatures: Mapping[str, Mapping[str, npt.NDArray]],
    policy: Policy,
    splits: Mapping[str, Mapping[str, str]],
) -> list[Finding]:
    """Findings of every duplicate pair (reported on the later sample of the pair, the other in ``related``)."""
    by_path = {r["path"]: r for r in records}
    out = []
    for a, b, values in duplicate_pairs(records, signatures, policy):
        ra, rb = by_path[a], by_path[b]
        da, db = _describe(ra, splits), _describe(rb, splits)
        what = "the same voxel data (in canonical orientation)" if values["kind"] == "exact" else (
            f"nearly the same scan (residual correlation {values['residual_correlation']:.2f}, thumbnail {values['thumbnail_correlation']:.2f})")
        base = f"{what} as {a} (stored {da['orientation']} there, {db['orientation']} here)"
        pair_values = {**values, "pair": [da, db]}
        findings = []
        if da["patient"] and db["patient"] and da["patient"] != db["patient"]:
            findings.append(("DUPLICATE_ACROSS_PATIENTS", f"{base}, under patient {da['patient']} there and {db['patient']} here; one patient per scan expected"))
        conflicts = [(name, da["subsets"][name], db["subsets"][name]) for name in sorted(set(da["subsets"]) & set(db["subsets"]))
                     if da["subsets"][name].casefold() != db["subsets"][name].casefold()]  # fmt: skip
        if conflicts:
            text = ", ".join(f"{name}: {sa} there, {sb} here" for name, sa, sb in conflicts)
            findings.append(("DUPLICATE_ACROSS_SUBSETS", f"{base}, in two subsets ({text}); a scan in one subset of each split expected"))
            pair_values["conflicts"] = [{"split": n, "subsets": [sa, sb]} for n, sa, sb in conflicts]
        if not findings:
            code = "DUPLICATE_SCAN" if values["kind"] == "exact" else "NEAR_DUPLICATE_SCAN"
            findings.append((code, f"{base}, patient {db['patient'] or '(unknown)'}; each scan once expected"))
        for code, message in findings:
            out.append(Finding(code, rb["sample"], b, rb["files"]["volume"], message, dict(pair_values), [a]))
    return out


def _by_patient(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        patient = (r.get("meta") or {}).get("patient")
        if patient and not r.get("error"):
            groups[patient].append(r)
    return {p: sorted(rs, key=lambda r: r["path"]) for p, rs in sorted(groups.items())}


def metadata_findings(records: list[dict[str, Any]], policy: Policy, splits: Mapping[str, Mapping[str, str]]) -> list[Finding]:
    """Sex mismatches, ages going backwards, patients across subsets."""
    out: list[Finding] = []
    order = policy.metadata.get("scan_order")
    for patient, recs in _by_patient(records).items():
        sexes = {r["path"]: normalise_sex(r["meta"].get("sex")) for r in recs}
        known = {p: s for p, s in sexes.items() if s is not None}
        if len(set(known.values())) > 1:
            first = next(iter(known.values()))
            odd = next(p for p, s in known.items() if s != first)
            rec = next(r for r in recs if r["path"] == odd)
            listing = ", ".join(f"{p}: {s}" for p, s in known.items())
            out.append(Finding("PATIENT_SEX_MISMATCH", rec["sample"], odd, rec["files"]["info"],
                               f"patient {patient} has scans with different sexes ({listing}); one sex per patient expected",
                               {"patient": patient, "sexes": known}, [p for p in known if p != odd]))  # fmt: skip
        if order:
            out += _age_order(patient, recs, order)
    for name in sorted({n for r in records if not r.get("error") for n in _splits_of(r, splits)}):
        for patient, recs in _by_patient(records).items():
            subsets = {r["path"]: _splits_of(r, splits).get(name) for r in recs}
            subsets = {p: s for p, s in subsets.items() if s not in (None, "")}
            if len({s.casefold() for s in subsets.values()}) > 1:
                target = next((p for p, s in subsets.items() if s.casefold() == "test"), list(subsets)[-1])
                rec = next(r for r in recs if r["path"] == target)
                listing = ", ".join(f"{p}: {s}" for p, s in subsets.items())
                out.append(Finding("PATIENT_ACROSS_SUBSETS", rec["sample"], target, rec["files"]["info"],
                                   f"patient {patient} is in several subsets of {name} ({listing}); all scans of a patient in one subset expected",
                                   {"patient": patient, "split": name, "subsets": subsets}, [p for p in subsets if p != target]))  # fmt: skip
    return out


def _age_order(patient: str, recs: list[dict[str, Any]], order: Mapping[str, Any]) -> list[Finding]:
    rank = {str(v).casefold(): i for i, v in enumerate(order["order"])}
    timeline = []
    for r in recs:
        step = (r["meta"].get("keys") or {}).get(order["key"])
        age = r["meta"].get("age")
        try:
            age_value = float(age)
        except (TypeError, ValueError):
            continue
        if step is not None and str(step).casefold() in rank:
            timeline.append((rank[str(step).casefold()], age_value, r))
    timeline.sort(key=lambda t: t[0])
    out = []
    for (r0, a0, rec0), (r1, a1, rec1) in itertools.pairwise(timeline):
        if r1 > r0 and a1 < a0:
            s0, s1 = order["order"][r0], order["order"][r1]
            out.append(Finding("PATIENT_AGE_ORDER", rec1["sample"], rec1["path"], rec1["files"]["info"],
                               f"patient {patient}: age {a1:g} at {order['key']} {s1}, {a0:g} at the earlier {s0} ({rec0['path']}); "
                               "an age that does not decrease expected", {"patient": patient, "ages": {rec0["path"]: a0, rec1["path"]: a1}},
                               [rec0["path"]]))  # fmt: skip
    return out

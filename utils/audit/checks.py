"""The checks that look at one sample's record, and those that compare a value with the dataset's distribution.

Every function here works on the records of :mod:`utils.audit.measure` (plain dicts) and
returns :class:`~utils.audit.findings.Finding` objects; none reads a file.

Outliers against the dataset are robust: for a value ``x`` (the logarithm for sizes,
spacings and volumes) the median ``m`` and ``sigma = 1.4826 × MAD`` of the values of all
samples; ``x`` is an outlier when ``|x - m| > max(mad_threshold × sigma, min_difference)``.
The floor ``min_difference`` (``log(min_ratio)`` on the log scale) keeps a tight
distribution — identical synthetic scans, one scanner protocol — from turning tiny
differences into findings; the MAD term keeps a wide one from flagging its normal spread.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.audit.findings import Finding
from utils.audit.policy import DIRECTIONS, Policy

__all__ = ["AuditContext", "robust_outliers", "sample_findings", "distribution_findings", "WORLD_AXES"]

#: Canonical (RAS) axis names, for messages.
WORLD_AXES = ("left-right", "anterior-posterior", "superior-inferior")


@dataclass(frozen=True)
class AuditContext:
    """What the checks need besides the policy.

    Attributes
    ----------
    modality : str
        ``CT`` enables the Hounsfield checks and compares foreground intensities in HU;
        anything else compares the foreground's rank within its volume.
    label_names : dict or None
        ``{value: short name}`` of the label map (None: unknown labels are not checked).
    """

    modality: str = "unknown"
    label_names: Mapping[int, str] | None = None

    def name(self, label: int) -> str:
        """``'20 (L1)'`` or ``'20'``."""
        short = (self.label_names or {}).get(label)
        return f"{label} ({short})" if short else str(label)


def _finding(rec: dict[str, Any], code: str, message: str, file: str | None = None, **values: Any) -> Finding:
    files = rec.get("files") or {}
    return Finding(code, rec["sample"], rec["path"], file if file is not None else (files.get("volume") or ""), message, values)


def _mask_file(rec: dict[str, Any]) -> str:
    return (rec.get("files") or {}).get("mask") or f"{rec['path']}/{rec['sample']}_mask.nii.gz"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# --------------------------------------------------------------------------------------------------------------------
# one sample


def sample_findings(rec: dict[str, Any], policy: Policy, ctx: AuditContext) -> list[Finding]:
    """Every per-sample check on one record."""
    if rec.get("error"):
        return [_finding(rec, "SAMPLE_UNREADABLE", rec["error"], file=rec.get("error_file") or "")]
    out: list[Finding] = []
    out += _geometry_findings(rec, policy)
    out += _mask_findings(rec, policy, ctx)
    out += _intensity_findings(rec, policy, ctx)
    return out


def _geometry_findings(rec: dict[str, Any], policy: Policy) -> list[Finding]:
    out = []
    geo = rec["geometry"]
    for which, result in (geo.get("readers") or {}).items():
        if result is None or (result["agree"] and not result["reasons"]):
            continue
        file = rec["files"]["volume"] if which == "volume" else _mask_file(rec)
        reasons = ", ".join(result["reasons"]) or "no reason code"
        if not result["agree"]:
            moved = result.get("displacement_mm")
            far = f"voxel centres up to {_fmt(moved)} mm apart" if moved is not None else "one reader cannot read it"
            out.append(_finding(rec, "READERS_DISAGREE", f"{which}: nibabel and ITK read different geometries ({far}; {reasons}); "
                                                         "one geometry for every reader expected", file=file, image=which, **result))  # fmt: skip
        else:
            out.append(_finding(rec, "HEADER_AMBIGUOUS", f"{which}: nibabel and ITK agree, but the header holds {reasons}; "
                                                         "a header every reader reads alike expected", file=file, image=which, **result))  # fmt: skip
    tol = policy.t("oblique", "tolerance_deg")
    if geo["obliquity_deg"] > tol:
        out.append(_finding(rec, "OBLIQUE", f"voxel axes {_fmt(geo['obliquity_deg'])}° from the closest patient axes ({geo['orientation']}); "
                                            f"at most {_fmt(tol)}° counts as axis-aligned", obliquity_deg=geo["obliquity_deg"]))  # fmt: skip
    sp = geo["spacing_mm"]
    ratio = max(sp) / min(sp) if min(sp) > 0 else math.inf
    limit = policy.t("anisotropy", "max_ratio")
    if ratio > limit:
        out.append(_finding(rec, "ANISOTROPIC", f"spacing {' x '.join(_fmt(s) for s in sp)} mm: largest/smallest {_fmt(ratio)}, at most {_fmt(limit)} expected",
                            spacing_mm=sp, ratio=ratio))  # fmt: skip
    return out


def _significant(sizes: list[int], policy: Policy) -> int:
    if not sizes:
        return 0
    floor = max(policy.t("components", "min_voxels"), policy.t("components", "min_fraction") * sizes[0])
    return sum(1 for s in sizes if s >= floor)


def _mask_findings(rec: dict[str, Any], policy: Policy, ctx: AuditContext) -> list[Finding]:
    mask = rec.get("mask")
    if mask is None:
        return [_finding(rec, "MASK_MISSING", f"no mask file {rec['sample']}_mask.nii.gz; a volume with its mask expected", file=_mask_file(rec))]
    out = []
    file = _mask_file(rec)
    if not mask["on_volume_grid"]:
        disp = mask.get("displacement_mm")
        found = f"voxel centres up to {_fmt(disp)} mm apart" if disp is not None else f"shape {mask['shape']}, volume {rec['geometry']['shape']}"
        out.append(_finding(rec, "MASK_GRID_MISMATCH", f"mask grid differs from the volume's ({found}); the same grid expected", file=file,
                            mask_shape=mask["shape"], volume_shape=rec["geometry"]["shape"], displacement_mm=disp))  # fmt: skip
    labels = {int(k): v for k, v in mask["labels"].items()}
    if not labels:
        out.append(_finding(rec, "MASK_EMPTY", "the mask holds background (0) only; at least one labelled voxel expected", file=file))
        return out
    if ctx.label_names is not None:
        unknown = sorted(v for v in labels if v not in ctx.label_names)
        if unknown:
            out.append(_finding(rec, "LABEL_UNKNOWN", f"mask values {unknown} are not in the label map (values {sorted(ctx.label_names)})",
                                file=file, labels=unknown, voxels={str(v): labels[v]["voxels"] for v in unknown}))  # fmt: skip
    out += _order_findings(rec, labels, policy, ctx, file)
    for label, info in labels.items():
        allowed = policy.expected_components(label)
        if allowed is not None:
            n = _significant(info["component_voxels"], policy)
            if n > allowed:
                out.append(_finding(rec, "LABEL_FRAGMENTED",
                                    f"label {ctx.name(label)}: {n} separate 3D pieces of significant size (voxels {info['component_voxels'][:n]}); "
                                    f"at most {allowed} expected", file=file, label=label, pieces=n, piece_voxels=info["component_voxels"][:n]))  # fmt: skip
        faces = [f for f in info["faces"] if f["voxels"] >= policy.t("fov_edge", "min_voxels") and f["fraction"] >= policy.t("fov_edge", "min_fraction")]
        if faces:
            where = ", ".join(f"{f['direction']} edge ({f['voxels']} voxels, {f['fraction']:.2g} of its mean cross-section)" for f in faces)
            out.append(_finding(rec, "LABEL_AT_FOV_EDGE", f"label {ctx.name(label)} is cut by the {where} of the field of view; "
                                                          "a structure inside the scan expected", file=file, label=label, faces=faces))  # fmt: skip
    return out


def _order_findings(rec: dict[str, Any], labels: dict[int, Any], policy: Policy, ctx: AuditContext, file: str) -> list[Finding]:
    order = policy.order
    if order is None:
        return []
    axis, sign = DIRECTIONS[order.direction]
    present = [lab for lab in order.labels if lab in labels]
    position = {lab: sign * labels[lab]["centroid_mm"][axis] for lab in present}  # larger = further in the direction
    pairs = []
    for upper, lower in itertools.pairwise(present):
        gap = position[upper] - position[lower]
        if gap < -order.tolerance_mm:
            pairs.append({"expected_first": upper, "expected_second": lower, "gap_mm": round(gap, 3)})
    if not pairs:
        return []
    text = "; ".join(f"{ctx.name(p['expected_first'])} lies {_fmt(-p['gap_mm'])} mm further {_opposite(order.direction)} than "
                     f"{ctx.name(p['expected_second'])}" for p in pairs[:3])  # fmt: skip
    if len(pairs) > 3:
        text += f"; and {len(pairs) - 3} more pairs (values)"
    return [_finding(rec, "LABEL_ORDER", f"labels out of {order.direction}-to-{_opposite(order.direction)} order (centroids in world coordinates): "
                                         f"{text}; the reverse expected", file=file, direction=order.direction, pairs=pairs)]  # fmt: skip


def _opposite(direction: str) -> str:
    return {"right": "left", "left": "right", "anterior": "posterior", "posterior": "anterior", "superior": "inferior", "inferior": "superior"}[direction]


def _fraction_below(percentiles: Mapping[str, float], value: float) -> float:
    """Fraction of voxels below ``value``, interpolated on the stored percentile curve (0 below its first point)."""
    qs = np.array([float(q) for q in percentiles]) / 100.0
    vs = np.array(list(percentiles.values()), dtype=np.float64)
    if value <= vs[0]:
        return 0.0 if value < vs[0] else float(qs[0])
    if value > vs[-1]:
        return 1.0
    return float(np.interp(value, vs, qs))


def _intensity_findings(rec: dict[str, Any], policy: Policy, ctx: AuditContext) -> list[Finding]:
    out = []
    inten = rec["intensity"]
    pct = inten["percentiles"]
    p1, p99 = pct["1"], pct["99"]
    spread = p99 - p1
    allowed = max(policy.t("constant", "max_spread"), policy.t("constant", "max_relative_spread") * max(abs(p1), abs(p99)))
    if spread <= allowed:
        what = f"constant value {_fmt(inten['min'])}" if inten["min"] == inten["max"] else f"1st-99th percentiles {_fmt(p1)} .. {_fmt(p99)}"
        out.append(_finding(rec, "VOLUME_CONSTANT", f"volume is (nearly) constant: {what}; a spread above {_fmt(allowed)} expected",
                            p1=p1, p99=p99, min=inten["min"], max=inten["max"]))  # fmt: skip
        return out
    if ctx.modality.upper() != "CT":
        return out
    p05, p50 = pct["0.5"], pct["50"]
    no_air, median_above = policy.t("ct_hu", "no_air_above_hu"), policy.t("ct_hu", "median_above_hu")
    if p05 > no_air and p50 > median_above:
        out.append(_finding(rec, "CT_NOT_HU",
                            f"values look unrescaled: 0.5th percentile {_fmt(p05)} (air is -1000 HU, fat -100) and median {_fmt(p50)}; "
                            f"Hounsfield units expected (0.5th percentile below {_fmt(no_air)} or median below {_fmt(median_above)})",
                            percentile_00_5=p05, median=p50, min=inten["min"], max=inten["max"]))  # fmt: skip
    floor = policy.t("ct_hu", "air_floor_hu")
    below = _fraction_below(pct, floor)
    if below > policy.t("ct_hu", "max_below_air_fraction"):
        out.append(_finding(rec, "CT_BELOW_AIR",
                            f"{below:.1%} of the voxels lie below {_fmt(floor)} HU (minimum {_fmt(inten['min'])}); at most "
                            f"{policy.t('ct_hu', 'max_below_air_fraction'):.1%} expected (air is -1000 HU)",
                            fraction_below=below, floor_hu=floor, min=inten["min"]))  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------------------------
# against the dataset


def robust_outliers(values: Mapping[Any, float], mad_threshold: float, min_difference: float) -> dict[Any, dict[str, float]]:
    """Values far from the median of all (see the module docstring).

    Parameters
    ----------
    values : mapping
        Key -> value (already on the scale compared: take logarithms first for ratios).
    mad_threshold : float
        Robust standard deviations allowed.
    min_difference : float
        The smallest distance from the median that counts.

    Returns
    -------
    outliers : dict
        Key -> ``{'value', 'median', 'sigma', 'limit'}``.
    """
    if not values:
        return {}
    x = np.array(list(values.values()), dtype=np.float64)
    med = float(np.median(x))
    sigma = 1.4826 * float(np.median(np.abs(x - med)))
    limit = max(mad_threshold * sigma, min_difference)
    return {key: {"value": float(v), "median": med, "sigma": sigma, "limit": limit} for key, v in values.items() if abs(v - med) > limit}


def _ok(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if not r.get("error")]


def distribution_findings(records: list[dict[str, Any]], policy: Policy, ctx: AuditContext) -> list[Finding]:
    """Spacing, shape, label-volume and foreground-intensity outliers, and rare labels."""
    ok = _ok(records)
    by_path = {r["path"]: r for r in ok}
    out: list[Finding] = []
    out += _size_outliers(ok, by_path, policy, "spacing_outlier", "canonical_spacing_mm", "SPACING_OUTLIER", "spacing", "mm")
    out += _size_outliers(ok, by_path, policy, "shape_outlier", "canonical_shape", "SHAPE_OUTLIER", "field of view", "voxels")
    out += _label_volume_outliers(ok, by_path, policy, ctx)
    out += _foreground_outliers(ok, by_path, policy, ctx)
    out += _rare_labels(ok, by_path, policy, ctx)
    return out


def _size_outliers(ok, by_path, policy: Policy, group: str, key: str, code: str, what: str, unit: str) -> list[Finding]:
    if len(ok) < policy.t(group, "min_samples"):
        return []
    hits: dict[str, list[str]] = defaultdict(list)
    values: dict[str, dict[str, Any]] = defaultdict(dict)
    for axis in range(3):
        per = {r["path"]: math.log(r["geometry"][key][axis]) for r in ok if r["geometry"][key][axis] > 0}
        found = robust_outliers(per, policy.t(group, "mad_threshold"), math.log(policy.t(group, "min_ratio")))
        for path, o in found.items():
            value, median = math.exp(o["value"]), math.exp(o["median"])
            hits[path].append(f"{_fmt(value)} {unit} along {WORLD_AXES[axis]} ({_fmt(value / median)}x the median {_fmt(median)})")
            values[path][WORLD_AXES[axis]] = {"value": value, "median": median, "ratio": value / median}
    return [_finding(by_path[p], code, f"{what} {'; '.join(h)}; within {_fmt(policy.t(group, 'min_ratio'))}x of the median expected", axes=values[p])
            for p, h in sorted(hits.items())]  # fmt: skip


def _labels_of(rec: dict[str, Any]) -> dict[int, dict[str, Any]]:
    mask = rec.get("mask")
    return {int(k): v for k, v in mask["labels"].items()} if mask else {}


def _label_volume_outliers(ok, by_path, policy: Policy, ctx: AuditContext) -> list[Finding]:
    per_label: dict[int, dict[str, float]] = defaultdict(dict)
    for r in ok:
        for label, info in _labels_of(r).items():
            if info["volume_mm3"] > 0:
                per_label[label][r["path"]] = math.log(info["volume_mm3"])
    out = []
    min_ratio = policy.t("label_volume", "min_ratio")
    for label, values in sorted(per_label.items()):
        if len(values) < policy.t("label_volume", "min_samples"):
            continue
        for path, o in sorted(robust_outliers(values, policy.t("label_volume", "mad_threshold"), math.log(min_ratio)).items()):
            value, median = math.exp(o["value"]), math.exp(o["median"])
            out.append(_finding(by_path[path], "LABEL_VOLUME_OUTLIER",
                                f"label {ctx.name(label)}: {_fmt(value / 1000)} cm³, {_fmt(value / median)}x its median {_fmt(median / 1000)} cm³ "
                                f"over {len(values)} samples; within {_fmt(min_ratio)}x (and {_fmt(policy.t('label_volume', 'mad_threshold'))} "
                                "robust SD) expected", file=_mask_file(by_path[path]), label=label, volume_mm3=value, median_mm3=median,
                                ratio=value / median, samples=len(values)))  # fmt: skip
    return out


def _foreground_outliers(ok, by_path, policy: Policy, ctx: AuditContext) -> list[Finding]:
    ct = ctx.modality.upper() == "CT"
    values = {}
    for r in ok:
        fg = r.get("foreground")
        if fg:
            values[r["path"]] = fg["median"] if ct else fg["median_rank_in_volume"]
    if len(values) < policy.t("foreground_intensity", "min_samples"):
        return []
    floor = policy.t("foreground_intensity", "min_difference_hu" if ct else "min_difference_rank")
    out = []
    for path, o in sorted(robust_outliers(values, policy.t("foreground_intensity", "mad_threshold"), floor).items()):
        if ct:
            text = f"median intensity under the mask {_fmt(o['value'])} HU, dataset median {_fmt(o['median'])} HU; within {_fmt(o['limit'])} HU expected"
        else:
            text = (f"the foreground's median is brighter than {o['value']:.0%} of its volume, {o['median']:.0%} in the dataset's "
                    f"median sample; within {o['limit']:.0%} expected")  # fmt: skip
        out.append(_finding(by_path[path], "FOREGROUND_INTENSITY_OUTLIER", text, measure="median_hu" if ct else "median_rank_in_volume",
                            value=o["value"], median=o["median"], limit=o["limit"]))  # fmt: skip
    return out


def _rare_labels(ok, by_path, policy: Policy, ctx: AuditContext) -> list[Finding]:
    with_mask = [r for r in ok if _labels_of(r)]
    if len(with_mask) < policy.t("rare_label", "min_dataset_samples"):
        return []
    where: dict[int, list[str]] = defaultdict(list)
    for r in with_mask:
        for label in _labels_of(r):
            where[label].append(r["path"])
    out = []
    limit = int(policy.t("rare_label", "max_samples"))
    for label, paths in sorted(where.items()):
        if len(paths) <= limit:
            for path in paths:
                out.append(_finding(by_path[path], "LABEL_RARE", f"label {ctx.name(label)} occurs in {len(paths)} of {len(with_mask)} samples with a "
                                                                 f"mask; more than {limit} expected", file=_mask_file(by_path[path]), label=label,
                                    samples=len(paths), of=len(with_mask)))  # fmt: skip
    return out

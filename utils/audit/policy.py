"""The audit policy: thresholds, severities, expected anatomy, accepted findings.

Three layers, each overriding the one before: the defaults below
(:data:`DEFAULT_THRESHOLDS`), the dataset's ``descriptors/<dataset>/audit.yaml``, and a
user's ``--policy FILE``. A policy file reads::

    thresholds:                      # any subset of DEFAULT_THRESHOLDS, merged key by key
      label_volume: {mad_threshold: 3.5, min_ratio: 2.0, min_samples: 5}
    severity:                        # re-grade a code: error | warning | info | off
      OBLIQUE: info
    anatomy:
      order:                         # labels whose order along a patient axis is fixed
        direction: superior          # the first label lies furthest in this direction
        labels: [1, 2, 3]
        tolerance_mm: 0.0
      components: {default: 1, labels: {26: 2}}   # significant 3D pieces allowed per label (null: not checked)
    metadata:
      sex_keys: [sex, gender]        # info-yaml keys (also under 'attributes'), case-insensitive
      age_keys: [age, age_ct]
      scan_order: {key: phase, order: [pre, post]}   # ages must not decrease along this order
    ignore:                          # accepted findings (appended to the dataset's), each with a reason
      - {code: LABEL_AT_FOV_EDGE, sample: gl017, reason: "L5 cut by design, checked by AB"}

Unknown keys, codes, severities and non-numeric thresholds are refused with one
line naming the file and the entry (a typo must not silently switch a check off).
YAML is read by :func:`utils.files.yaml_files.load_yaml_file`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.files.aliases import PathLike
from utils.audit.codes import CODES, GRADES
from utils.archive.metadata_sheets import AGE_COLUMNS, SEX_COLUMNS
from utils.files.yaml_files import load_yaml_file

__all__ = [
    "AUDIT_FILE",
    "DEFAULT_THRESHOLDS",
    "DIRECTIONS",
    "PolicyError",
    "IgnoreRule",
    "LabelOrder",
    "Policy",
    "load_policy",
    "dataset_policy_file",
]

#: Name of the policy file in ``descriptors/<dataset>/``.
AUDIT_FILE = "audit.yaml"

#: Every threshold with its default (see docs/audit.md for what each means).
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "oblique": {"tolerance_deg": 0.01},
    "spacing_outlier": {"mad_threshold": 5.0, "min_ratio": 2.0, "min_samples": 5},
    "shape_outlier": {"mad_threshold": 5.0, "min_ratio": 3.0, "min_samples": 5},
    "anisotropy": {"max_ratio": 10.0},
    "label_volume": {"mad_threshold": 3.5, "min_ratio": 2.0, "min_samples": 5},
    "components": {"min_fraction": 0.1, "min_voxels": 10},
    "fov_edge": {"min_voxels": 1, "min_fraction": 0.5},
    "rare_label": {"max_samples": 1, "min_dataset_samples": 5},
    "ct_hu": {"no_air_above_hu": -200.0, "median_above_hu": 300.0, "air_floor_hu": -1124.0, "max_below_air_fraction": 0.005},
    "constant": {"max_spread": 0.0, "max_relative_spread": 0.001},
    "foreground_intensity": {"mad_threshold": 5.0, "min_difference_hu": 300.0, "min_difference_rank": 0.3, "min_samples": 5},
    "near_duplicate": {"min_residual_correlation": 0.3, "min_thumbnail_correlation": 0.9},
}

#: Patient directions an anatomical order may run along, with the RAS+ world axis and sign.
DIRECTIONS: dict[str, tuple[int, float]] = {
    "right": (0, 1.0), "left": (0, -1.0), "anterior": (1, 1.0), "posterior": (1, -1.0), "superior": (2, 1.0), "inferior": (2, -1.0),
}  # fmt: skip

_TOP_KEYS = ("thresholds", "severity", "anatomy", "metadata", "ignore")
#: Default metadata keys: the sex and age column names the metadata readers recognise (utils/archive/metadata_sheets.py).
_DEFAULT_METADATA = {"sex_keys": list(SEX_COLUMNS), "age_keys": list(AGE_COLUMNS), "scan_order": None}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class IgnoreRule:
    """An accepted finding: ``code`` for ``sample`` (an ID or a sample folder below the root), with a reason.

    ``report_unused``: log the rule when it matches no finding (a stale or mistyped rule); False for
    the rules a review's blanket ``pass`` makes for every code it may accept.
    """

    code: str
    sample: str
    reason: str
    source: str = ""
    report_unused: bool = True


@dataclass(frozen=True)
class LabelOrder:
    """Labels whose order along one patient direction is fixed by the anatomy.

    Attributes
    ----------
    direction : str
        One of :data:`DIRECTIONS`: ``labels[0]`` lies furthest in it.
    labels : tuple of int
        Label values in that order.
    tolerance_mm : float
        Two labels count as out of order when the later one's centroid lies further in
        ``direction`` than the earlier one's by more than this.
    """

    direction: str
    labels: tuple[int, ...]
    tolerance_mm: float = 0.0


@dataclass
class Policy:
    """The merged policy of one audit run.

    Attributes
    ----------
    thresholds : dict
        ``{group: {name: value}}``, every key of :data:`DEFAULT_THRESHOLDS`.
    severity : dict
        ``{code: grade}`` for every code (defaults from :mod:`utils.audit.codes`).
    order : LabelOrder or None
    components : dict
        ``{'default': int or None, 'labels': {label: int or None}}``.
    metadata : dict
        ``sex_keys``, ``age_keys``, ``scan_order``.
    ignore : list of IgnoreRule
    sources : list of str
        Files merged, in order.
    """

    thresholds: dict[str, dict[str, float]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_THRESHOLDS))
    severity: dict[str, str] = field(default_factory=lambda: {c.code: c.severity for c in CODES.values()})
    order: LabelOrder | None = None
    components: dict[str, Any] = field(default_factory=lambda: {"default": None, "labels": {}})
    metadata: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(_DEFAULT_METADATA))
    ignore: list[IgnoreRule] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def t(self, group: str, name: str) -> float:
        """One threshold value."""
        return self.thresholds[group][name]

    def expected_components(self, label: int) -> int | None:
        """Significant 3D pieces allowed for ``label``; None when not checked."""
        return self.components["labels"].get(label, self.components["default"])

    def to_json(self) -> dict[str, Any]:
        """What ``audit.json`` records of the policy."""
        order = None
        if self.order is not None:
            order = {"direction": self.order.direction, "labels": list(self.order.labels), "tolerance_mm": self.order.tolerance_mm}
        components = {"default": self.components["default"], "labels": {str(k): v for k, v in self.components["labels"].items()}}
        return {
            "sources": list(self.sources),
            "thresholds": copy.deepcopy(self.thresholds),
            "severity": dict(self.severity),
            "anatomy": {"order": order, "components": components},
            "metadata": copy.deepcopy(self.metadata),
            "ignore": [{"code": r.code, "sample": r.sample, "reason": r.reason, "source": r.source} for r in self.ignore],
        }

    # --- merging one file ---------------------------------------------------------------------------------------

    def merge(self, data: Any, source: str) -> None:
        """Apply one policy file's content on top of this policy (raise :class:`PolicyError` naming ``source``)."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PolicyError(f"{source}: a YAML mapping with keys {list(_TOP_KEYS)} was expected, found {type(data).__name__}")
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise PolicyError(f"{source}: unknown key(s) {unknown}; allowed: {list(_TOP_KEYS)}")
        self._merge_thresholds(data.get("thresholds"), source)
        self._merge_severity(data.get("severity"), source)
        self._merge_anatomy(data.get("anatomy"), source)
        self._merge_metadata(data.get("metadata"), source)
        self._merge_ignore(data.get("ignore"), source)
        self.sources.append(source)

    def _merge_thresholds(self, value: Any, source: str) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise PolicyError(f"{source}: 'thresholds' must be a mapping of groups, found {value!r}")
        for group, entries in value.items():
            if group not in DEFAULT_THRESHOLDS:
                raise PolicyError(f"{source}: unknown threshold group {group!r}; allowed: {sorted(DEFAULT_THRESHOLDS)}")
            if not isinstance(entries, dict):
                raise PolicyError(f"{source}: thresholds.{group} must be a mapping, found {entries!r}")
            for name, number in entries.items():
                if name not in DEFAULT_THRESHOLDS[group]:
                    raise PolicyError(f"{source}: unknown threshold {group}.{name}; allowed: {sorted(DEFAULT_THRESHOLDS[group])}")
                if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                    raise PolicyError(f"{source}: thresholds.{group}.{name} must be a finite number, found {number!r}")
                self.thresholds[group][name] = float(number)

    def _merge_severity(self, value: Any, source: str) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise PolicyError(f"{source}: 'severity' must map codes to one of {list(GRADES)}, found {value!r}")
        for code, grade in value.items():
            if grade is False:  # YAML 1.1 reads an unquoted off as false
                grade = "off"
            if code not in CODES:
                raise PolicyError(f"{source}: severity of unknown code {code!r}; the codes are listed in docs/audit.md")
            if grade not in GRADES:
                raise PolicyError(f"{source}: severity.{code} must be one of {list(GRADES)}, found {grade!r}")
            self.severity[code] = grade

    def _merge_anatomy(self, value: Any, source: str) -> None:
        if value is None:
            return
        if not isinstance(value, dict) or set(value) - {"order", "components"}:
            raise PolicyError(f"{source}: 'anatomy' must be a mapping with 'order' and/or 'components', found {value!r}")
        if "order" in value:
            self.order = _label_order(value["order"], source)
        if "components" in value:
            comp = value["components"]
            if comp is None:
                self.components = {"default": None, "labels": {}}
                return
            if not isinstance(comp, dict) or set(comp) - {"default", "labels"}:
                raise PolicyError(f"{source}: anatomy.components must be {{default: N, labels: {{label: N}}}}, found {comp!r}")
            default = _count_or_none(comp.get("default"), f"{source}: anatomy.components.default")
            labels = comp.get("labels") or {}
            if not isinstance(labels, dict):
                raise PolicyError(f"{source}: anatomy.components.labels must map labels to counts, found {labels!r}")
            self.components = {
                "default": default,
                "labels": {_label_value(k, f"{source}: anatomy.components.labels"): _count_or_none(v, f"{source}: anatomy.components.labels.{k}")
                           for k, v in labels.items()},
            }  # fmt: skip

    def _merge_metadata(self, value: Any, source: str) -> None:
        if value is None:
            return
        if not isinstance(value, dict) or set(value) - set(_DEFAULT_METADATA):
            raise PolicyError(f"{source}: 'metadata' may hold {sorted(_DEFAULT_METADATA)}, found {value!r}")
        for key in ("sex_keys", "age_keys"):
            if key in value:
                keys = value[key]
                if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
                    raise PolicyError(f"{source}: metadata.{key} must be a list of info-yaml keys, found {keys!r}")
                self.metadata[key] = list(keys)
        if "scan_order" in value:
            order = value["scan_order"]
            if order is not None and (
                not isinstance(order, dict) or set(order) != {"key", "order"} or not isinstance(order["key"], str)
                or not isinstance(order["order"], list) or len(order["order"]) < 2
            ):  # fmt: skip
                raise PolicyError(f"{source}: metadata.scan_order must be {{key: info-yaml key, order: [first, second, ...]}}, found {order!r}")
            self.metadata["scan_order"] = None if order is None else {"key": order["key"], "order": [str(v) for v in order["order"]]}

    def _merge_ignore(self, value: Any, source: str) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            raise PolicyError(f"{source}: 'ignore' must be a list of {{code, sample, reason}}, found {value!r}")
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or set(entry) != {"code", "sample", "reason"}:
                raise PolicyError(f"{source}: ignore[{i}] must have exactly the keys code, sample, reason; found {entry!r}")
            code, sample, reason = entry["code"], entry["sample"], entry["reason"]
            if code not in CODES:
                raise PolicyError(f"{source}: ignore[{i}]: unknown code {code!r}")
            if not isinstance(sample, (str, int)) or str(sample).strip() == "":
                raise PolicyError(f"{source}: ignore[{i}]: 'sample' must be a sample ID or folder, found {sample!r}")
            if not isinstance(reason, str) or not reason.strip():
                raise PolicyError(f"{source}: ignore[{i}]: a non-empty 'reason' is required (why is {code} accepted for {sample}?)")
            self.ignore.append(IgnoreRule(code, str(sample).strip(), " ".join(reason.split()), source))


def _label_value(value: Any, where: str) -> int:
    try:
        label = int(value)
    except (TypeError, ValueError):
        raise PolicyError(f"{where}: label {value!r} is not an integer") from None
    if isinstance(value, bool) or not 1 <= label <= 255 or (isinstance(value, float) and not value.is_integer()):
        raise PolicyError(f"{where}: label {value!r} must be an integer in 1..255")
    return label


def _count_or_none(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(f"{where} must be a count >= 1 or null (not checked), found {value!r}")
    return value


def _label_order(value: Any, source: str) -> LabelOrder | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not {"direction", "labels"} <= set(value) or set(value) - {"direction", "labels", "tolerance_mm"}:
        raise PolicyError(f"{source}: anatomy.order must be {{direction: superior, labels: [...], tolerance_mm: 0}}, found {value!r}")
    direction = value["direction"]
    if direction not in DIRECTIONS:
        raise PolicyError(f"{source}: anatomy.order.direction must be one of {list(DIRECTIONS)}, found {direction!r}")
    labels = value["labels"]
    if not isinstance(labels, list) or len(labels) < 2:
        raise PolicyError(f"{source}: anatomy.order.labels must list at least two labels, found {labels!r}")
    parsed = tuple(_label_value(v, f"{source}: anatomy.order.labels") for v in labels)
    if len(set(parsed)) != len(parsed):
        raise PolicyError(f"{source}: anatomy.order.labels lists a label twice: {list(parsed)}")
    tol = value.get("tolerance_mm", 0.0)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise PolicyError(f"{source}: anatomy.order.tolerance_mm must be a number >= 0, found {tol!r}")
    return LabelOrder(direction, parsed, float(tol))


def load_policy(dataset_file: PathLike | None, user_file: PathLike | None = None) -> Policy:
    """The defaults, then the dataset's policy file, then the user's.

    Parameters
    ----------
    dataset_file : path or None
        ``descriptors/<dataset>/audit.yaml`` (None for a dataset without one).
    user_file : path or None
        ``--policy FILE``.

    Raises
    ------
    FileNotFoundError, PolicyError
        A file is missing, not valid YAML, or holds a bad entry (one line naming it).
    """
    policy = Policy()
    for path in (dataset_file, user_file):
        if path is None:
            continue
        try:
            data = load_yaml_file(path, "audit policy")
        except ValueError as exc:
            raise PolicyError(str(exc)) from None
        policy.merge(data, str(path))
    return policy


def dataset_policy_file(descriptors_dir: Path, dataset: str) -> Path | None:
    """``descriptors/<dataset>/audit.yaml`` when it exists."""
    path = Path(descriptors_dir) / dataset / AUDIT_FILE
    return path if path.is_file() else None

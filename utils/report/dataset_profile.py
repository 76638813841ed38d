"""What kind of dataset a grouped folder holds, and how to show it: ``descriptors/<dataset>/report.yaml``.

A report file reads::

    title: VerSe (spine CT)
    modality: CT
    identify_by: [archive, in_verse19, in_verse20]   # info-yaml keys that mark a sample of this dataset
    group_by: [archive, subset]                       # summary table and sample-row columns
    window: {values: [-500.0, 1300.0], name: bone}    # CT: fixed values (HU)
    # window: {percentiles: [1.0, 99.5]}               # MRI: percentiles of the planes shown

``--dataset auto`` picks the dataset whose ``identify_by`` keys all occur in the
samples' info yamls (the most specific one when several fit); when none fits, the
generic profile (percentile window, summary by ``subset``) is used with a warning.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from utils.files.sample_info import SampleDir, read_info
from utils.files.yaml_files import load_yaml_file

__all__ = ["DESCRIPTORS_DIR", "Window", "ReportProfile", "GENERIC", "available_profiles", "load_profile", "detect_profile", "DETECT_SAMPLES", "detect_sample_profile"]

logger = logging.getLogger(__name__)

#: ``descriptors/`` of this repository.
DESCRIPTORS_DIR = Path(__file__).resolve().parents[2] / "descriptors"
REPORT_FILE = "report.yaml"


@dataclass(frozen=True)
class Window:
    """Display window: fixed values (CT, HU) or percentiles of the voxels shown (MRI).

    Exactly one of ``values`` and ``percentiles`` is set.
    """

    values: tuple[float, float] | None = None
    percentiles: tuple[float, float] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        pair = self.values if self.values is not None else self.percentiles
        if (self.values is None) == (self.percentiles is None) or pair is None or len(pair) != 2:
            raise ValueError(f"window needs exactly one of values [lo, hi] or percentiles [lo, hi], found {self}")
        lo, hi = pair
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"window [{lo}, {hi}]: finite lo < hi expected")
        if self.percentiles is not None and not (0 <= lo and hi <= 100):
            raise ValueError(f"window percentiles [{lo}, {hi}] outside [0, 100]")

    def limits(self, shown: npt.NDArray) -> tuple[float, float]:
        """``(lo, hi)`` in the volume's units for the voxels ``shown`` (used by percentile windows only)."""
        if self.values is not None:
            return float(self.values[0]), float(self.values[1])
        finite = shown[np.isfinite(shown)]
        if finite.size == 0:
            return 0.0, 1.0
        lo, hi = (float(v) for v in np.percentile(finite, self.percentiles))
        return (lo, hi) if hi > lo else (lo, lo + 1.0)

    def describe(self) -> str:
        """``bone window [-500, 1300]`` / ``percentiles [1, 99.5]``."""
        if self.values is not None:
            text = f"window [{self.values[0]:g}, {self.values[1]:g}]"
        else:
            text = f"percentiles [{self.percentiles[0]:g}, {self.percentiles[1]:g}] of the planes shown"  # type: ignore[index]
        return f"{self.name} {text}" if self.name and self.name != "percentiles" else text


@dataclass(frozen=True)
class ReportProfile:
    """How one dataset is reported.

    Attributes
    ----------
    dataset : str
        Descriptor folder name (``verse``) or ``generic``.
    title : str
        Heading of the report.
    modality : str
        ``CT``, ``MR`` … (shown in the report).
    identify_by : tuple of str
        Info-yaml keys that mark a sample of this dataset.
    group_by : tuple of str
        Info-yaml keys of the summary table and the sample rows.
    window : Window
        Default display window.
    label_map : Path or None
        ``descriptors/<dataset>/label_map.yaml`` when it exists.
    """

    dataset: str
    title: str
    modality: str
    identify_by: tuple[str, ...]
    group_by: tuple[str, ...]
    window: Window
    label_map: Path | None = None


GENERIC = ReportProfile("generic", "dataset", "unknown", (), ("subset",), Window(percentiles=(1.0, 99.5), name="percentiles"))


def _pair(value: Any, what: str, source: Path) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{source}: {what} must be a list [lo, hi], found {value!r}")
    try:
        return float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {what} must hold two numbers, found {value!r}") from None


def _str_list(value: Any, what: str, source: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{source}: {what} must be a list of info-yaml keys, found {value!r}")
    return tuple(value)


def load_profile(path: Path, dataset: str | None = None) -> ReportProfile:
    """Read a ``report.yaml``.

    Raises
    ------
    ValueError
        The file is not valid YAML or misses / mistypes a field; the message names the file.
    """
    path = Path(path)
    try:
        data = load_yaml_file(path, "report descriptor")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the report descriptor ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a YAML mapping was expected")
    win = data.get("window")
    if not isinstance(win, dict):
        raise ValueError(f"{path}: 'window' must be a mapping with 'values' or 'percentiles'")
    try:
        window = Window(
            values=_pair(win["values"], "window.values", path) if "values" in win else None,
            percentiles=_pair(win["percentiles"], "window.percentiles", path) if "percentiles" in win else None,
            name=str(win.get("name", "")),
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    name = dataset or path.parent.name
    label_map = path.parent / "label_map.yaml"
    return ReportProfile(
        dataset=name,
        title=str(data.get("title", name)),
        modality=str(data.get("modality", "unknown")),
        identify_by=_str_list(data.get("identify_by", []), "identify_by", path),
        group_by=_str_list(data.get("group_by", ["subset"]), "group_by", path),
        window=window,
        label_map=label_map if label_map.is_file() else None,
    )


def available_profiles(descriptors_dir: Path = DESCRIPTORS_DIR) -> dict[str, ReportProfile]:
    """Every ``descriptors/<dataset>/report.yaml``, by dataset name (sorted)."""
    return {p.parent.name: load_profile(p) for p in sorted(Path(descriptors_dir).glob(f"*/{REPORT_FILE}"))}


def _best_match(info: dict[str, Any], profiles: Sequence[ReportProfile]) -> ReportProfile | None:
    fitting = [p for p in profiles if p.identify_by and all(k in info for k in p.identify_by)]
    if not fitting:
        return None
    fitting.sort(key=lambda p: len(p.identify_by), reverse=True)
    if len(fitting) > 1 and len(fitting[0].identify_by) == len(fitting[1].identify_by):
        return None  # ambiguous
    return fitting[0]


def detect_profile(infos: Iterable[dict[str, Any]], profiles: dict[str, ReportProfile]) -> ReportProfile | None:
    """The profile that most info yamls fit (see the module docstring), or None when none fits.

    Parameters
    ----------
    infos : iterable of dict
        Contents of some samples' ``{ID}_info.yaml``.
    profiles : dict
        From :func:`available_profiles`.
    """
    votes: Counter[str] = Counter()
    for info in infos:
        match = _best_match(info, list(profiles.values()))
        if match is not None:
            votes[match.dataset] += 1
    if not votes:
        return None
    (name, _count), *rest = votes.most_common()
    if rest:
        logger.warning("samples of several datasets found (%s); reporting all as %s", dict(votes), name)
    return profiles[name]


#: How many samples' info yamls :func:`detect_sample_profile` reads.
DETECT_SAMPLES = 20


def detect_sample_profile(
    samples: Sequence[SampleDir], profiles: dict[str, ReportProfile], limit: int = DETECT_SAMPLES
) -> ReportProfile | None:
    """:func:`detect_profile` of the first ``limit`` samples' info yamls; an unreadable one is passed over.

    Parameters
    ----------
    samples : sequence of SampleDir
        The grouped dataset's samples (:func:`utils.files.sample_info.find_samples`).
    profiles : dict
        From :func:`available_profiles`.
    limit : int
        How many samples are read at the most.

    Returns
    -------
    profile : ReportProfile or None
        None when no info yaml read fits a profile.
    """
    infos = []
    for sample in samples[:limit]:
        try:
            infos.append(read_info(sample.info))
        except (OSError, ValueError):
            continue
    return detect_profile(infos, profiles)

"""The samples of one split as export cases, and the checks made before anything is written.

A split worksheet (routine 06/07 of VerSe, 05/06 of NME and ESO) copies the
``Manifest`` rows of its samples and adds a column named like the sheet
holding ``train``, ``val`` or ``test``. Each row becomes an :class:`ExportCase`
with its patient id (``descriptors/<dataset>/dataset.yaml``: ``patient_id``).

Checks: the sheet and its column exist, every row has a subset, case ids are
unique and safe in file names, every listed file exists, every label in
``valid_labels`` is in the label map, and no patient has scans in two of
train/val/test (a leak between training and evaluation).

The label plan (:class:`LabelPlan`) decides how labels are exported. nnU-Net
needs the label values 0, 1, …, n without gaps; so does SAT-DS, whose label
list names mask value i + 1 at position i. A label map whose indices are
consecutive is exported as it is (every label, present in the data or not).
A label map with gaps (an edited copy) is exported with its labels renumbered
by rank (e.g. 0, 3, 7 -> 0, 1, 2): the masks written for nnU-Net and SAT-DS
carry the new values and the mapping is recorded in their metadata. No label
is ever dropped.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from utils.files.safe_names import CASE_ID_RE
from utils.export.descriptor import DatasetDescriptor
from utils.labels.label_maps import Label, LabelError, LabelMap
from utils.dataset.splits import SUBSETS
from utils.files.spreadsheet import is_missing, parse_list

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ExportCase",
    "LabelPlan",
    "CASE_ID_RE",
    "read_split_cases",
    "patient_overlaps",
    "format_overlaps",
    "check_label_map_matches_manifest",
]

_BINARY_COLUMN_RE = re.compile(r"^mask_(\d{2,3})_([A-Za-z0-9-]+)$")


@dataclass(frozen=True)
class ExportCase:
    """One sample of the split.

    Attributes
    ----------
    case_id : str
        The sample ``ID`` (nnU-Net case identifier).
    patient_id : str
    subset : str
        ``train``, ``val`` or ``test``.
    volume : Path
        Absolute path of ``{ID}_volume.nii.gz``.
    mask : Path or None
        Absolute path of ``{ID}_mask.nii.gz``; None for a sample without mask (ESO allows them).
    valid_labels : tuple of int or None
        Labels present in the mask according to the manifest (None without mask).
    """

    case_id: str
    patient_id: str
    subset: str
    volume: Path
    mask: Path | None
    valid_labels: tuple[int, ...] | None

    @property
    def trainable(self) -> bool:
        """A train/val case with a mask (nnU-Net ``imagesTr``, MONAI training/validation)."""
        return self.subset in ("train", "val") and self.mask is not None


@dataclass(frozen=True)
class LabelPlan:
    """How the label map is exported.

    Attributes
    ----------
    labels : tuple of Label
        The label map, in index order, background first.
    remap : tuple of (int, int) or None
        ``(old, new)`` pairs when the map's indices are not 0..n; None when exported as they are.
    """

    labels: tuple[Label, ...]
    remap: tuple[tuple[int, int], ...] | None

    @classmethod
    def from_label_map(cls, label_map: LabelMap) -> "LabelPlan":
        """Plan for a label map; raise :class:`LabelError` without background 0 or with duplicated names."""
        labels = tuple(label_map.labels)
        if labels[0].index != 0:
            raise LabelError(f"the label map has no background label 0 (indices {list(label_map.indices)}); nnU-Net needs one")
        names = [lab.name for lab in labels[1:]]
        dupes = sorted({n for n in names if names.count(n) > 1} | ({"background"} & set(names)))
        if dupes:
            raise LabelError(f"label names must be unique (and 'background' only for 0), found {dupes} more than once")
        consecutive = [lab.index for lab in labels] == list(range(len(labels)))
        remap = None if consecutive else tuple((lab.index, new) for new, lab in enumerate(labels))
        return cls(labels, remap)

    def new_index(self, old: int) -> int:
        """Exported value of label ``old``."""
        return dict(self.remap)[old] if self.remap else old

    def nnunet_labels(self) -> dict[str, int]:
        """``dataset.json`` ``labels``: name -> exported value, ``background`` 0 first."""
        return {("background" if lab.index == 0 else lab.name): self.new_index(lab.index) for lab in self.labels}

    def class_names(self) -> list[str]:
        """Names of the exported values 1..n in order (SAT-DS ``label``)."""
        return [lab.name for lab in self.labels[1:]]

    def remap_record(self) -> dict[str, int] | None:
        """``{"old": new}`` for the metadata, or None."""
        return {str(old): new for old, new in self.remap} if self.remap else None


def check_label_map_matches_manifest(label_map: LabelMap, columns: list[str], source: str) -> None:
    """The binary-mask columns ``mask_XX_short`` of the manifest must be exactly the label map's labels.

    A manifest without binary-mask columns is not checked.

    Raises
    ------
    LabelError
        Names both sets.
    """
    found = set()
    for col in columns:
        m = _BINARY_COLUMN_RE.match(col)
        if m:
            found.add((int(m.group(1)), m.group(2)))
    if not found:
        return
    expected = {(lab.index, lab.short) for lab in label_map}
    if found != expected:
        raise LabelError(
            f"{source}: the label map {sorted(expected)} does not match the manifest's binary masks {sorted(found)} "
            f"(pass the label map the binary masks were made with: --label_map)"
        )


def read_split_cases(
    frame: pd.DataFrame, manifest_file: Path, split_name: str, descriptor: DatasetDescriptor, root_dir: Path, label_map: LabelMap
) -> list[ExportCase]:
    """Turn the rows of a split worksheet into checked cases.

    Parameters
    ----------
    frame : DataFrame
        The split worksheet (``read_sheet(manifest_file, split_name)``).
    manifest_file : Path
        ``dataset_manifest.xlsx`` (for messages).
    split_name : str
        Split worksheet (and column).
    descriptor : DatasetDescriptor
        Gives the patient id of each row.
    root_dir : Path
        The grouped dataset folder the manifest's paths are relative to.
    label_map : LabelMap
        Every ``valid_labels`` value must be in it.

    Returns
    -------
    cases : list of ExportCase
        In sheet order.

    Raises
    ------
    ValueError
        Missing split column, an empty split, a row without subset, a missing
        or unsafe or duplicated ID, an empty patient column, a label outside the map.
    FileNotFoundError
        Files listed by the sheet are missing (the message counts them and names the first).
    """
    if split_name not in frame.columns:
        raise ValueError(f"{manifest_file}: sheet {split_name!r} has no column {split_name!r}; is it a split sheet?")
    if frame.empty:
        raise ValueError(f"{manifest_file}: split {split_name!r} holds no sample")
    root_dir = Path(root_dir).resolve()
    allowed = set(label_map.indices)
    cases: list[ExportCase] = []
    missing: list[str] = []
    seen: set[str] = set()
    for row in frame.to_dict("records"):
        case_id = "" if is_missing(row.get("ID")) else str(row["ID"])
        if not CASE_ID_RE.match(case_id):
            raise ValueError(f"{manifest_file}: sheet {split_name!r}: sample ID {case_id!r} is not usable as a file name (letters, digits, '.', '_', '-')")
        if case_id in seen:
            raise ValueError(f"{manifest_file}: sheet {split_name!r}: sample ID {case_id!r} occurs twice; case identifiers must be unique")
        seen.add(case_id)
        subset = row.get(split_name)
        if subset not in SUBSETS:
            raise ValueError(f"{manifest_file}: sheet {split_name!r}: sample {case_id} has subset {subset!r}, expected one of {list(SUBSETS)}")
        if is_missing(row.get("volume")):
            raise ValueError(f"{manifest_file}: sheet {split_name!r}: sample {case_id} has no volume")
        volume = root_dir / str(row["volume"])
        mask = None if is_missing(row.get("mask")) else root_dir / str(row["mask"])
        valid = None if mask is None else tuple(int(v) for v in parse_list(row.get("valid_labels")))
        unknown = sorted(set(valid or ()) - allowed)
        if unknown:
            raise LabelError(f"{manifest_file}: sample {case_id}: valid_labels {list(valid)} hold {unknown}, which the label map does not have ({sorted(allowed)})")
        missing += [str(p) for p in (volume, mask) if p is not None and not p.is_file()]
        cases.append(ExportCase(case_id, descriptor.patient_of(row), str(subset), volume, mask, valid))
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) listed in sheet {split_name!r} are missing, e.g. {missing[0]} (is --root_dir the folder the manifest's paths are relative to?)")
    return cases


def patient_overlaps(cases: list[ExportCase]) -> dict[str, dict[str, list[str]]]:
    """Patients whose cases lie in more than one subset: ``{patient: {subset: [case ids]}}``."""
    by_patient: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for case in cases:
        by_patient[case.patient_id][case.subset].append(case.case_id)
    return {p: dict(s) for p, s in sorted(by_patient.items()) if len(s) > 1}


def format_overlaps(overlaps: dict[str, dict[str, list[str]]], limit: int = 5) -> str:
    """``verse401 (train: verse401-201; test: verse401-253), …`` for a one-line message."""
    parts = []
    for patient, subsets in list(overlaps.items())[:limit]:
        parts.append(f"{patient} (" + "; ".join(f"{s}: {', '.join(ids)}" for s, ids in sorted(subsets.items(), key=lambda kv: SUBSETS.index(kv[0]))) + ")")
    more = f" and {len(overlaps) - limit} more" if len(overlaps) > limit else ""
    return ", ".join(parts) + more

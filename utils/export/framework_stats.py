"""The statistics the frameworks compute slowly, taken in the export's own pass over the cases.

``utils/export_dataset.py`` reads every case once to check it. While the arrays
are in memory, the worker that checked a case also computes that case's part of

- nnU-Net's fingerprint (:mod:`utils.export.fingerprint`), for the training
  cases of ``--format nnunetv2`` (``imagesTr``: train and val with a mask), and
- MONAI's data statistics (:mod:`utils.export.monai_stats`), for the cases
  AutoRunner analyses from ``--format monai``'s datalist: its ``training``
  items, then its ``validation`` items (AutoRunner folds a validation list into
  ``training`` as fold 0 before its ``DataAnalyzer`` runs),

and the parent combines the parts: ``data_stats.yaml`` and
``data_stats_by_case.yaml`` go into the MONAI folder before it is committed;
``dataset_fingerprint.json`` goes to ``OUTPUT_DIR/nnUNet_preprocessed/Dataset…/``
once the nnU-Net folder is committed (nnU-Net's own folder; nnU-Net's planning
takes a fingerprint it finds there instead of extracting one).

**Reuse.** Each output is recorded with the content stamp of every file it was
computed from (:func:`content_stamp`: size, and the CRC-32 and length of the
decompressed data from the gzip trailer, which the full read verifies): the
record ``dataset_fingerprint_record.json`` beside the fingerprint, and
``data_stats_record.json`` in the MONAI folder. A re-export whose cases all have
the stamps recorded (and whose outputs still have the recorded sha256) reuses
the outputs and skips their computation; with ``--headers_only`` that is the
only way to have them. Otherwise they are computed again (full read), or, with
``--headers_only``, not written: a fingerprint recorded for other data is then
removed, since nnU-Net would take it as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.files.atomic import atomic_write_text
from utils.export import fingerprint as nnfp
from utils.export import monai_stats
from utils.export.cases import ExportCase
from utils.export.extents import volume_extents
from utils.export.files import json_text, place_file
from utils.export.verify import CheckedCase
from utils.files.nifti_readers import itk_spacing
from utils.files.nifti_io import NiftiError
from utils.files.yaml_files import dump_yaml

__all__ = [
    "METHOD_VERSION",
    "FINGERPRINT_RECORD_NAME",
    "DATA_STATS_RECORD_NAME",
    "StatsRequest",
    "content_stamp",
    "case_statistics",
    "StatsPlan",
]

logger = logging.getLogger(__name__)

#: Version of the way the statistics are computed here; a record of another version is not reused.
METHOD_VERSION = 1
FINGERPRINT_RECORD_NAME = "dataset_fingerprint_record.json"
DATA_STATS_RECORD_NAME = "data_stats_record.json"
_FINGERPRINT_METHOD = (
    "nnU-Net v2 DatasetFingerprintExtractor with SimpleITKIO: crop_to_nonzero, foreground values drawn with "
    "np.random.RandomState(1234) per case, int(10e7 // cases) per case, pooled (MIC-DKFZ/nnUNet 2.x)"
)
_DATA_STATS_METHOD = (
    "MONAI Auto3DSeg DataAnalyzer as AutoRunner runs it (do_ccp=False, hist_bins=0) on the datalist's training items "
    "followed by its validation items (Project-MONAI/MONAI 1.x)"
)


@dataclass(frozen=True)
class StatsRequest:
    """What a worker computes for one case besides checking it.

    Attributes
    ----------
    fingerprint_samples : int or None
        Foreground values to draw for nnU-Net's fingerprint; None when not needed.
    monai : bool
        Compute MONAI's per-case data statistics.
    stamps : dict
        ``{"image": stamp, "label": stamp}`` taken before the pass; the worker checks that the
        files it read still have them.
    """

    fingerprint_samples: int | None
    monai: bool
    stamps: dict[str, dict[str, int]]


def content_stamp(path: Path) -> dict[str, int]:
    """What identifies a file's content without reading it all: size, and for gzip the trailer's CRC-32 and length.

    The gzip trailer holds the CRC-32 and the length (mod 2**32) of the decompressed data, which a
    full read verifies; a plain file is stamped by its size and modification time.

    Raises
    ------
    NiftiError
        The file cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            magic = fh.read(2)
            if magic == b"\x1f\x8b" and size >= 18:
                fh.seek(-8, os.SEEK_END)
                crc, isize = struct.unpack("<II", fh.read(8))
                return {"size": int(size), "gzip_crc32": int(crc), "gzip_isize": int(isize)}
            return {"size": int(size), "mtime_ns": int(os.fstat(fh.fileno()).st_mtime_ns)}
    except OSError as exc:
        raise NiftiError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def case_statistics(case: ExportCase, checked: CheckedCase, request: StatsRequest) -> dict[str, Any]:
    """A case's parts of the requested statistics, from the arrays its check read (runs in the workers).

    Returns
    -------
    parts : dict
        ``fingerprint`` (:class:`~utils.export.fingerprint.CaseFingerprint` or None), ``monai`` (per-case
        statistics or None), ``monai_skipped`` (why MONAI would skip the case, or None).

    Raises
    ------
    NiftiError
        A file changed between the stamp taken before the pass and the read.
    """
    for what, path in (("image", case.volume), ("label", case.mask)):
        if what in request.stamps and content_stamp(path) != request.stamps[what]:
            raise NiftiError(f"{path}: the file changed while the export was running; export again")
    volume = np.asanyarray(checked.volume_img.dataobj)
    extents = volume_extents(volume)
    stats = checked.mask_stats
    out: dict[str, Any] = {"fingerprint": None, "monai": None, "monai_skipped": None}
    if request.fingerprint_samples is not None:
        raw_header = (getattr(checked.volume_img, "extra", None) or {}).get("raw_header", checked.volume_img.header)
        out["fingerprint"] = nnfp.case_fingerprint(
            volume, checked.mask, itk_spacing(raw_header), request.fingerprint_samples, extents.nonzero, stats.foreground
        )
    if request.monai:
        try:
            out["monai"] = monai_stats.case_data_stats(volume, checked.mask, checked.volume_img.affine, stats.counts, extents, stats.foreground)
        except monai_stats.NoPositiveVoxel as exc:
            out["monai_skipped"] = str(exc)
    return out


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("method_version") == METHOD_VERSION else None


@dataclass
class StatsPlan:
    """Which statistics an export computes, reuses or leaves out, and where they go.

    Build it with :meth:`make` before the per-case pass; give each case's job :meth:`request`; after
    the pass, :meth:`stage_data_stats` (before the commit) and :meth:`write_fingerprint` (after it).
    """

    headers_only: bool
    fingerprint_folder: Path | None = None
    raw_folder_name: str | None = None
    fingerprint_cases: list[str] = field(default_factory=list)
    monai_cases: list[str] = field(default_factory=list)
    stamps: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    reuse_fingerprint: bool = False
    monai_final: Path | None = None
    reuse_data_stats: bool = False
    status: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(
        cls, cases: list[ExportCase], *, nnunet_folder: Path | None, output_dir: Path, monai_final: Path | None, headers_only: bool
    ) -> StatsPlan:
        """Plan the statistics of an export.

        Parameters
        ----------
        cases : list of ExportCase
            The split's cases.
        nnunet_folder : Path or None
            Final ``nnUNet_raw/Dataset…`` folder when nnU-Net is exported.
        output_dir : Path
        monai_final : Path or None
            Final MONAI folder when MONAI is exported.
        headers_only : bool
            Voxels are not read: outputs can only be reused.
        """
        plan = cls(headers_only=headers_only, monai_final=monai_final)
        if nnunet_folder is not None:
            plan.raw_folder_name = nnunet_folder.name
            plan.fingerprint_folder = nnfp.preprocessed_folder(output_dir, nnunet_folder.name)
            plan.fingerprint_cases = sorted(c.case_id for c in cases if c.trainable)  # nnU-Net's order (np.unique)
        if monai_final is not None:  # AutoRunner's analysis order: the training list, then the validation list
            plan.monai_cases = [c.case_id for s in ("train", "val") for c in cases if c.subset == s and c.mask is not None]
        by_id = {c.case_id: c for c in cases}
        for case_id in dict.fromkeys(plan.fingerprint_cases + plan.monai_cases):
            case = by_id[case_id]
            plan.stamps[case_id] = {"image": content_stamp(case.volume), "label": content_stamp(case.mask)}  # type: ignore[arg-type]
        plan.reuse_fingerprint = bool(plan.fingerprint_cases) and plan._fingerprint_reusable()
        plan.reuse_data_stats = bool(plan.monai_cases) and plan._data_stats_reusable()
        return plan

    # --- reuse ----------------------------------------------------------------------------------------------------

    def _cases_record(self, ids: list[str]) -> list[dict[str, Any]]:
        return [{"case": i, **self.stamps[i]} for i in ids]

    def _fingerprint_reusable(self) -> bool:
        folder = self.fingerprint_folder
        record = _read_record(folder / FINGERPRINT_RECORD_NAME)  # type: ignore[operator]
        return (
            record is not None
            and record.get("raw_dataset") == self.raw_folder_name
            and record.get("cases") == self._cases_record(self.fingerprint_cases)
            and record.get("sha256") == _sha256(folder / nnfp.FINGERPRINT_NAME)  # type: ignore[operator]
        )

    def _data_stats_reusable(self) -> bool:
        final = self.monai_final
        record = _read_record(final / DATA_STATS_RECORD_NAME)  # type: ignore[operator]
        if record is None or record.get("cases") != self._cases_record(self.monai_cases):
            return False
        names = (monai_stats.DATA_STATS_NAME, monai_stats.DATA_STATS_BY_CASE_NAME)
        return record.get("sha256") == {n: _sha256(final / n) for n in names}  # type: ignore[operator]

    # --- per case ---------------------------------------------------------------------------------------------------

    def request(self, case: ExportCase) -> StatsRequest | None:
        """What the worker of ``case`` computes besides the check (None: nothing)."""
        if self.headers_only:
            return None
        fingerprint = case.case_id in self.fingerprint_cases and not self.reuse_fingerprint
        monai = case.case_id in self.monai_cases and not self.reuse_data_stats
        if not (fingerprint or monai):
            return None
        samples = nnfp.samples_per_case(len(self.fingerprint_cases)) if fingerprint else None
        return StatsRequest(samples, monai, self.stamps[case.case_id])

    # --- MONAI --------------------------------------------------------------------------------------------------------

    def stage_data_stats(self, staging: Path, datalist: dict[str, Any], results: dict[str, Any]) -> None:
        """Put ``data_stats.yaml``, ``data_stats_by_case.yaml`` and their record into the MONAI staging folder.

        Parameters
        ----------
        staging : Path
            The MONAI staging folder.
        datalist : dict
            The datalist written there (its ``training`` then ``validation`` items give the paths, in case order).
        results : dict
            Case id -> the worker's result (``stats`` from :func:`case_statistics`).
        """
        if not self.monai_cases:
            return
        names = (monai_stats.DATA_STATS_NAME, monai_stats.DATA_STATS_BY_CASE_NAME, DATA_STATS_RECORD_NAME)
        if self.reuse_data_stats:
            for name in names:
                place_file(self.monai_final / name, staging / name, "copy")  # type: ignore[operator]
            self.status["monai data stats"] = "reused (no case changed)"
            return
        if self.headers_only:
            self.status["monai data stats"] = "not written (--headers_only reads no voxel and no earlier data_stats.yaml fits these cases)"
            return
        items = datalist.get("training", []) + datalist.get("validation", [])
        if len(items) != len(self.monai_cases):
            raise ValueError(f"datalist has {len(items)} training and validation items for {len(self.monai_cases)} cases")
        entries, skipped = [], []
        for case_id, item in zip(self.monai_cases, items):
            parts = results[case_id]["stats"]
            if parts["monai"] is None:
                skipped.append(f"{case_id} ({parts['monai_skipped']})")
                continue
            entries.append((item["image"], item["label"], parts["monai"]))
        if skipped:
            logger.warning("MONAI data stats leave out %d case(s), as DataAnalyzer would: %s", len(skipped), "; ".join(skipped))
        if not entries:
            self.status["monai data stats"] = "not written (no case MONAI could analyse)"
            return
        summary_doc, by_case_doc = monai_stats.data_stats_documents(entries)
        texts = {
            monai_stats.DATA_STATS_NAME: dump_yaml(summary_doc, default_flow_style=None, sort_keys=False),
            monai_stats.DATA_STATS_BY_CASE_NAME: dump_yaml(by_case_doc, default_flow_style=None, sort_keys=False),
        }
        for name, text in texts.items():
            atomic_write_text(staging / name, text)
        record = {
            "method_version": METHOD_VERSION,
            "method": _DATA_STATS_METHOD,
            "sha256": {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in texts.items()},
            "cases": self._cases_record(self.monai_cases),
        }
        atomic_write_text(staging / DATA_STATS_RECORD_NAME, json_text(record))
        self.status["monai data stats"] = f"computed for {len(entries)} training and validation case(s)"

    # --- nnU-Net ------------------------------------------------------------------------------------------------------

    def write_fingerprint(self, results: dict[str, Any], raw_status: str) -> None:
        """Write (or keep, or remove) ``dataset_fingerprint.json`` once the nnU-Net folder is committed.

        Parameters
        ----------
        results : dict
            Case id -> the worker's result.
        raw_status : str
            The nnU-Net folder's commit status (``written``, ``unchanged``, ``replaced``).
        """
        if self.fingerprint_folder is None:
            return
        path = self.fingerprint_folder / nnfp.FINGERPRINT_NAME
        record_path = self.fingerprint_folder / FINGERPRINT_RECORD_NAME
        if self.reuse_fingerprint:
            self.status["nnU-Net fingerprint"] = f"reused (no case changed): {path}"
            return
        fingerprint = None
        why = "--headers_only reads no voxel and no earlier fingerprint fits these cases"
        if not self.headers_only:
            parts = []
            for case_id in self.fingerprint_cases:  # taken out of the results, so the draws are freed once pooled
                parts.append(results[case_id]["stats"]["fingerprint"])
                results[case_id]["stats"]["fingerprint"] = None
            fingerprint = nnfp.combine_fingerprint(parts)
            why = "no training case has a foreground voxel inside its non-zero box (nnU-Net's extractor fails on such a dataset)"
        if fingerprint is None:
            ours = _read_record(record_path) is not None
            if path.exists() and (ours or raw_status != "unchanged"):
                path.unlink()
                record_path.unlink(missing_ok=True)
                logger.warning("removed %s: it was computed from other data (nnU-Net would have used it as it is)", path)
            self.status["nnU-Net fingerprint"] = f"not written ({why}); nnU-Net will extract it"
            return
        text = nnfp.fingerprint_text(fingerprint)
        old = path.read_text(encoding="utf-8") if path.is_file() else None
        self.fingerprint_folder.mkdir(parents=True, exist_ok=True)
        if old != text:
            atomic_write_text(path, text)
        record = {
            "method_version": METHOD_VERSION,
            "method": _FINGERPRINT_METHOD,
            "raw_dataset": self.raw_folder_name,
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "cases": self._cases_record(self.fingerprint_cases),
        }
        atomic_write_text(record_path, json_text(record))
        if old is None:
            state = "written"
        elif old == text:
            state = "unchanged"
        else:
            state = "replaced"
            logger.warning("%s held another fingerprint (of other data, or of another nnU-Net or numpy version): replaced", path)
        self.status["nnU-Net fingerprint"] = f"{state}: {path}"

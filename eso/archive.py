"""The raw ESO-2025.10.31 archive: path rules, metadata sheets, archive manifest rows, pairing.

The rules are data in ``descriptors/eso/archive.yaml`` (FACTS.md: the layout of
the real archive is not documented); this module applies them. File names are
always parsed, never built. The per-site metadata sheets
``archive/data_meta_{site}.xlsx`` are untrusted input, read by
:mod:`utils.archive.metadata_sheets`; every oddity is reported, none stops the run.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utils.files.aliases import PathLike
from utils.archive.scan import FILE_CHECK_COLUMNS, SKIPPED_REASON, ArchiveScan, finish_archive_manifest, pair_volumes_and_masks, scan_archive
from utils.files.lazy_import import lazy_import
from utils.archive.metadata_sheets import MetaTable, SheetIssue, canonical_id, issues_frame, match_metadata, read_metadata_sheet
from utils.files.nifti_io import nifti_stem
from utils.archive.pairing import PairJob
from utils.files.safe_names import FieldRule
from utils.files.spreadsheet import is_missing, require_columns
from utils.files.yaml_files import load_yaml_file

pd = lazy_import("pandas")

__all__ = [
    "DESCRIPTOR_DIR",
    "ARCHIVE_COLUMNS",
    "INFO_COLUMNS",
    "METADATA_ISSUES_SHEET",
    "PathRule",
    "EsoRules",
    "parse_archive_path",
    "sample_id",
    "load_site_metadata",
    "build_archive_manifest",
    "scan_with_metadata",
    "attribute_columns",
    "pair_jobs",
    "manifest_field_rules",
]

logger = logging.getLogger(__name__)

DESCRIPTOR_DIR = Path(__file__).resolve().parents[1] / "descriptors" / "eso"

#: Columns of the archive manifest (routine 01), in the tutorial's order; metadata attributes follow.
ARCHIVE_COLUMNS = [
    "file_path", "site", "phase", "pid", "type", "szx", "szy", "szz", "spx", "spy", "spz",
    "orientation_from", "orientation_to", "dtype", "transform", "diff_trans_f_norm",
]  # fmt: skip

#: Info-yaml attributes copied into the dataset manifest (routine 04), in the tutorial's order.
INFO_COLUMNS = ["site", "phase", "pid"]

#: Worksheet of routine 01 listing every problem found in the metadata sheets.
METADATA_ISSUES_SHEET = "MetadataIssues"

#: Column names the manifests use; a metadata column of that name is renamed ``meta_<name>``.
RESERVED_COLUMNS = (
    *ARCHIVE_COLUMNS, *FILE_CHECK_COLUMNS, "ID", "valid_labels", "info", "volume", "mask", "vol_dtype", "mask_dtype", "subset", "attributes", "history",
)  # fmt: skip

_REQUIRED_GROUPS = ("site", "phase", "pid", "kind")


@dataclass(frozen=True)
class PathRule:
    """One path rule of ``archive.yaml``: a name, an example path and the compiled pattern."""

    name: str
    example: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class EsoRules:
    """Parsed ``descriptors/eso/archive.yaml``.

    Attributes
    ----------
    sites : dict of str to str
        Site folder name -> site code (``tongji`` -> ``TJ``), in file order.
    phases, kinds : dict of str to str
        Lower-case word -> phase (``pre``/``post``) or type (``v3d``/``m3d``).
    path_rules : tuple of PathRule
    raw_labels : (int, int)
        Smallest and largest value a raw mask may hold.
    meta_file : str
        Metadata file name pattern, ``{site}`` = site folder name.
    meta_sheet : str or None
    id_columns : tuple of str
    """

    sites: dict[str, str]
    phases: dict[str, str]
    kinds: dict[str, str]
    path_rules: tuple[PathRule, ...]
    raw_labels: tuple[int, int]
    meta_file: str
    meta_sheet: str | None
    id_columns: tuple[str, ...]
    fields: dict[str, re.Pattern[str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: PathLike = DESCRIPTOR_DIR / "archive.yaml") -> "EsoRules":
        """Read the rules file.

        Raises
        ------
        ValueError
            A key is missing, a pattern does not compile or lacks a named group (names the file).
        """
        path = Path(path)
        try:
            data = load_yaml_file(path, "ESO rules")
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the ESO rules ({exc})") from exc
        try:
            rules = []
            for spec in data["path_rules"]:
                pattern = re.compile(spec["pattern"])
                missing = [g for g in _REQUIRED_GROUPS if g not in pattern.groupindex]
                if missing:
                    raise ValueError(f"path rule {spec.get('name')!r} lacks the named group(s) {missing}")
                rules.append(PathRule(str(spec.get("name", spec["pattern"])), str(spec.get("example", "")), pattern))
            meta = data["metadata"]
            codes = {str(k): str(v) for k, v in data["sites"].items()}
            if len(set(codes.values())) != len(codes):
                raise ValueError(f"site codes must be unique, found {codes}")
            return cls(
                sites=codes,
                phases={str(k).casefold(): str(v) for k, v in data["phases"].items()},
                kinds={str(k).casefold(): str(v) for k, v in data["kinds"].items()},
                path_rules=tuple(rules),
                raw_labels=(int(data["raw_labels"][0]), int(data["raw_labels"][1])),
                meta_file=str(meta["file"]),
                meta_sheet=None if meta.get("sheet") is None else str(meta["sheet"]),
                id_columns=tuple(str(c) for c in meta["id_columns"]),
                fields={str(k): re.compile(str(v)) for k, v in (data.get("fields") or {}).items()},
            )
        except (KeyError, TypeError, IndexError, AttributeError, re.error, ValueError) as exc:
            raise ValueError(f"{path}: malformed ESO rules ({exc})") from exc

    def site_code(self, name: str) -> str | None:
        """Site code of a site folder name or code (case-insensitive); None when unknown."""
        folded = str(name).casefold()
        for folder, code in self.sites.items():
            if folded in (folder.casefold(), code.casefold()):
                return code
        return None


def manifest_field_rules(rules: EsoRules) -> dict[str, FieldRule]:
    """What the archive-manifest columns that become folder names (``{site}/{phase}/{site}_{pid}_{phase}``) may hold."""
    pid = rules.fields.get("pid")
    return {
        "site": FieldRule("a site code of the rules", choices=set(rules.sites.values())),
        "phase": FieldRule("a phase of the rules", choices=set(rules.phases.values())),
        "pid": FieldRule(f"a patient id ({pid.pattern if pid else 'one name'})", pattern=pid, transform=canonical_id),
    }


def sample_id(site: str, pid: str, phase: str) -> str:
    """``{site}_{pid}_{phase}`` (``SYTH_189003440_pre``)."""
    return f"{site}_{pid}_{phase}"


def parse_archive_path(rel_path: Path, rules: EsoRules) -> tuple[dict[str, Any] | None, str | None]:
    """Site, phase, pid and type of one archive file, or the reason it cannot be used.

    Parameters
    ----------
    rel_path : Path
        Path relative to the archive root.
    rules : EsoRules

    Returns
    -------
    record, reason : (dict or None, str or None)
        ``record`` holds ``site`` (code) ``phase pid type``; when it is None,
        ``reason`` says which rules came close and why they failed.

    Examples
    --------
    >>> rules = EsoRules.load()
    >>> parse_archive_path(Path("tongji/pre/images/123.nii.gz"), rules)[0]
    {'site': 'TJ', 'phase': 'pre', 'pid': '123', 'type': 'v3d'}
    >>> parse_archive_path(Path("xiangyang/77/77_post_mask.nii.gz"), rules)[0]
    {'site': 'XY', 'phase': 'post', 'pid': '77', 'type': 'm3d'}
    """
    rel_path = Path(rel_path)
    text = (rel_path.parent / nifti_stem(rel_path)).as_posix()
    near_misses = []
    for rule in rules.path_rules:
        m = rule.pattern.fullmatch(text)
        if not m:
            continue
        site = rules.site_code(m.group("site"))
        phase = rules.phases.get(m.group("phase").casefold())
        kind = rules.kinds.get(m.group("kind").casefold())
        bad = []
        if site is None:
            bad.append(f"site folder {m.group('site')!r} is not one of {list(rules.sites)}")
        if phase is None:
            bad.append(f"phase {m.group('phase')!r} is not one of {sorted(rules.phases)}")
        if kind is None:
            bad.append(f"{m.group('kind')!r} names neither an image nor a mask ({sorted(rules.kinds)})")
        if bad:
            near_misses.append(f"rule {rule.name}: {'; '.join(bad)}")
            continue
        return {"site": site, "phase": phase, "pid": m.group("pid"), "type": kind}, None
    if near_misses:
        return None, " | ".join(near_misses)
    examples = ", ".join(r.example for r in rules.path_rules if r.example)
    return None, f"path fits no rule of descriptors/eso/archive.yaml (expected a layout like {examples})"


def load_site_metadata(archive_root: Path, rules: EsoRules) -> dict[str, MetaTable]:
    """Read ``data_meta_{site}.xlsx`` of every site in the archive root; a missing file is a warning issue.

    Returns
    -------
    tables : dict of str to MetaTable
        Site code -> checked sheet (``usable`` False when missing or unreadable).
    """
    tables: dict[str, MetaTable] = {}
    for folder, code in rules.sites.items():
        path = Path(archive_root) / rules.meta_file.format(site=folder)
        if not path.is_file():
            table = MetaTable(source=path)
            table.issues.append(SheetIssue(path.name, f"metadata sheet not found in {archive_root}; attributes of site {code} stay empty"))
            tables[code] = table
            continue
        tables[code] = read_metadata_sheet(path, rules.id_columns, sheet=rules.meta_sheet, reserved=RESERVED_COLUMNS)
        logger.info("%s: %d patients, attributes %s", path.name, len(tables[code].rows), tables[code].columns)
    return tables


def attribute_columns(frame: pd.DataFrame) -> list[str]:
    """Metadata attribute columns of an archive manifest (those after the standard ones)."""
    return [c for c in frame.columns if c not in ARCHIVE_COLUMNS and c not in FILE_CHECK_COLUMNS and c != SKIPPED_REASON]


def build_archive_manifest(
    archive_root: Path, rules: EsoRules, *, workers: int = 1, dask_scheduler: str | None = None, show_progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, list[SheetIssue]]:
    """Routine 01: the ``Manifest`` and ``Skipped`` tables of an ESO archive, and the metadata issues.

    Parameters
    ----------
    archive_root : Path
        ``root_dir/archive``.
    rules : EsoRules
    workers : int
    dask_scheduler : str, optional
        Run the integrity reads on this Dask cluster (``--dask_scheduler``).
    show_progress : bool

    Returns
    -------
    manifest : DataFrame
        :data:`ARCHIVE_COLUMNS`, then every metadata attribute (union over
        the sites' sheets, in site then sheet order; empty where unknown).
    skipped : DataFrame
        ``file_path``, ``reason``.
    issues : list of SheetIssue
        Everything odd in the metadata sheets, and their matching with the scans.
    """
    archive_root = Path(archive_root)
    records, skipped = scan_archive(archive_root, lambda rel: parse_archive_path(rel, rules), workers=workers, dask_scheduler=dask_scheduler, show_progress=show_progress)
    tables = load_site_metadata(archive_root, rules)
    issues = [issue for table in tables.values() for issue in table.issues]
    attributes = list(dict.fromkeys(c for table in tables.values() for c in table.columns))
    if records.empty:
        records = pd.DataFrame(columns=[*ARCHIVE_COLUMNS, *FILE_CHECK_COLUMNS, "qform_sform_mm"])
    values: dict[tuple[str, str], dict[str, Any]] = {}
    for code, table in tables.items():
        pids = records.loc[records["site"] == code, "pid"].astype(str).unique()
        matched, match_issues = match_metadata(table, pids)
        issues.extend(match_issues)
        values.update({(code, pid): attrs for pid, attrs in matched.items()})
    for column in attributes:
        records[column] = [values.get((s, str(p)), {}).get(column) for s, p in zip(records["site"], records["pid"])]
    return finish_archive_manifest(records, [*ARCHIVE_COLUMNS, *attributes], ["site", "phase", "pid"]), skipped, issues


def _plain(value: Any) -> Any:
    """Manifest cell -> value for the info yaml (numpy scalars unwrapped, NaN -> None)."""
    if is_missing(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def pair_jobs(
    manifest: pd.DataFrame,
    archive_root: Path,
    output_dir: Path,
    rules: EsoRules,
) -> tuple[list[PairJob], dict[str, str]]:
    """One :class:`PairJob` per scan (site, phase, pid), written as ``{output_dir}/{site}/{phase}/{ID}/``.

    A volume without a mask is a valid sample (no mask file is written). A patient
    without its pre or post scan is logged as a warning, not an error. The
    metadata attributes of the volume's manifest row go to ``info['attributes']``.

    Parameters
    ----------
    manifest : DataFrame
        ``Manifest`` sheet of routine 01.
    archive_root : Path
        ``--root_dir`` of routine 02 (``file_path`` is relative to it).
    output_dir : Path
        Grouped dataset folder.
    rules : EsoRules

    Returns
    -------
    jobs : list of PairJob
    problems : dict of str to str
        Sample ID -> why it cannot be written (several candidate files, a mask without volume).

    Raises
    ------
    ValueError
        The manifest lacks the routine-01 columns.
    """
    require_columns(manifest, ("file_path", "site", "phase", "pid", "type"), "regenerate it with routine 01")
    attrs = attribute_columns(manifest)
    frame = manifest.copy()
    frame["pid"] = [canonical_id(p) for p in frame["pid"]]
    jobs: list[PairJob] = []
    problems: dict[str, str] = {}
    incomplete = frame[["site", "phase", "pid", "type"]].map(is_missing).any(axis=1)
    for path in frame.loc[incomplete, "file_path"]:
        problems[str(path)] = "archive manifest row lacks site, phase, pid or type; regenerate the manifest with routine 01"
    frame = frame[~incomplete]
    pairs, unpaired = pair_volumes_and_masks(frame, ["site", "phase", "pid"], mask_required=False)
    problems.update({sample_id(site, pid, phase): reason for (site, phase, pid), reason in unpaired.items()})
    phases_seen: dict[tuple[str, str], set[str]] = {}
    for (site, phase, pid), (volume, mask) in pairs.items():
        sid = sample_id(site, pid, phase)
        phases_seen.setdefault((site, pid), set()).add(phase)
        info = {
            "site": site,
            "phase": phase,
            "pid": pid,
            "subset": None,  # the ESO archive has no official subset; splits live in the dataset manifest's split sheets
            "attributes": {c: _plain(volume[c]) for c in attrs},
        }
        jobs.append(
            PairJob(
                sample_dir=Path(output_dir) / site / phase / sid,
                volume=Path(archive_root) / volume["file_path"],
                mask=None if mask is None else Path(archive_root) / mask["file_path"],
                info=info,
                allowed_labels=tuple(range(rules.raw_labels[0], rules.raw_labels[1] + 1)),
            )
        )
    for site, phase, pid in unpaired:
        phases_seen.setdefault((site, pid), set()).add(phase)
    expected = set(rules.phases.values())
    for (site, pid), seen in sorted(phases_seen.items()):
        if expected - seen:
            logger.warning(
                "%s pid %s: no %s scan in the archive (every patient should have one pre and one post scan)", site, pid, "/".join(sorted(expected - seen))
            )
    without = [j.sample_dir.name for j in jobs if j.mask is None]
    if without:
        logger.info("%d %s a volume but no mask (allowed in ESO): %s", len(without), "sample has" if len(without) == 1 else "samples have", ", ".join(without))
    return jobs, problems


def scan_with_metadata(
    archive_root: Path, rules: EsoRules, *, workers: int = 1, dask_scheduler: str | None = None, show_progress: bool = True
) -> ArchiveScan:
    """Routine 01: :func:`build_archive_manifest`, every metadata issue logged and listed in a sheet.

    Returns
    -------
    ArchiveScan
        ``Manifest``, ``Skipped`` and the ``MetadataIssues`` sheet; ``errors``
        names the metadata sheets that could not be used (routine 01 then
        still writes the manifest and exits 1).
    """
    manifest, skipped, issues = build_archive_manifest(archive_root, rules, workers=workers, dask_scheduler=dask_scheduler, show_progress=show_progress)
    for issue in issues:
        issue.log()
    errors = [i.message() for i in issues if i.severity == "error"]
    logger.info("%d metadata issue(s) listed in sheet %s (%d unusable sheet(s))", len(issues), METADATA_ISSUES_SHEET, len(errors))
    return ArchiveScan(manifest, skipped, {METADATA_ISSUES_SHEET: issues_frame(issues)}, [f"metadata sheet could not be used: {e}" for e in errors])

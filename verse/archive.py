"""The raw VerSe archive: folder and file-name rules, sex/age table, archive manifest rows, pairing.

The rules themselves are data in ``descriptors/verse/archive.yaml``; this
module applies them. File names are always parsed, never built.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from utils.files.aliases import PathLike
from utils.archive.scan import finish_archive_manifest, pair_volumes_and_masks, scan_archive
from utils.files.lazy_import import lazy_import
from utils.files.nifti_io import nifti_stem
from utils.archive.pairing import PairJob
from utils.archive.metadata_sheets import SheetIssue, canonical_id, checked_value, read_metadata_sheet
from utils.files.safe_names import FieldRule
from utils.files.spreadsheet import is_missing, require_columns
from utils.files.yaml_files import load_yaml_file

pd = lazy_import("pandas")

__all__ = [
    "DESCRIPTOR_DIR",
    "VerseRules",
    "parse_archive_path",
    "sample_id",
    "load_participants",
    "find_participants_file",
    "archive_columns",
    "add_scan_columns",
    "pair_jobs",
    "manifest_field_rules",
    "INFO_COLUMNS",
    "build_archive_manifest",
    "official_split",
]

logger = logging.getLogger(__name__)

DESCRIPTOR_DIR = Path(__file__).resolve().parents[1] / "descriptors" / "verse"

#: Columns of the archive manifest (routine 01), in the tutorial's order.
ARCHIVE_COLUMNS = [
    "file_path", "archive", "subset", "subject", "split", "suffix", "type", "CT_image_series",
    "in_verse19", "in_verse20", "sex", "age", "szx", "szy", "szz", "spx", "spy", "spz",
    "orientation_from", "orientation_to", "dtype", "transform", "diff_trans_f_norm",
]  # fmt: skip

#: Info-yaml attributes copied into the dataset manifest (routine 05), in the tutorial's order.
INFO_COLUMNS = ["archive", "subset", "subject", "split", "in_verse19", "in_verse20", "CT_image_series", "sex", "age"]

#: Columns identifying a volume-mask pair of the archive manifest (for ``diff_trans_f_norm``).
_PAIR_KEY = ["archive", "subject", "split"]


@dataclass(frozen=True)
class VerseRules:
    """Parsed ``descriptors/verse/archive.yaml``."""

    folders: dict[str, dict[str, str]]
    archive_order: tuple[str, ...]
    file_name: re.Pattern[str]
    types: dict[str, re.Pattern[str]]
    pair_suffixes: tuple[str, ...]
    raw_labels: tuple[int, int]
    label_revision: dict[int, int]
    participants: dict[str, Any]
    fields: dict[str, re.Pattern[str]]

    @classmethod
    def load(cls, path: PathLike = DESCRIPTOR_DIR / "archive.yaml") -> "VerseRules":
        """Read the rules file; raise ``ValueError`` naming it when a key is missing."""
        path = Path(path)
        data = load_yaml_file(path, "VerSe rules")
        try:
            return cls(
                folders={str(k): dict(v) for k, v in data["folders"].items()},
                archive_order=tuple(data["archive_order"]),
                file_name=re.compile(data["file_name"]),
                types={k: re.compile(v) for k, v in data["types"].items()},
                pair_suffixes=tuple(data["pair_suffixes"]),
                raw_labels=(int(data["raw_labels"][0]), int(data["raw_labels"][1])),
                label_revision={int(k): int(v) for k, v in data["label_revision"].items()},
                participants=dict(data["participants"]),
                fields={str(k): re.compile(str(v)) for k, v in (data.get("fields") or {}).items()},
            )
        except (KeyError, TypeError, AttributeError, ValueError, re.error) as exc:
            raise ValueError(f"{path}: malformed VerSe rules ({exc!r})") from exc


def manifest_field_rules(rules: VerseRules) -> dict[str, FieldRule]:
    """What the archive-manifest columns that become folder names (``{archive}/{subset}/{ID}``) may hold."""
    subject = rules.fields.get("subject")
    split = rules.fields.get("split")
    return {
        "archive": FieldRule("an archive of the rules' folders", choices={f["archive"] for f in rules.folders.values()}),
        "subset": FieldRule("a subset of the rules' folders", choices={f["subset"] for f in rules.folders.values()}),
        "subject": FieldRule(f"a subject ({subject.pattern if subject else 'one name'})", pattern=subject),
        "split": FieldRule(f"a split ({split.pattern if split else 'one name'}) or empty", pattern=split, optional=True),
    }


def sample_id(subject: str, split: str | None) -> str:
    """``subject``, or ``subject-NNN`` with the last 3 digits of ``split`` (``verse401-201``)."""
    return subject if not split else f"{subject}-{split[-3:]}"


def parse_archive_path(rel_path: Path, rules: VerseRules) -> tuple[dict[str, Any] | None, str | None]:
    """Archive, subset and file-name fields of one archive file, or the reason it cannot be used.

    Parameters
    ----------
    rel_path : Path
        Path relative to the archive root.
    rules : VerseRules

    Returns
    -------
    record, reason : (dict or None, str or None)
        ``record`` holds ``archive subset subject split suffix type``; when it
        is None, ``reason`` says why.
    """
    folder_hits = [rules.folders[p] for p in rel_path.parts[:-1] if p in rules.folders]
    if not folder_hits:
        return None, f"not inside an official VerSe folder ({', '.join(sorted(rules.folders))})"
    if len({(h['archive'], h['subset']) for h in folder_hits}) > 1:
        return None, f"path holds several official folders: {rel_path.parent}"
    m = rules.file_name.match(nifti_stem(rel_path))
    if not m:
        return None, f"file name outside the grammar sub-<subject>[_split-<split>]_<suffix>: {rel_path.name}"
    suffix = m.group("suffix")
    kinds = [t for t, pattern in rules.types.items() if pattern.search(suffix)]
    if len(kinds) != 1:
        return None, f"suffix {suffix!r} is neither a CT volume (…ct) nor a mask (…msk)"
    return {
        "archive": folder_hits[0]["archive"],
        "subset": folder_hits[0]["subset"],
        "subject": m.group("subject"),
        "split": m.group("split"),
        "suffix": suffix,
        "type": kinds[0],
    }, None


def add_scan_columns(frame: pd.DataFrame) -> None:
    """Fill ``CT_image_series``, ``in_verse19`` and ``in_verse20`` (in place) from all rows.

    A scan is identified by (subject, split); ``CT_image_series`` numbers the
    scans of one subject in split order, ``{index} of {total}``.
    """
    split = frame["split"].where(frame["split"].notna(), "")
    scans = sorted(set(zip(frame["subject"], split)))
    per_subject: dict[str, list[str]] = defaultdict(list)
    for subject, sp in scans:
        per_subject[subject].append(sp)
    archives: dict[tuple[str, str], set[str]] = defaultdict(set)
    for subject, sp, archive in zip(frame["subject"], split, frame["archive"]):
        archives[(subject, sp)].add(archive)
    frame["CT_image_series"] = [
        f"{per_subject[s].index(sp) + 1} of {len(per_subject[s])}" for s, sp in zip(frame["subject"], split)
    ]
    frame["in_verse19"] = [int("VerSe19" in archives[(s, sp)]) for s, sp in zip(frame["subject"], split)]
    frame["in_verse20"] = [int("VerSe20" in archives[(s, sp)]) for s, sp in zip(frame["subject"], split)]


def find_participants_file(archive_root: Path, rules: VerseRules) -> Path | None:
    """A sex/age table in the archive root (first match of the configured globs holding the id columns)."""
    cols = rules.participants["columns"]
    for pattern in rules.participants["file_globs"]:
        for candidate in sorted(archive_root.glob(pattern)):
            try:
                table = _read_table(candidate, rules.participants.get("sheet"))
            except ValueError:
                continue
            if cols["verse_id"] in table.columns:
                return candidate
    return None


def _read_table(path: Path, sheet: str | None) -> pd.DataFrame:
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            with pd.ExcelFile(path, engine="openpyxl") as xls:
                name = sheet if sheet in xls.sheet_names else xls.sheet_names[0]
                return pd.read_excel(xls, sheet_name=name, dtype=object)
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        return pd.read_csv(path, sep=sep, dtype=object)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read table ({exc})") from exc


def _verse_number(value: Any, prefix: str) -> str | None:
    """``4``, ``'004'``, ``'verse004'``, ``'sub-verse004'`` -> ``'verse004'``."""
    if is_missing(value):
        return None
    text = str(value).strip()
    if text.endswith(".0"):
        text = text[:-2]
    m = re.search(r"(\d+)$", text)
    if not m:
        return None
    return f"{prefix}{int(m.group(1)):03d}"


def load_participants(path: Path, rules: VerseRules) -> dict[tuple[str, str], dict[str, Any]]:
    """Sex and age per scan ``(subject, split or '')`` from the VerSe19 spreadsheet.

    When ``verse_ID`` differs from ``subject_ID`` the scan is
    ``sub-verse<subject_ID>_split-verse<verse_ID>``. The table is untrusted
    input read by the rules of :mod:`utils.archive.metadata_sheets` (as ESO's metadata
    sheets): formulas are never evaluated (a live formula is read as its text),
    a subject listed twice with different values gets no value, implausible
    sex/age values (too long, an age outside 0-150) are left empty; every such
    cell is logged as a warning naming the file, row, column and value.

    Raises
    ------
    ValueError
        Unreadable table or missing id column (names the file and the columns found).
    """
    spec = rules.participants
    cols, prefix = spec["columns"], spec["subject_prefix"]
    records, issues = _participant_records(Path(path), cols["verse_id"], spec.get("sheet"))
    for issue in issues:
        issue.log()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for pid, attrs in records.items():
        verse = _verse_number(pid, prefix)
        if verse is None:
            continue
        subject = _verse_number(attrs.get(cols.get("subject_id", "")), prefix) or verse
        key = (subject, "" if subject == verse else verse)
        sex = attrs.get(cols["sex"])
        age = attrs.get(cols["age"])
        out[key] = {"sex": None if is_missing(sex) else str(sex).strip(), "age": None if is_missing(age) else _number(age)}
    return out


def _participant_records(path: Path, id_column: str, sheet: str | None) -> tuple[dict[str, dict[str, Any]], list[SheetIssue]]:
    """Canonical verse id -> checked attributes (other columns), and the issues found."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            with pd.ExcelFile(path, engine="openpyxl") as xls:
                names = list(xls.sheet_names)
        except Exception as exc:
            raise ValueError(f"{path}: cannot read table ({exc})") from exc
        table = read_metadata_sheet(path, [id_column], sheet=sheet if sheet in names else None)
        errors = [i for i in table.issues if i.severity == "error"]
        if errors or not table.usable:
            raise ValueError(errors[0].message() if errors else f"{path}: column {id_column!r} not found")
        return table.rows, table.issues
    frame = _read_table(path, None)
    if id_column not in frame.columns:
        raise ValueError(f"{path}: column {id_column!r} not found (columns: {list(frame.columns)})")
    issues: list[SheetIssue] = []
    records: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(frame.itertuples(index=False), start=2):
        values = dict(zip(frame.columns, row))
        pid = canonical_id(None if is_missing(values[id_column]) else values[id_column])
        if pid is None:
            continue
        records[pid] = {
            str(c): checked_value(None if is_missing(v) else v, path.name, i, pid, str(c), issues) for c, v in values.items() if c != id_column
        }
    return records, issues


def _number(value: Any) -> Any:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return int(f) if f.is_integer() else f


def archive_columns() -> list[str]:
    """Column order of the archive manifest."""
    return list(ARCHIVE_COLUMNS)


def pair_jobs(
    manifest: pd.DataFrame,
    archive_root: Path,
    output_dir: Path,
    rules: VerseRules,
) -> tuple[list[PairJob], dict[str, str]]:
    """One :class:`PairJob` per scan (subject, split), written under the first archive that has it.

    Parameters
    ----------
    manifest : DataFrame
        ``Manifest`` sheet of routine 01.
    archive_root : Path
        ``--root_dir`` of routine 02 (``file_path`` is relative to it).
    output_dir : Path
        Grouped dataset folder.
    rules : VerseRules

    Returns
    -------
    jobs : list of PairJob
    problems : dict of str to str
        Scan ID -> why it cannot be paired (missing volume or mask, several candidates).
    """
    require_columns(manifest, ("file_path", "archive", "subset", "subject", "split", "suffix", "type"), "regenerate it with routine 01")
    wanted = manifest["suffix"].astype(str).map(lambda v: any(p in v for p in rules.pair_suffixes)).astype(bool)
    keep = manifest[wanted].copy()
    keep["split"] = keep["split"].map(lambda v: "" if is_missing(v) else str(v))
    pairs, unpaired = pair_volumes_and_masks(keep, ["subject", "split", "archive"])
    jobs: list[PairJob] = []
    problems: dict[str, str] = {}
    for (subject, split_key, archive), reason in unpaired.items():
        problems[sample_id(subject, split_key or None)] = f"{archive}: {reason}"
    scans: dict[tuple[str, str], dict[str, tuple[pd.Series, pd.Series]]] = defaultdict(dict)
    for (subject, split_key, archive), (vol_row, mask_row) in pairs.items():
        scans[(subject, split_key)][archive] = (vol_row, mask_row)
    for (subject, split_key), by_archive in sorted(scans.items()):
        split = split_key or None
        sid = sample_id(subject, split)
        if sid in problems:
            continue
        copies = {
            archive: (archive_root / by_archive[archive][0]["file_path"], archive_root / by_archive[archive][1]["file_path"], str(by_archive[archive][0]["subset"]))
            for archive in rules.archive_order
            if archive in by_archive
        }
        first = next(iter(copies))
        volume, mask, subset = copies[first]
        row0 = by_archive[first][0]
        info = {
            "archive": first,
            "subset": subset,
            "subject": subject,
            "split": split,
            "inclusion": list(copies),
            "in_verse19": int("VerSe19" in copies),
            "in_verse20": int("VerSe20" in copies),
            "CT_image_series": row0.get("CT_image_series"),
            "sex": None if is_missing(row0.get("sex")) else row0.get("sex"),
            "age": None if is_missing(row0.get("age")) else _number(row0.get("age")),
            "attributes": {"verse19_subset": copies.get("VerSe19", (None, None, None))[2], "verse20_subset": copies.get("VerSe20", (None, None, None))[2]},
        }
        duplicates = tuple((v, m) for a, (v, m, _s) in copies.items() if a != first)
        jobs.append(
            PairJob(
                sample_dir=output_dir / first / subset / sid,
                volume=volume,
                mask=mask,
                info=info,
                allowed_labels=tuple(range(rules.raw_labels[0], rules.raw_labels[1] + 1)),
                duplicates=duplicates,
            )
        )
    return jobs, problems


def build_archive_manifest(
    archive_root: Path,
    rules: VerseRules,
    participants_file: Path | None = None,
    *,
    workers: int = 1,
    dask_scheduler: str | None = None,
    show_progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Routine 01: the ``Manifest`` and ``Skipped`` tables of a VerSe archive.

    Parameters
    ----------
    archive_root : Path
        ``root_dir/archive``.
    rules : VerseRules
    participants_file : Path, optional
        Sex/age table; when None, one is looked for in ``archive_root``.
    workers : int
    dask_scheduler : str, optional
        Run the integrity reads on this Dask cluster (``--dask_scheduler``).
    show_progress : bool

    Returns
    -------
    manifest, skipped : DataFrame
        ``manifest`` has exactly :data:`ARCHIVE_COLUMNS`.
    """
    records, skipped = scan_archive(archive_root, lambda rel: parse_archive_path(rel, rules), workers=workers, dask_scheduler=dask_scheduler, show_progress=show_progress)
    if records.empty:
        return finish_archive_manifest(records, ARCHIVE_COLUMNS, _PAIR_KEY), skipped
    add_scan_columns(records)
    if participants_file is None:
        participants_file = find_participants_file(archive_root, rules)
    people = load_participants(participants_file, rules) if participants_file else {}
    if participants_file:
        logger.info("sex and age from %s (%d scans)", participants_file, len(people))
    else:
        logger.info("no sex/age table found in %s; sex and age stay empty (use --participants)", archive_root)
    keys = [(s, "" if is_missing(sp) else sp) for s, sp in zip(records["subject"], records["split"])]
    records["sex"] = [people.get(k, {}).get("sex") for k in keys]
    records["age"] = [people.get(k, {}).get("age") for k in keys]
    return finish_archive_manifest(records, ARCHIVE_COLUMNS, _PAIR_KEY), skipped


def official_split(manifest: pd.DataFrame, inclusion: str | None) -> tuple[pd.DataFrame, list[str]]:
    """Rows and official subset labels of split01 (all scans) or of one archive's scans.

    Parameters
    ----------
    manifest : DataFrame
        ``Manifest`` sheet of the dataset manifest.
    inclusion : {'VerSe19', 'VerSe20'} or None

    Returns
    -------
    rows : DataFrame
        Selected rows.
    labels : list of str
        ``subset`` (all scans) or ``verse19_subset`` / ``verse20_subset``.

    Raises
    ------
    ValueError
        A needed column is missing (the manifest was not written by routine 05).
    """
    if inclusion is None:
        column, flag = "subset", None
    else:
        column, flag = f"{inclusion.lower()}_subset", f"in_{inclusion.lower()}"
    require_columns(manifest, [c for c in (column, flag) if c], "regenerate it with routine 05")
    rows = manifest if flag is None else manifest[manifest[flag].map(lambda v: not is_missing(v) and int(v) == 1)]
    return rows, [str(v) for v in rows[column]]

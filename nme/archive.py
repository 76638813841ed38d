"""The raw NME-2025.8.25 archive: folder and file-name rules, archive manifest rows, pairing.

The rules themselves are data in ``descriptors/nme/archive.yaml`` (collection
folder -> site, subset folder -> type and subset, the ``{seq}_{pid}`` file-name
grammar with the optional ``_0000`` channel tag on images); this module applies
them. File names are always parsed, never built.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from utils.files.aliases import PathLike
from utils.archive.scan import SKIPPED_REASON, finish_archive_manifest, pair_volumes_and_masks, scan_archive
from utils.labels.label_maps import LabelMap
from utils.files.lazy_import import lazy_import
from utils.files.nifti_io import nifti_stem
from utils.archive.pairing import PairJob
from utils.files.spreadsheet import require_columns
from utils.files.yaml_files import load_yaml_file

pd = lazy_import("pandas")

__all__ = [
    "DESCRIPTOR_DIR",
    "ARCHIVE_COLUMNS",
    "INFO_COLUMNS",
    "NmeRules",
    "parse_archive_path",
    "build_archive_manifest",
    "pair_jobs",
]

logger = logging.getLogger(__name__)

DESCRIPTOR_DIR = Path(__file__).resolve().parents[1] / "descriptors" / "nme"

#: Columns of the archive manifest (routine 01), in the tutorial's order.
ARCHIVE_COLUMNS = [
    "file_path", "site", "collection", "subset", "pid", "type", "szx", "szy", "szz", "spx", "spy", "spz",
    "orientation_from", "orientation_to", "dtype", "transform", "diff_trans_f_norm",
]  # fmt: skip

#: Info-yaml attributes copied into the dataset manifest (routine 04), in the tutorial's order.
INFO_COLUMNS = ["site", "collection", "subset", "pid"]

#: Parsed fields identifying one sample (collection, subset train/val/test, ``{seq}_{pid}``): an image
#: and a mask pair when they share them. ``split`` and ``ID`` are not manifest columns.
_PAIR_KEY = ["collection", "split", "ID"]


@dataclass(frozen=True)
class NmeRules:
    """Parsed ``descriptors/nme/archive.yaml``.

    Attributes
    ----------
    collection_folder : re.Pattern
        Collection folder name with a ``collection`` group.
    sites : dict of str to str
        Collection -> clinical site.
    subset_dirs : dict of str to dict
        Subset folder -> ``{'type': 'v3d'|'m3d', 'subset': 'train'|'val'|'test'}``.
    file_name : dict of str to re.Pattern
        Type -> file-name grammar with ``seq`` and ``pid`` groups.
    sample_id : str
        Format of the sample ID, e.g. ``'{seq}_{pid}'``.
    predefined_sites : tuple of str
        Sites whose samples keep their predefined subset in the cross-site split.
    """

    collection_folder: re.Pattern[str]
    sites: dict[str, str]
    subset_dirs: dict[str, dict[str, str]]
    file_name: dict[str, re.Pattern[str]]
    sample_id: str
    predefined_sites: tuple[str, ...]

    @classmethod
    def load(cls, path: PathLike = DESCRIPTOR_DIR / "archive.yaml") -> "NmeRules":
        """Read the rules file; raise ``ValueError`` naming it when a key is missing or malformed."""
        path = Path(path)
        try:
            data = load_yaml_file(path, "NME rules")
        except OSError as exc:
            raise ValueError(f"{path}: cannot read NME rules ({exc})") from exc
        try:
            rules = cls(
                collection_folder=re.compile(data["collection_folder"]),
                sites={str(k): str(v) for k, v in data["sites"].items()},
                subset_dirs={str(k): {"type": str(v["type"]), "subset": str(v["subset"])} for k, v in data["subset_dirs"].items()},
                file_name={str(k): re.compile(v) for k, v in data["file_name"].items()},
                sample_id=str(data["sample_id"]),
                predefined_sites=tuple(str(s) for s in data["predefined_sites"]),
            )
        except (KeyError, TypeError, AttributeError, re.error) as exc:
            raise ValueError(f"{path}: malformed NME rules ({exc!r})") from exc
        bad = sorted({d["type"] for d in rules.subset_dirs.values()} - set(rules.file_name))
        if bad:
            raise ValueError(f"{path}: subset_dirs use type(s) {bad} that have no file_name grammar (have {sorted(rules.file_name)})")
        return rules


def parse_archive_path(rel_path: Path, rules: NmeRules) -> tuple[dict[str, Any] | None, str | None]:
    """Site, collection, subset folder, pid and type of one archive file, or the reason it cannot be used.

    Parameters
    ----------
    rel_path : Path
        Path relative to the archive root, e.g.
        ``NME-Seg-2025.8.25-train-val/imagesTr/01A002_60012875311_0000.nii.gz``.
    rules : NmeRules

    Returns
    -------
    record, reason : (dict or None, str or None)
        ``record`` holds ``site collection subset pid type`` (``subset`` is the
        folder name, e.g. ``imagesTr``) plus ``seq``, ``split`` (train/val/test)
        and ``ID``; when it is None, ``reason`` says why.
    """
    rel_path = Path(rel_path)
    hits = [m.group("collection") for m in map(rules.collection_folder.match, rel_path.parts[:-1]) if m]
    if len(hits) != 1:
        what = "not inside" if not hits else "inside several"
        return None, f"{what} a collection folder matching {rules.collection_folder.pattern!r}"
    collection = hits[0]
    if collection not in rules.sites:
        return None, f"collection {collection!r} has no site in the rules (known: {', '.join(rules.sites)})"
    subset_dir = rel_path.parent.name
    spec = rules.subset_dirs.get(subset_dir)
    if spec is None:
        return None, f"folder {subset_dir!r} is not a subset folder ({', '.join(rules.subset_dirs)})"
    m = rules.file_name[spec["type"]].match(nifti_stem(rel_path))
    if not m:
        return None, f"file name {rel_path.name!r} outside the {spec['type']} grammar {rules.file_name[spec['type']].pattern!r}"
    return {
        "site": rules.sites[collection],
        "collection": collection,
        "subset": subset_dir,
        "pid": m.group("pid"),
        "type": spec["type"],
        "seq": m.group("seq"),
        "split": spec["subset"],
        "ID": rules.sample_id.format(seq=m.group("seq"), pid=m.group("pid")),
    }, None


def build_archive_manifest(
    archive_root: Path, rules: NmeRules, *, workers: int = 1, dask_scheduler: str | None = None, show_progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Routine 01: the ``Manifest`` and ``Skipped`` tables of an NME archive.

    Parameters
    ----------
    archive_root : Path
        ``root_dir/archive``; ``file_path`` is relative to it.
    rules : NmeRules
    workers : int
    dask_scheduler : str, optional
        Run the integrity reads on this Dask cluster (``--dask_scheduler``).
    show_progress : bool

    Returns
    -------
    manifest, skipped : DataFrame
        ``manifest`` has exactly :data:`ARCHIVE_COLUMNS`; ``diff_trans_f_norm``
        is set on mask rows that have one volume of the same collection,
        subset and ``{seq}_{pid}``.
    """
    records, skipped = scan_archive(archive_root, lambda rel: parse_archive_path(rel, rules), workers=workers, dask_scheduler=dask_scheduler, show_progress=show_progress)
    return finish_archive_manifest(records, ARCHIVE_COLUMNS, _PAIR_KEY), skipped


def _parsed_manifest(manifest: pd.DataFrame, rules: NmeRules) -> tuple[pd.DataFrame, dict[str, str]]:
    """Manifest rows with ``seq split ID`` re-parsed from ``file_path``; rows that no longer parse are problems."""
    require_columns(manifest, ("file_path", "site", "collection", "subset", "pid", "type"), "regenerate it with routine 01")
    rows, problems = [], {}
    for _, row in manifest.iterrows():
        fields, reason = parse_archive_path(Path(str(row["file_path"])), rules)
        if fields is None:
            problems[str(row["file_path"])] = f"listed in the archive manifest but {reason}"
        else:
            rows.append({"file_path": str(row["file_path"]), **fields, SKIPPED_REASON: row.get(SKIPPED_REASON)})
    columns = ["file_path", "site", "collection", "subset", "pid", "type", "seq", "split", "ID", SKIPPED_REASON]
    return pd.DataFrame(rows, columns=columns), problems


def pair_jobs(
    manifest: pd.DataFrame,
    archive_root: Path,
    output_dir: Path,
    rules: NmeRules,
) -> tuple[list[PairJob], dict[str, str]]:
    """One :class:`PairJob` per sample ``{seq}_{pid}`` of a collection and subset.

    Parameters
    ----------
    manifest : DataFrame
        ``Manifest`` sheet of routine 01.
    archive_root : Path
        ``--root_dir`` of routine 02 (``file_path`` is relative to it).
    output_dir : Path
        Grouped dataset folder; samples go to ``{site}/{collection}/{subset}/{ID}/``.
    rules : NmeRules

    Returns
    -------
    jobs : list of PairJob
    problems : dict of str to str
        ``{site}/{collection}/{subset}/{ID}`` (or a file path) -> why it cannot
        be paired: mask without image, image without mask, several candidates.
    """
    rows, problems = _parsed_manifest(manifest, rules)
    pairs, unpaired = pair_volumes_and_masks(rows, _PAIR_KEY)
    site_of = dict(zip(rows["collection"], rows["site"]))
    for (collection, split, sid), reason in unpaired.items():
        problems[f"{site_of[collection]}/{collection}/{split}/{sid}"] = reason
    allowed = LabelMap.load(DESCRIPTOR_DIR / "label_map.yaml").indices
    jobs = []
    for (collection, split, sid), (volume, mask) in pairs.items():
        info = {"site": volume["site"], "collection": collection, "subset": split, "pid": volume["pid"], "seq": volume["seq"]}
        jobs.append(
            PairJob(
                sample_dir=Path(output_dir) / volume["site"] / collection / split / sid,
                volume=Path(archive_root) / volume["file_path"],
                mask=Path(archive_root) / mask["file_path"],
                info=info,
                allowed_labels=allowed,
            )
        )
    places: dict[str, list[str]] = {}
    for job in jobs:
        places.setdefault(job.sample_dir.name, []).append(job.sample_dir.relative_to(output_dir).parent.as_posix())
    for sid, where in places.items():
        if len(where) > 1:
            logger.warning("sample %s appears in several subsets: %s (check for leakage between them)", sid, ", ".join(where))
    return jobs, problems

"""The whole audit of a grouped dataset: samples read once, checks in memory, three files written.

:func:`prepare` resolves everything that can make the input as a whole unusable (no
sample, a bad policy, an unreadable manifest or label map, an output folder that cannot
be written) before any image is read; :func:`run_audit` then measures every sample (in
``workers`` processes or on a Dask cluster, reusing the records of an earlier audit whose
files did not change), runs every check, grades the findings by the policy and writes
``audit.json``, ``audit.xlsx`` and ``audit_signatures.npz``.
"""

from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.audit import output
from utils.audit.checks import AuditContext, distribution_findings, sample_findings
from utils.audit.codes import CODES
from utils.audit.findings import Finding, Graded, fails, grade, summary
from utils.audit.measure import RECORD_VERSION, MeasureJob, Measurement
from utils.audit.pairs import metadata_findings, pair_findings
from utils.audit.policy import IgnoreRule, Policy, dataset_policy_file, load_policy
from utils.run.cli import plural
from utils.files.output_paths import portable_path
from utils.files.sample_info import SampleDir, file_stamps

__all__ = ["AuditSetup", "AuditResult", "prepare", "run_audit", "read_split_sheets"]

logger = logging.getLogger(__name__)

#: Subsets a split sheet's column may hold.
_SUBSETS = {"train", "val", "test"}


@dataclass
class AuditSetup:
    """Everything resolved before the long work (see :func:`prepare`)."""

    root_dir: Path
    output_dir: Path
    samples: list[SampleDir]
    dataset: str
    modality: str
    descriptor: Any
    policy: Policy
    label_names: dict[int, str] | None
    label_map_source: str
    manifest: Path | None
    splits: dict[str, dict[str, str]]
    review_rules: list[IgnoreRule] = field(default_factory=list)
    group_keys: tuple[str, ...] = ()


@dataclass
class AuditResult:
    """What :func:`run_audit` wrote and found."""

    report: dict[str, Any]
    graded: Graded
    exit_code: int
    files: list[Path]


def read_split_sheets(path: Path) -> dict[str, dict[str, str]]:
    """``{split sheet: {sample ID: subset}}`` of every split sheet of a dataset manifest.

    A split sheet is any sheet besides ``Manifest`` with an ``ID`` column and a column named like
    the sheet (what the split routines write); other sheets are left alone.

    Raises
    ------
    FileNotFoundError, ValueError
        The workbook cannot be read.
    """
    import pandas as pd

    from utils.files.spreadsheet import MAIN_SHEET

    try:
        with pd.ExcelFile(path, engine="openpyxl") as xls:
            splits: dict[str, dict[str, str]] = {}
            for name in xls.sheet_names:
                if name == MAIN_SHEET:
                    continue
                frame = pd.read_excel(xls, sheet_name=name, dtype=object)
                frame.columns = [str(c) for c in frame.columns]
                if "ID" not in frame.columns or name not in frame.columns:
                    continue
                rows = {}
                for sid, subset in zip(frame["ID"], frame[name]):
                    if pd.isna(sid) or pd.isna(subset):
                        continue
                    value = str(subset).strip()
                    if value.casefold() not in _SUBSETS:
                        raise ValueError(f"{path}: sheet {name!r} assigns {value!r} to {sid}; one of {sorted(_SUBSETS)} expected")
                    rows[str(sid).strip()] = value
                splits[name] = rows
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .xlsx workbook ({exc})") from exc
    return splits


def _choose_dataset(name: str, samples: list[SampleDir]) -> tuple[str, Any]:
    from utils.report.dataset_profile import GENERIC, available_profiles, detect_sample_profile

    profiles = available_profiles()
    if name != "auto":
        return name, profiles[name]
    profile = detect_sample_profile(samples, profiles)
    if profile is None:
        logger.warning("the info yamls match no descriptors/*/report.yaml; audit with the default policy and no CT checks; "
                       "pass --dataset %s to choose", "|".join(profiles))  # fmt: skip
        return "generic", GENERIC
    logger.info("dataset: %s (told from the info yamls; --dataset to choose)", profile.dataset)
    return profile.dataset, profile


def prepare(
    root_dir: Path,
    output_dir: Path,
    *,
    dataset: str = "auto",
    policy_file: Path | None = None,
    manifest_file: Path | None = None,
    label_map_file: Path | None = None,
    review_file: Path | None = None,
    no_review: bool = False,
) -> AuditSetup:
    """Resolve samples, dataset, policy, label map, split sheets and the output folder.

    Raises
    ------
    FileNotFoundError, ValueError
        Anything that makes the input as a whole unusable (one line naming the file).
    """
    from utils.export.descriptor import DESCRIPTORS_DIR, DatasetDescriptor
    from utils.labels.label_maps import LabelMap
    from utils.files.output_paths import (
        archive_of_dataset,
        check_not_inside,
        check_output_dir,
    )
    from utils.files.sample_info import find_samples

    root_dir, output_dir = Path(root_dir), Path(output_dir)
    samples = find_samples(root_dir)
    if not samples:
        raise ValueError(f"{root_dir}: no sample folder ({{ID}}/{{ID}}_info.yaml) found")
    key, profile = _choose_dataset(dataset, samples)
    descriptor_file = DESCRIPTORS_DIR / key / "dataset.yaml"
    descriptor = DatasetDescriptor.load(descriptor_file, key) if descriptor_file.is_file() else None
    policy = load_policy(dataset_policy_file(DESCRIPTORS_DIR, key), policy_file)
    modality = descriptor.modality if descriptor is not None else str(profile.modality)
    if label_map_file is None:
        installed = root_dir.resolve().parent / "descriptor" / "label_map.yaml"
        label_map_file = installed if installed.is_file() else getattr(profile, "label_map", None)
    label_names = None
    if label_map_file is not None:
        label_names = {lab.index: lab.short for lab in LabelMap.load(label_map_file)}
    else:
        logger.warning("no label map: mask values are not checked against one (LABEL_UNKNOWN)")
    if manifest_file is None:
        default = root_dir / "dataset_manifest.xlsx"
        manifest_file = default if default.is_file() else None
    splits = read_split_sheets(manifest_file) if manifest_file is not None else {}
    from utils.review.options import default_review_path, resolve_review

    review = resolve_review(review_file, default_review_path(root_dir), disabled=no_review, dataset=None if key == "generic" else key)
    review_rules = review_ignore_rules(review) if review is not None else []
    if review is not None:
        logger.info("review %s: %s; findings on samples marked pass are accepted", review.source, review.describe())
    check_output_dir(output_dir, "--output_dir")
    check_not_inside(output_dir, archive_of_dataset(samples), "--output_dir")
    return AuditSetup(
        root_dir=root_dir,
        output_dir=output_dir,
        samples=samples,
        dataset=key,
        modality=modality,
        descriptor=descriptor,
        policy=policy,
        label_names=label_names,
        label_map_source=str(label_map_file or ""),
        manifest=manifest_file,
        splits=splits,
        review_rules=review_rules,
        group_keys=tuple(getattr(profile, "group_by", ())),
    )


#: Families of codes a reviewer judges from a sample's picture: a ``pass`` whose note names no code accepts them.
REVIEWED_FAMILIES = ("geometry", "labels", "intensity")


def review_ignore_rules(review: Any) -> list[IgnoreRule]:
    """The findings a QC review accepts, as ignore rules with the reviewer's note as the reason.

    Only samples marked ``pass`` accept anything. A note that names codes (``LABEL_AT_FOV_EDGE: L5 cut by
    the scan``) accepts exactly those; a note that names none accepts the codes a reviewer judges from the
    sample's picture (families :data:`REVIEWED_FAMILIES`), never a duplicate, metadata or unreadable-file
    finding, which involve more than the picture shows. ``fail`` and ``unsure`` accept nothing.

    Parameters
    ----------
    review : utils.review.review_file.QcReview
    """
    rules = []
    for sid, entry in review.with_verdict("pass").items():
        named = [code for code in CODES if re.search(rf"\b{code}\b", entry.note)]
        blanket = not named
        codes = named or [c.code for c in CODES.values() if c.family in REVIEWED_FAMILIES]
        for code in codes:
            rules.append(IgnoreRule(code, sid, entry.describe(), review.source, report_unused=not blanket))
    return rules


def measure_job(setup: AuditSetup) -> MeasureJob:
    """The per-sample job: the patient template and the info-yaml keys the checks need."""
    order_key = (setup.policy.metadata.get("scan_order") or {}).get("key")
    return MeasureJob(
        root_dir=setup.root_dir,
        descriptor=setup.descriptor,
        sex_keys=tuple(setup.policy.metadata["sex_keys"]),
        age_keys=tuple(setup.policy.metadata["age_keys"]),
        extra_keys=tuple(dict.fromkeys([*setup.group_keys, *([order_key] if order_key else [])])),
    )


def _measure_all(setup: AuditSetup, *, workers: int, dask_scheduler: str | None, show_progress: bool, recompute: bool) -> list[Measurement]:
    from utils.run.cli import run_per_sample
    from utils.report.sample import sample_key

    job = measure_job(setup)
    previous, old_signatures = ({}, {}) if recompute else output.read_previous(setup.output_dir)
    keys = {s.path: sample_key(s, setup.root_dir) for s in setup.samples}
    reused: dict[str, Measurement] = {}
    for sample in setup.samples:
        key = keys[sample.path]
        old = previous.get(key)
        if (old is not None and old.get("version") == RECORD_VERSION and not old.get("error") and key in old_signatures
                and old.get("stamps") == file_stamps(sample) and _same_job(old, job)):  # fmt: skip
            reused[key] = Measurement(old, old_signatures[key])
    todo = [s for s in setup.samples if keys[s.path] not in reused]
    if reused:
        logger.info("%d of %d samples unchanged since the last audit: their statistics are reused (--recompute to read them again)",
                    len(reused), len(setup.samples))  # fmt: skip
    run = run_per_sample(todo, job, desc="audit", workers=workers, key=lambda s: keys[s.path], show_progress=show_progress,
                         dask_scheduler=dask_scheduler, input_dirs=[setup.root_dir])  # fmt: skip
    out = []
    for sample in setup.samples:
        key = keys[sample.path]
        if key in reused:
            out.append(reused[key])
        elif key in run.results:
            out.append(run.results[key])
        else:  # an unexpected failure of the worker (logged with its traceback by run_per_sample)
            files = {"volume": f"{key}/{sample.volume.name}", "mask": None, "info": f"{key}/{sample.info.name}"}
            error = run.errors.get(key, "not measured")
            out.append(Measurement({"version": RECORD_VERSION, "sample": sample.id, "path": key, "files": files, "error": error,
                                    "error_file": files["volume"]}))  # fmt: skip
    return out


def _same_job(record: dict[str, Any], job: MeasureJob) -> bool:
    """A stored record is reusable only when it was measured with the same metadata keys."""
    return record.get("job") == _job_signature(job)


def _job_signature(job: MeasureJob) -> dict[str, Any]:
    """What a record was measured with besides the files (stored as its ``job``)."""
    return {
        "patient_id": job.descriptor.patient_id if job.descriptor is not None else None,
        "sex_keys": list(job.sex_keys),
        "age_keys": list(job.age_keys),
        "extra_keys": list(job.extra_keys),
    }


def run_audit(
    setup: AuditSetup,
    *,
    fail_on: str = "error",
    workers: int = 1,
    dask_scheduler: str | None = None,
    show_progress: bool = True,
    recompute: bool = False,
) -> AuditResult:
    """Measure every sample, run every check, write the three files.

    Returns
    -------
    AuditResult
        ``exit_code`` 1 when a finding at or above ``fail_on`` was reported, else 0.
    """
    measurements = _measure_all(setup, workers=workers, dask_scheduler=dask_scheduler, show_progress=show_progress, recompute=recompute)
    signature = _job_signature(measure_job(setup))
    records = []
    for m in measurements:
        m.record["job"] = signature
        records.append(m.record)
    signatures = {m.record["path"]: m.signature for m in measurements if m.signature}
    ctx = AuditContext(modality=setup.modality, label_names=setup.label_names)
    findings: list[Finding] = []
    for rec in records:
        findings += sample_findings(rec, setup.policy, ctx)
    findings += distribution_findings(records, setup.policy, ctx)
    findings += pair_findings(records, signatures, setup.policy, setup.splits)
    findings += metadata_findings(records, setup.policy, setup.splits)
    graded = grade(findings, setup.policy, setup.review_rules)
    failed = fails(graded, fail_on)
    exit_code = 1 if failed else 0
    report = {
        **output.FORMAT,
        "tool": "utils/audit_dataset.py",
        "root_dir": portable_path(setup.root_dir, setup.output_dir),
        "dataset": setup.dataset,
        "modality": setup.modality,
        "label_map": portable_path(Path(setup.label_map_source), setup.output_dir) if setup.label_map_source else None,
        "manifest": None if setup.manifest is None else portable_path(setup.manifest, setup.output_dir),
        "splits": sorted(setup.splits),
        "fail_on": fail_on,
        "exit_code": exit_code,
        "samples": len(records),
        "summary": summary(graded),
        "policy": setup.policy.to_json(),
        "review": _review_summary(setup.review_rules, setup.output_dir),
        "findings": [f.to_json() for f in graded.findings],
        "ignored": [f.to_json() for f in graded.ignored],
        "records": records,
    }
    out = setup.output_dir
    out.mkdir(parents=True, exist_ok=True)
    files = [out / output.AUDIT_JSON, out / output.AUDIT_XLSX, out / output.SIGNATURES_NPZ]
    output.write_signatures(files[2], signatures)
    output.write_xlsx(files[1], report, graded.findings, graded.ignored)
    output.write_json(files[0], report)
    _log(graded, report, files[0])
    return AuditResult(report, graded, exit_code, files)


def _review_summary(rules: list[IgnoreRule], output_dir: Path) -> dict[str, Any] | None:
    """``{'source': file, 'accepted': {sample: {'codes': [...] or 'picture', 'reason': ...}}}`` of the review's rules."""
    if not rules:
        return None
    accepted: dict[str, dict[str, Any]] = {}
    for rule in rules:
        entry = accepted.setdefault(rule.sample, {"codes": [], "reason": rule.reason})
        entry["codes"].append(rule.code)
    for sample, entry in accepted.items():
        blanket = not next(r for r in rules if r.sample == sample).report_unused
        entry["codes"] = "every code of the families " + "/".join(REVIEWED_FAMILIES) if blanket else entry["codes"]
    return {"source": portable_path(Path(rules[0].source), output_dir), "accepted": accepted}


def _log(graded: Graded, report: dict[str, Any], path: Path) -> None:
    for f in graded.findings:
        if f.severity == "error":
            logger.error("%s %s: %s", f.code, f.path, f.message)
        elif f.severity == "warning":
            logger.warning("%s %s: %s", f.code, f.path, f.message)
    counts = report["summary"]["by_severity"]
    ignored = report["summary"]["ignored"]
    logger.info("audit of %s: %s, %s, %d info%s; written to %s", plural(report["samples"], "sample"), plural(counts["error"], "error"),
                plural(counts["warning"], "warning"), counts["info"], f" ({ignored} accepted by the policy or the review)" if ignored else "", path)  # fmt: skip

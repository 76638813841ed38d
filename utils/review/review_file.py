"""``qc_review.yaml``: a reviewer's verdicts on the samples of a QC report (a contract, see ``docs/qc-review.md``).

The file, as the QC page writes it::

    # QC review written by the QC page of utils/qc_report.py
    version: 1
    dataset: "verse"
    report_digest: "sha256:5d41402abc4b2a76b9719d911017c592..."
    reviews:
      "verse401-201":
        verdict: "fail"
        note: "L4 mislabelled"
        reviewer: "A. Reviewer"
        date: "2026-11-24"

``reviews`` maps a sample ID to its verdict (``pass``, ``fail`` or ``unsure``), a free-text note,
the reviewer and the date of the verdict (``YYYY-MM-DD``). ``dataset`` is the report's dataset
(``verse``, ``nme``, ``eso`` or ``generic``) and ``report_digest`` the sha256 of the report's
``dataset_card.json`` (:func:`report_digest`): which report the marks were made on. Flow style
(``{verdict: fail, note: "L4 mislabelled", reviewer: ab, date: 2026-11-24}``) is the same YAML.

The file is untrusted input (it is written by hand, mailed around, edited): :func:`load_review`
checks every value and refuses the whole file on the first problem class it finds, with one line
naming the file, the sample and the value — a file that half-applies could leave a failed sample in
a training set. Refused: a key given twice, an ID that is not a sample-folder name, a verdict other
than the three, a date that is not a real calendar date between 2000-01-01 and tomorrow, text with
control characters or longer than :data:`MAX_NOTE` / :data:`MAX_REVIEWER` characters, unknown keys.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from utils.files.aliases import PathLike
from utils.files.safe_names import CASE_ID_RE
from utils.files.yaml_files import parse_yaml, yaml_error_line

__all__ = [
    "REVIEW_FILE_NAME",
    "FORMAT_VERSION",
    "VERDICTS",
    "MAX_NOTE",
    "MAX_REVIEWER",
    "ReviewFileError",
    "ReviewEntry",
    "QcReview",
    "parse_review",
    "load_review",
    "dump_review",
    "report_digest",
]

#: File name of a review beside the dataset (``root_dir/descriptor/qc_review.yaml``) and of the page's download.
REVIEW_FILE_NAME = "qc_review.yaml"
#: ``version`` written into every file; a file without it is read as version 1.
FORMAT_VERSION = 1
#: The verdicts, in the order the page shows them.
VERDICTS = ("pass", "fail", "unsure")
#: Longest note (characters): the untrusted-metadata limit of every table the toolkit reads.
MAX_NOTE = 1000
#: Longest reviewer name (characters).
MAX_REVIEWER = 100
#: Longest sample ID (characters): a file name.
MAX_ID = 255
#: A review file larger than this is refused unread (a review of thousands of samples is ~1 MB).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Verdict dates before this are refused (a typo such as 0226-11-24).
EARLIEST_DATE = _dt.date(2000, 1, 1)

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATASET_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: Characters refused in a note (tab and newline are allowed) or a reviewer name: C0/C1 controls, DEL,
#: Unicode line/paragraph separators, non-characters, lone surrogates.
_BAD_TEXT_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")
#: Characters a YAML reader does not accept raw, or reads as a line break: written as ``\\uXXXX``.
_YAML_ESCAPE_RE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_TOP_KEYS = ("version", "dataset", "report_digest", "reviews")
_ENTRY_KEYS = ("verdict", "note", "reviewer", "date")
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ReviewFileError(ValueError):
    """A review file that cannot be used; the message is one line naming the file, the sample and the value.

    Attributes
    ----------
    problems : list of str
        Every problem found (the message shows the first few).
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = list(problems)
        shown = "; ".join(problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(f"review file {source}: {shown}{more}")


@dataclass(frozen=True)
class ReviewEntry:
    """One sample's review.

    Attributes
    ----------
    verdict : str
        ``pass``, ``fail`` or ``unsure``.
    note : str
        Free text (may be empty), at most :data:`MAX_NOTE` characters.
    reviewer : str
        Who gave the verdict (may be empty).
    date : datetime.date
        When.
    """

    verdict: str
    note: str
    reviewer: str
    date: _dt.date

    def to_dict(self) -> dict[str, str]:
        """``{verdict, note, reviewer, date}`` with the date as ``YYYY-MM-DD`` (the file's form)."""
        return {"verdict": self.verdict, "note": self.note, "reviewer": self.reviewer, "date": self.date.isoformat()}

    def describe(self) -> str:
        """``marked fail by A. Reviewer on 2026-11-24: L4 mislabelled`` (for log lines)."""
        by = f" by {self.reviewer}" if self.reviewer else ""
        note = f": {' '.join(self.note.split())}" if self.note.strip() else " (no note)"
        return f"marked {self.verdict}{by} on {self.date.isoformat()}{note}"


@dataclass
class QcReview:
    """A validated review file.

    Attributes
    ----------
    source : str
        Where it was read from (the path as given), for messages.
    dataset : str or None
        Dataset of the report the marks were made on.
    report_digest : str or None
        ``sha256:<hex>`` of that report's ``dataset_card.json``.
    entries : dict of str to ReviewEntry
        Sample ID -> its review, sorted by ID.
    """

    source: str
    dataset: str | None = None
    report_digest: str | None = None
    entries: dict[str, ReviewEntry] = field(default_factory=dict)

    def verdict(self, sample_id: str) -> str | None:
        """The verdict of a sample, or None when it was not reviewed."""
        entry = self.entries.get(str(sample_id))
        return entry.verdict if entry is not None else None

    def with_verdict(self, verdict: str) -> dict[str, ReviewEntry]:
        """The entries with this verdict (e.g. ``fail``), sorted by ID."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r} is not one of {list(VERDICTS)}")
        return {sid: e for sid, e in self.entries.items() if e.verdict == verdict}

    def counts(self) -> dict[str, int]:
        """Number of samples per verdict (every verdict present as a key)."""
        return {v: sum(e.verdict == v for e in self.entries.values()) for v in VERDICTS}

    def describe(self) -> str:
        """``3 samples reviewed: 1 fail, 2 pass, 0 unsure``."""
        counts = self.counts()
        return f"{len(self.entries)} samples reviewed: " + ", ".join(f"{counts[v]} {v}" for v in ("fail", "pass", "unsure"))

    def check_dataset(self, expected: str) -> None:
        """Refuse a review made on another dataset's report (``verse`` marks applied to an ``nme`` split).

        A review without ``dataset`` or from a ``generic`` report is accepted.

        Raises
        ------
        ReviewFileError
        """
        if self.dataset not in (None, "generic") and self.dataset != expected:
            raise ReviewFileError(
                self.source, [f"dataset {self.dataset!r}: the marks were made on a {self.dataset} report, this is a {expected} dataset"]
            )

    def to_data(self) -> dict[str, Any]:
        """The file's content as plain data (what :func:`dump_review` writes)."""
        return {
            "version": FORMAT_VERSION,
            "dataset": self.dataset,
            "report_digest": self.report_digest,
            "reviews": {sid: e.to_dict() for sid, e in self.entries.items()},
        }


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """YAML safe loader that refuses a mapping key given twice (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: yaml.BaseLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "a mapping key is a list or mapping", key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)
# Unquoted dates stay text, checked by this module: PyYAML's own timestamp constructor raises a bare
# ValueError (with a traceback) for 2026-02-30, and turns 2026-11-24 10:00 into a datetime.
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _SafeLoader.construct_yaml_str)


def _short(value: Any) -> str:
    """``repr`` of a value, cut to 60 characters (messages stay one line)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_text(value: Any, what: str, limit: int, problems: list[str], *, newlines: bool) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(f"{what} {_short(value)} is not text")
        return ""
    bad = _BAD_TEXT_RE.search(value) or (None if newlines else re.search("[\t\n]", value))
    if bad is not None:
        problems.append(f"{what} {_short(value)} holds a control character ({bad.group()!r}); plain text was expected")
        return ""
    if len(value) > limit:
        problems.append(f"{what} has {len(value)} characters, at most {limit} are accepted")
        return ""
    return value


def _check_date(value: Any, what: str, today: _dt.date, problems: list[str]) -> _dt.date | None:
    if isinstance(value, _dt.datetime):
        problems.append(f"{what} {_short(value)} is a time stamp; a date YYYY-MM-DD was expected")
        return None
    if isinstance(value, _dt.date):
        day = value
    elif isinstance(value, str) and _DATE_RE.match(value):
        try:
            day = _dt.date.fromisoformat(value)
        except ValueError:
            problems.append(f"{what} {value!r} is not a calendar date")
            return None
    else:
        problems.append(f"{what} {_short(value)} is not a date YYYY-MM-DD")
        return None
    if not EARLIEST_DATE <= day <= today + _dt.timedelta(days=1):
        problems.append(f"{what} {day.isoformat()} lies outside {EARLIEST_DATE.isoformat()} .. {today.isoformat()}")
        return None
    return day


def _check_entry(sample_id: Any, value: Any, today: _dt.date, problems: list[str]) -> tuple[str, ReviewEntry] | None:
    if not isinstance(sample_id, str):
        problems.append(f"sample ID {_short(sample_id)} is not text (quote it: \"{sample_id}\")")
        return None
    if len(sample_id) > MAX_ID or not CASE_ID_RE.match(sample_id):
        problems.append(f"sample ID {_short(sample_id)} is not a sample-folder name (letters, digits, '.', '_', '-')")
        return None
    where = f"sample {sample_id}"
    if not isinstance(value, Mapping):
        problems.append(f"{where}: {_short(value)} is not a mapping {{verdict, note, reviewer, date}}")
        return None
    unknown = [k for k in value if k not in _ENTRY_KEYS]
    if unknown:
        problems.append(f"{where}: unknown key(s) {[str(k) for k in unknown]} (expected {list(_ENTRY_KEYS)})")
    verdict = value.get("verdict")
    if verdict not in VERDICTS:
        problems.append(f"{where}: verdict {_short(verdict)} is not one of {list(VERDICTS)}")
    note = _check_text(value.get("note"), f"{where}: note", MAX_NOTE, problems, newlines=True)
    reviewer = _check_text(value.get("reviewer"), f"{where}: reviewer", MAX_REVIEWER, problems, newlines=False)
    if "date" not in value:
        problems.append(f"{where}: no date (YYYY-MM-DD of the verdict)")
        return None
    day = _check_date(value.get("date"), f"{where}: date", today, problems)
    if verdict not in VERDICTS or day is None or unknown:
        return None
    return sample_id, ReviewEntry(verdict, note, reviewer, day)


def parse_review(data: Any, source: str = "review", *, today: _dt.date | None = None) -> QcReview:
    """Validate the parsed content of a review file.

    Parameters
    ----------
    data : object
        What the YAML parser returned.
    source : str
        The file, for messages.
    today : datetime.date, optional
        Latest acceptable date minus one day (default: today).

    Returns
    -------
    QcReview

    Raises
    ------
    ReviewFileError
        Every problem found, the message naming the first ones.
    """
    today = today or _dt.date.today()
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise ReviewFileError(source, [f"{_short(data)} is not a mapping with 'reviews' (see docs/qc-review.md)"])
    unknown = [str(k) for k in data if k not in _TOP_KEYS]
    if unknown:
        problems.append(f"unknown key(s) {unknown} (expected {list(_TOP_KEYS)})")
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION or isinstance(version, bool):
        problems.append(f"version {_short(version)} is not {FORMAT_VERSION} (a newer toolkit wrote it?)")
    dataset = data.get("dataset")
    if dataset is not None and not (isinstance(dataset, str) and _DATASET_RE.match(dataset)):
        problems.append(f"dataset {_short(dataset)} is not a dataset name such as 'verse'")
        dataset = None
    digest = data.get("report_digest")
    if digest is not None and not (isinstance(digest, str) and _DIGEST_RE.match(digest)):
        problems.append(f"report_digest {_short(digest)} is not 'sha256:' and 64 hex digits")
        digest = None
    if "reviews" not in data:
        problems.append("no 'reviews' mapping")
    reviews = data.get("reviews") or {}
    if not isinstance(reviews, Mapping):
        problems.append(f"reviews {_short(reviews)} is not a mapping of sample ID to {{verdict, note, reviewer, date}}")
        reviews = {}
    entries = {}
    for sample_id, value in reviews.items():
        checked = _check_entry(sample_id, value, today, problems)
        if checked is not None:
            entries[checked[0]] = checked[1]
    if problems:
        raise ReviewFileError(source, problems)
    return QcReview(source, dataset, digest, dict(sorted(entries.items())))


def load_review(path: PathLike, *, today: _dt.date | None = None) -> QcReview:
    """Read and validate a review file.

    Parameters
    ----------
    path : str or Path
        A ``qc_review.yaml``.
    today : datetime.date, optional
        See :func:`parse_review`.

    Returns
    -------
    QcReview

    Raises
    ------
    FileNotFoundError
        No such file.
    ReviewFileError
        Unreadable, not YAML, too large, a key given twice, or any invalid value (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"review file not found: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ReviewFileError(str(path), [f"{size} bytes; a review file of at most {MAX_FILE_BYTES} bytes was expected"])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewFileError(str(path), [f"cannot be read as UTF-8 text ({exc})"]) from exc
    try:
        data = parse_yaml(text, _UniqueKeyLoader, duplicate_keys=False)  # safe loader; aliases bounded (utils/files/yaml_files.py)
    except yaml.YAMLError as exc:
        raise ReviewFileError(str(path), [f"not valid YAML ({yaml_error_line(exc)})"]) from exc
    return parse_review(data, str(path), today=today)


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar: JSON's escapes, plus ``\\uXXXX`` for what a YAML reader refuses raw."""
    return _YAML_ESCAPE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def dump_review(review: QcReview) -> str:
    """The file's text, exactly as the QC page writes it (block style, every string double-quoted, IDs sorted)."""
    lines = [
        "# QC review written by the QC page of utils/qc_report.py (format: docs/qc-review.md)",
        f"version: {FORMAT_VERSION}",
        f"dataset: {_quoted(review.dataset) if review.dataset is not None else 'null'}",
        f"report_digest: {_quoted(review.report_digest) if review.report_digest is not None else 'null'}",
    ]
    if not review.entries:
        lines.append("reviews: {}")
    else:
        lines.append("reviews:")
        for sample_id in sorted(review.entries):
            lines.append(f"  {_quoted(sample_id)}:")
            lines += [f"    {key}: {_quoted(value)}" for key, value in review.entries[sample_id].to_dict().items()]
    return "\n".join(lines) + "\n"


def report_digest(card_json_text: str) -> str:
    """``sha256:<hex>`` of a report's ``dataset_card.json`` text: which report a review was made on.

    Anyone can check it: ``sha256sum root_dir/qc/dataset_card.json``.
    """
    return "sha256:" + hashlib.sha256(card_json_text.encode("utf-8")).hexdigest()

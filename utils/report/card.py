"""The dataset card: ``dataset_card.md`` (tables ready to paste into a README) and ``dataset_card.json``.

Both hold the same numbers; the Markdown rounds them the way the VerSe dataset card
does (spacing and volumes to 2 decimals, percentages to 2 decimals), the JSON keeps
them unrounded and adds one record per sample.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from utils.files.aliases import PathLike
from utils.files.atomic import atomic_write_text

__all__ = ["DatasetCard", "card_markdown", "card_json", "write_card", "format_triple", "format_volume"]


@dataclass
class DatasetCard:
    """The numbers of the report.

    Attributes
    ----------
    title, dataset, modality : str
        From the report profile.
    window : str
        Display window of the pictures.
    label_map : str
        Label map used for names (path as given) or ``''``.
    group_by : list of str
        Columns of :attr:`summary`.
    summary : list of dict
        :func:`utils.report.stats.summary_table`.
    resolution : dict
        :func:`utils.report.stats.resolution_table`.
    labels : list of dict
        :func:`utils.report.stats.label_table`.
    n_samples, n_failed, n_with_mask : int
        Samples found, not readable, with a mask read.
    samples : list of dict
        :meth:`utils.report.sample.SampleRecord.to_json` of every sample (JSON only).
    """

    title: str
    dataset: str
    modality: str
    window: str
    label_map: str
    group_by: list[str]
    summary: list[dict[str, Any]]
    resolution: dict[str, Any]
    labels: list[dict[str, Any]]
    n_samples: int
    n_failed: int
    n_with_mask: int
    samples: list[dict[str, Any]] = field(default_factory=list)


def _num(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def format_triple(values: Sequence[float], integers: bool = False) -> str:
    """``(0.92, 0.92, 1.00)`` / ``(512, 512, 292)``; a median of an even count may end in ``.5``."""
    if not values:
        return "-"
    if integers:
        return "(" + ", ".join(f"{v:g}" for v in values) + ")"
    return "(" + ", ".join(_num(v) for v in values) + ")"


def format_volume(cm3: float | None) -> str:
    """Volume in cm³ with 2 decimals; ``-`` for a label without a case."""
    return "-" if cm3 is None else _num(cm3)


def _md_cell(value: Any) -> str:
    return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def label_display_name(row: dict[str, Any]) -> str:
    """``C1 (cervical spine 1)``, or the name alone when there is no short form."""
    return f"{row['short']} ({row['name']})" if row["short"] else row["name"]


def card_markdown(card: DatasetCard) -> str:
    """The card in Markdown: summary, resolution table, label table (the VerSe card's columns)."""
    lines = [f"# {card.title}", ""]
    lines.append(
        f"{card.n_samples} samples ({card.n_with_mask} with a mask"
        + (f", {card.n_failed} not readable" if card.n_failed else "")
        + f"); modality {card.modality}. Computed from the data by `utils/qc_report.py`."
    )
    lines += ["", "## Dataset Summary", ""]
    lines += _md_table([*card.group_by, "samples"], [[r.get(c, "") for c in card.group_by] + [r["samples"]] for r in card.summary])
    res = card.resolution
    lines += ["", "### Resolution Details", ""]
    lines += _md_table(
        ["Dataset Statistics", "spacing (mm)", "size"],
        [[stat, format_triple(res["spacing_mm"][stat]), format_triple(res["size"][stat], integers=True)] for stat in ("min", "median", "max")],
    )
    lines += ["", f"Over the {res['n']} readable samples, along the stored array axes (i, j, k), each axis on its own."]
    lines += ["", "## Label Information Statistics", ""]
    lines += _md_table(
        ["Label", "Name", "Cases", "Percentage", "Max Volume (cm³)", "Min Volume (cm³)", "Median Volume (cm³)"],
        [
            [r["index"], label_display_name(r), r["cases"], f"{_num(r['percentage'])}%", format_volume(r["max_cm3"]),
             format_volume(r["min_cm3"]), format_volume(r["median_cm3"])]  # fmt: skip
            for r in card.labels
        ],
    )
    lines += [
        "",
        f"Cases: samples whose mask holds the label; percentage of the {card.n_with_mask} samples with a mask. "
        "Volume = voxel count × voxel volume, in cm³, over the cases; `-`: no case."
        + (f" Label names from `{card.label_map}`." if card.label_map else ""),
        "",
    ]
    return "\n".join(lines)


def card_json(card: DatasetCard) -> str:
    """The card as JSON text (unrounded numbers, one record per sample)."""
    data = {
        "title": card.title,
        "dataset": card.dataset,
        "modality": card.modality,
        "window": card.window,
        "label_map": card.label_map,
        "n_samples": card.n_samples,
        "n_with_mask": card.n_with_mask,
        "n_failed": card.n_failed,
        "group_by": card.group_by,
        "summary": card.summary,
        "resolution": card.resolution,
        "labels": card.labels,
        "samples": card.samples,
    }
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_card(card: DatasetCard, md_path: PathLike, json_path: PathLike) -> None:
    """Write both files atomically."""
    atomic_write_text(md_path, card_markdown(card))
    atomic_write_text(json_path, card_json(card))

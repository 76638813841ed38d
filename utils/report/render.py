"""One QC picture per sample: three windowed planes with the mask overlay, patient sides and a legend.

The picture is drawn on a palette image (192 grey levels, the label colours and
a few interface colours, falling back to RGB when a sample has more labels
than the palette holds) and written as a compressed PNG: a 3-view picture of a
512×512×300 CT scan is about 50 kB. Labels are drawn as a full-colour outline with
a 50 % checkerboard fill, so the anatomy under a label stays visible and every
pixel is either a grey level or a label colour.

Pixel aspect: each plane is scaled in 2D (bilinear for the image, nearest
neighbour for the labels) so that one picture pixel covers the same number of
millimetres along rows and columns, and the same in the three views.

Pillow (PIL), used here for scaling, text and PNG, is installed with
scikit-image (one of its own dependencies). It is imported inside the functions.
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from utils.files.aliases import PathLike
from utils.files.atomic import atomic_write_bytes
from utils.report.planes import View

__all__ = ["label_color", "Panel", "Picture", "LegendEntry", "compose_picture", "png_bytes", "write_png", "GREY_LEVELS"]

#: Grey levels of a windowed plane in the palette picture.
GREY_LEVELS = 192
_BACKGROUND = (24, 24, 24)
_TEXT = (235, 235, 235)
_MUTED = (150, 150, 150)
_UI_COLORS = (_BACKGROUND, _TEXT, _MUTED)
_FONT_SIZE = 11
_GAP = 8  # between panels and around the picture


def label_color(label: int) -> tuple[int, int, int]:
    """Fixed colour of a label value, the same in every picture of every dataset.

    Hue ``(label - 1) × 137.5°`` (the golden angle: neighbouring labels get very
    different hues; label 1 is red), full value, saturation 0.8 or 1.

    Examples
    --------
    >>> label_color(1)
    (255, 0, 0)
    """
    hue = ((int(label) - 1) * 0.381966011250105) % 1.0
    sat = 1.0 if label % 2 else 0.8
    r, g, b = colorsys.hsv_to_rgb(hue, sat, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


@dataclass(frozen=True)
class LegendEntry:
    """One label of the legend: value, text (short name) and colour."""

    label: int
    text: str

    @property
    def color(self) -> tuple[int, int, int]:
        return label_color(self.label)


@dataclass
class Panel:
    """One view in display orientation, before scaling.

    Attributes
    ----------
    view : View
        Which plane (its patient-side letters are drawn around it).
    image : (H, W) ndarray
        Values of the plane (any real dtype).
    labels : (H, W) ndarray of uint8 or None
        Mask values on the same plane.
    pixel_mm : tuple of float
        Pixel height and width in mm.
    """

    view: View
    image: npt.NDArray
    labels: npt.NDArray[np.uint8] | None
    pixel_mm: tuple[float, float]


@dataclass
class Picture:
    """A composed picture and where each view sits in it (for tests and the HTML).

    Attributes
    ----------
    image : PIL.Image.Image
        Mode ``P`` (or ``RGB``).
    boxes : dict
        ``{view name: (x0, y0, width, height)}`` of the scaled plane in the picture.
    label_slots : dict
        ``{label: palette index}`` (empty for an RGB picture).
    """

    image: Any
    boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    label_slots: dict[int, int] = field(default_factory=dict)


def _font() -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(font: Any, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom)


def _scaled_size(panel: Panel, mm_per_px: float) -> tuple[int, int]:
    h, w = panel.image.shape
    return max(1, round(h * panel.pixel_mm[0] / mm_per_px)), max(1, round(w * panel.pixel_mm[1] / mm_per_px))


def _grey_levels(image: npt.NDArray, size_hw: tuple[int, int], window: tuple[float, float]) -> npt.NDArray[np.uint8]:
    """Scale a plane (bilinear, in float) and map ``[lo, hi]`` onto 0..GREY_LEVELS-1."""
    from PIL import Image

    plane = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=window[0], posinf=window[1], neginf=window[0])
    scaled = np.asarray(Image.fromarray(np.ascontiguousarray(plane), mode="F").resize(size_hw[::-1], Image.BILINEAR))
    lo, hi = window
    levels = (scaled - np.float32(lo)) * np.float32((GREY_LEVELS - 1) / (hi - lo))
    return np.clip(np.rint(levels), 0, GREY_LEVELS - 1).astype(np.uint8)


def _scaled_labels(labels: npt.NDArray[np.uint8], size_hw: tuple[int, int]) -> npt.NDArray[np.uint8]:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(labels), mode="L").resize(size_hw[::-1], Image.NEAREST))


def _overlay(canvas: npt.NDArray[np.uint16], labels: npt.NDArray[np.uint8], slots: dict[int, int]) -> None:
    """Outline every label region in its colour and fill it with a checkerboard (in place)."""
    if not labels.any():
        return
    lut = np.zeros(256, dtype=np.uint16)
    for lab, slot in slots.items():
        lut[lab] = slot
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    rr, cc = np.indices(labels.shape, sparse=True)
    paint = (labels > 0) & (edge | ((rr + cc) % 2 == 0))
    canvas[paint] = lut[labels[paint]]


def compose_picture(
    panels: Sequence[Panel],
    window: tuple[float, float],
    legend: Sequence[LegendEntry],
    title: str,
    *,
    panel_px: int = 256,
    note: str = "",
) -> Picture:
    """Draw the views side by side with patient-side letters, a title line and a legend.

    Parameters
    ----------
    panels : sequence of Panel
        The views, left to right.
    window : (lo, hi)
        Display window in the image's units.
    legend : sequence of LegendEntry
        Labels to list under the views (the labels present).
    title : str
        First line of the picture.
    panel_px : int
        Picture pixels along the largest physical extent of the views; one scale
        (mm per pixel) for the three views.
    note : str
        Shown in place of the legend when it is empty (``no mask``).

    Returns
    -------
    Picture
    """
    from PIL import Image, ImageDraw

    font = _font()
    _, text_h = _text_size(font, "ASPLIR")
    margin = text_h + 4  # room for a side letter
    extent_mm = max(max(p.image.shape[0] * p.pixel_mm[0], p.image.shape[1] * p.pixel_mm[1]) for p in panels)
    mm_per_px = extent_mm / float(panel_px)
    sizes = [_scaled_size(p, mm_per_px) for p in panels]

    present = sorted({e.label for e in legend})
    n_fixed = GREY_LEVELS + len(_UI_COLORS)
    slots = {lab: n_fixed + i for i, lab in enumerate(present)}
    palette = [(round(i * 255 / (GREY_LEVELS - 1)),) * 3 for i in range(GREY_LEVELS)] + list(_UI_COLORS) + [label_color(lab) for lab in present]
    bg, fg, muted = GREY_LEVELS, GREY_LEVELS + 1, GREY_LEVELS + 2

    # layout: title, then per view: name line, top letter, plane, bottom letter; legend below
    title_h = text_h + _GAP
    name_h = text_h + 2
    x = _GAP
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for panel, (h, w) in zip(panels, sizes):
        boxes[panel.view.name] = (x + margin, _GAP + title_h + name_h + margin, w, h)
        x += margin + w + margin + _GAP
    width = max(x, _text_size(font, title)[0] + 2 * _GAP)
    planes_bottom = max(y + h + margin for (_, y, _, h) in boxes.values())

    entry_w = [10 + 4 + _text_size(font, e.text)[0] + 12 for e in legend]
    rows, row_x = 1, _GAP
    for ew in entry_w:
        if row_x + ew > width - _GAP and row_x > _GAP:
            rows, row_x = rows + 1, _GAP
        row_x += ew
    line_h = text_h + 5
    height = planes_bottom + _GAP + rows * line_h + _GAP

    canvas = np.full((height, width), bg, dtype=np.uint16)
    for panel, (h, w) in zip(panels, sizes):
        x0, y0, _, _ = boxes[panel.view.name]
        region = canvas[y0 : y0 + h, x0 : x0 + w]
        region[...] = _grey_levels(panel.image, (h, w), window)
        if panel.labels is not None:
            _overlay(region, _scaled_labels(panel.labels, (h, w)), slots)

    if len(palette) <= 256:
        img = Image.fromarray(canvas.astype(np.uint8), mode="P")
        flat = [c for rgb in palette for c in rgb]
        img.putpalette(flat + [0] * (768 - len(flat)))
        color = {"fg": fg, "muted": muted, **{lab: slot for lab, slot in slots.items()}}
    else:  # more labels than palette entries: draw in RGB
        img = Image.fromarray(np.asarray(palette, dtype=np.uint8)[canvas], mode="RGB")
        color = {"fg": palette[fg], "muted": palette[muted], **{lab: palette[slot] for lab, slot in slots.items()}}
        slots = {}
    draw = ImageDraw.Draw(img)
    draw.text((_GAP, _GAP), title, fill=color["fg"], font=font)
    for panel in panels:
        x0, y0, w, h = boxes[panel.view.name]
        draw.text((x0 - margin, y0 - margin - name_h), panel.view.name, fill=color["muted"], font=font)
        top, bottom, left, right = panel.view.sides
        for letter, cx, cy in ((top, x0 + w / 2, y0 - margin / 2), (bottom, x0 + w / 2, y0 + h + margin / 2),
                               (left, x0 - margin / 2, y0 + h / 2), (right, x0 + w + margin / 2, y0 + h / 2)):  # fmt: skip
            lw, _ = _text_size(font, letter)
            draw.text((round(cx - lw / 2), round(cy - text_h / 2)), letter, fill=color["fg"], font=font)
    lx, ly = _GAP, planes_bottom + _GAP
    if not legend and note:
        draw.text((lx, ly), note, fill=color["muted"], font=font)
    for entry, ew in zip(legend, entry_w):
        if lx + ew > width - _GAP and lx > _GAP:
            lx, ly = _GAP, ly + line_h
        draw.rectangle((lx, ly + 1, lx + 9, ly + 10), fill=color[entry.label])
        draw.text((lx + 14, ly), entry.text, fill=color["fg"], font=font)
        lx += ew
    return Picture(img, boxes, slots)


def png_bytes(picture: Picture) -> bytes:
    """The picture as PNG (zlib level 6: level 9 saves ~5 % and takes 3x as long)."""
    buf = io.BytesIO()
    picture.image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_png(path: PathLike, picture: Picture) -> int:
    """Write the picture atomically as PNG; return its size in bytes."""
    data = png_bytes(picture)
    atomic_write_bytes(path, data)
    return len(data)

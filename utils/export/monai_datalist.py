"""MONAI Decathlon-style datalist of one split (Project-MONAI/MONAI ``monai/data/decathlon_datalist.py``).

``{output_dir}/monai/{name}_{split}/datalist.json``: no file is copied; every
path points at the grouped dataset, relative to the JSON file's folder, which
is where ``load_decathlon_datalist`` joins them by default::

    {"name": …, "description": …, "reference": …, "licence": …, "release": …, "tensorImageSize": "3D",
     "modality": {"0": "CT"}, "labels": {"0": "background", "1": …},
     "numTraining": n, "numValidation": n, "numTest": n,
     "training": [{"image": "../../…_volume.nii.gz", "label": "../../…_mask.nii.gz"}, …],
     "validation": [...], "test": [...]}

``labels`` is the label map as it is (the masks are not renumbered: MONAI does
not need consecutive values). Train/val samples without a mask are left out; a
test sample without a mask is ``{"image": …}`` alone. A list with no sample is
not written (``load_decathlon_datalist(…, "test")`` fails on an empty list).
"""

from __future__ import annotations

import os
from pathlib import Path

from utils.export.cases import ExportCase, LabelPlan
from utils.export.descriptor import DatasetDescriptor

__all__ = ["DATALIST_NAME", "datalist"]

DATALIST_NAME = "datalist.json"
_LISTS = (("training", "train"), ("validation", "val"), ("test", "test"))


def _rel(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def datalist(descriptor: DatasetDescriptor, plan: LabelPlan, cases: list[ExportCase], final_folder: Path) -> dict[str, object]:
    """The datalist content; paths relative to ``final_folder`` (where the JSON file will live)."""
    data: dict[str, object] = {"name": descriptor.name}
    for key in ("description", "reference", "licence", "release"):
        if key in descriptor.text:
            data[key] = descriptor.text[key]
    data["tensorImageSize"] = "3D"
    data["modality"] = {str(i): name for i, name in enumerate(descriptor.channel_names)}
    data["labels"] = {str(lab.index): ("background" if lab.index == 0 else lab.name) for lab in plan.labels}
    lists: dict[str, list[dict[str, str]]] = {}
    for key, subset in _LISTS:
        items = []
        for case in cases:
            if case.subset != subset or (case.mask is None and subset != "test"):
                continue
            item = {"image": _rel(case.volume, final_folder)}
            if case.mask is not None:
                item["label"] = _rel(case.mask, final_folder)
            items.append(item)
        lists[key] = items
    data["numTraining"] = len(lists["training"])
    data["numValidation"] = len(lists["validation"])
    data["numTest"] = len(lists["test"])
    data.update({key: items for key, items in lists.items() if items})
    return data

"""SAT-DS jsonl of one split (zhaoziheng/SAT-DS ``processor.py``, ``train_test_split.py``).

``{output_dir}/satds/{name}_{split}/`` holds ``{name}.jsonl``, one JSON object
per sample with a mask::

    {"image": "/abs/…_volume.nii.gz", "mask": "/abs/…_mask.nii.gz", "label": ["cervical spine 1", …],
     "modality": "CT", "dataset": "VerSe", "official_split": "train", "patient_id": "verse004"}

and ``split.json`` (``{"train": [patient ids], "val": [...], "test": [...]}``,
the file ``train_test_split.py --split_json`` reads). As in SAT-DS, ``label``
names mask value i + 1 at position i (background excluded) and paths are
absolute, so the loader finds them from any working directory. A sample
without a mask has no place in SAT-DS and is left out. When the label map has
gaps, the renumbered masks are written to ``masks/{case}.nii.gz`` and ``mask``
points there.

Absolute paths are the one exception to "no absolute path in a file we write":
SAT-DS's loader opens ``image`` and ``mask`` as given, from whatever folder
training runs in, and has no notion of a base folder. So that a moved or
copied dataset stays valid, a re-export finds a jsonl whose records differ only
by where the same files now lie (:func:`moved_records`) and rewrites its paths
instead of refusing it as a different export.
"""

from __future__ import annotations

import json
from pathlib import Path

from utils.export.cases import ExportCase, LabelPlan
from utils.export.descriptor import DatasetDescriptor
from utils.dataset.splits import SUBSETS

__all__ = ["jsonl_name", "remapped_mask", "records", "split_json", "moved_records"]


def jsonl_name(descriptor: DatasetDescriptor) -> str:
    """``{name}.jsonl``."""
    return f"{descriptor.name}.jsonl"


def remapped_mask(case: ExportCase) -> str:
    """Relative path of a case's renumbered mask in the SAT-DS folder."""
    return f"masks/{case.case_id}.nii.gz"


def records(descriptor: DatasetDescriptor, plan: LabelPlan, cases: list[ExportCase], final_folder: Path) -> list[dict[str, object]]:
    """One record per case with a mask, in ``cases`` order."""
    names = plan.class_names()
    out = []
    for case in cases:
        if case.mask is None:
            continue
        mask = Path(final_folder).resolve() / remapped_mask(case) if plan.remap else case.mask.resolve()
        out.append(
            {
                "image": str(case.volume.resolve()),
                "mask": str(mask),
                "label": list(names),
                "modality": descriptor.modality,
                "dataset": descriptor.name,
                "official_split": case.subset,
                "patient_id": case.patient_id,
            }
        )
    return out


def split_json(cases: list[ExportCase]) -> dict[str, list[str]]:
    """Patient ids per subset (cases with a mask), sorted."""
    return {s: sorted({c.patient_id for c in cases if c.subset == s and c.mask is not None}) for s in SUBSETS}


def moved_records(old_text: str, new_text: str) -> bool:
    """True when two jsonl texts hold the same records, with every path pointing to the same file in another place.

    "The same file in another place": the old and the new path end in the same
    parts after one common old and one common new prefix (a dataset moved or
    copied as a whole, e.g. ``/data/a/grouped/…`` -> ``/scratch/b/grouped/…``).
    """
    try:
        old = [json.loads(line) for line in old_text.splitlines() if line.strip()]
        new = [json.loads(line) for line in new_text.splitlines() if line.strip()]
    except ValueError:
        return False
    if len(old) != len(new) or not new:
        return False
    moves: dict[str, str] = {}  # old prefix -> new prefix: one move of the whole dataset (and of the export)
    for a, b in zip(old, new):
        if not isinstance(a, dict) or not isinstance(b, dict) or set(a) != set(b):
            return False
        for key in b:
            if key not in ("image", "mask"):
                if a[key] != b[key]:
                    return False
                continue
            pa, pb = Path(str(a[key])).parts, Path(str(b[key])).parts
            common = 0
            while common < min(len(pa), len(pb)) and pa[-1 - common] == pb[-1 - common]:
                common += 1
            if common < 2:  # at least the sample folder and the file name
                return False
            before, after = str(Path(*pa[: len(pa) - common])), str(Path(*pb[: len(pb) - common]))
            if moves.setdefault(before, after) != after:
                return False
    return True

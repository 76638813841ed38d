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
"""

from __future__ import annotations

from pathlib import Path

from utils.export.cases import ExportCase, LabelPlan
from utils.export.descriptor import DatasetDescriptor
from utils.splits import SUBSETS

__all__ = ["jsonl_name", "remapped_mask", "records", "split_json"]


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

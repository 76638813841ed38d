"""nnU-Net v2 raw dataset of one split (MIC-DKFZ/nnUNet ``documentation/dataset_format.md``).

Layout (``{output_dir}/nnUNet_raw/Dataset{ID:03d}_{name}_{split}/``)::

    dataset.json
    splits_final.json      the split's train/val as fold 0 (copy it to nnUNet_preprocessed/Dataset…/)
    imagesTr/{case}_0000.nii.gz   train and val cases with a mask
    labelsTr/{case}.nii.gz
    imagesTs/{case}_0000.nii.gz   test cases (with or without a mask)
    labelsTs/{case}.nii.gz        test cases with a mask (a convention; nnU-Net ignores it)

A train/val sample without a mask cannot be a training case: it is left out
(warned about, and listed in ``dataset.json``). ``dataset.json`` holds the keys
nnU-Net requires (``channel_names``, ``labels`` for every label of the map,
``numTraining``, ``file_ending``) and free-text keys nnU-Net ignores (``name``,
``description``, ``reference``, ``licence``, ``release``, ``numTest`` and
``toolkit_export``: where the export came from, the label renumbering if any,
the patient of every case, the cases left out).
"""

from __future__ import annotations

from pathlib import Path

from utils.export.cases import ExportCase, LabelPlan
from utils.export.descriptor import DatasetDescriptor

__all__ = ["FILE_ENDING", "dataset_folder_name", "check_dataset_id_free", "case_files", "dataset_json", "splits_final"]

FILE_ENDING = ".nii.gz"


def dataset_folder_name(dataset_id: int, name: str, split_name: str) -> str:
    """``Dataset{ID:03d}_{name}_{split}``; raise ``ValueError`` for an id outside 1..999."""
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"nnU-Net dataset id {dataset_id} must lie in 1..999")
    return f"Dataset{int(dataset_id):03d}_{name}_{split_name}"


def check_dataset_id_free(raw_dir: Path, dataset_id: int, folder_name: str) -> None:
    """nnU-Net finds a dataset by its id: refuse when ``raw_dir`` holds another ``Dataset{ID}_*`` folder."""
    others = sorted(p.name for p in Path(raw_dir).glob(f"Dataset{int(dataset_id):03d}_*") if p.is_dir() and p.name != folder_name)
    if others:
        raise ValueError(
            f"{raw_dir} already holds {', '.join(others)} with dataset id {int(dataset_id):03d}; nnU-Net needs one folder per id "
            f"(choose another --dataset_id)"
        )


def case_files(case: ExportCase) -> list[tuple[Path, str, bool]]:
    """Files of one case in the dataset folder: ``(source, relative destination, is_label)``; [] when left out."""
    if case.trainable:
        return [(case.volume, f"imagesTr/{case.case_id}_0000{FILE_ENDING}", False), (case.mask, f"labelsTr/{case.case_id}{FILE_ENDING}", True)]
    if case.subset == "test":
        files = [(case.volume, f"imagesTs/{case.case_id}_0000{FILE_ENDING}", False)]
        if case.mask is not None:
            files.append((case.mask, f"labelsTs/{case.case_id}{FILE_ENDING}", True))
        return files
    return []


def dataset_json(
    descriptor: DatasetDescriptor, plan: LabelPlan, cases: list[ExportCase], split_name: str, source: dict[str, object]
) -> dict[str, object]:
    """The ``dataset.json`` content.

    Parameters
    ----------
    descriptor : DatasetDescriptor
    plan : LabelPlan
    cases : list of ExportCase
        The split's cases (sorted as they should be listed).
    split_name : str
    source : dict
        Provenance (manifest, label map) for ``toolkit_export``.
    """
    training = [c for c in cases if c.trainable]
    text = descriptor.text
    description = f"{text.get('description', descriptor.name)} Split {split_name}: train and val in imagesTr (fold 0 of splits_final.json), test in imagesTs."
    data: dict[str, object] = {
        "channel_names": {str(i): name for i, name in enumerate(descriptor.channel_names)},
        "labels": plan.nnunet_labels(),
        "numTraining": len(training),
        "file_ending": FILE_ENDING,
        "name": descriptor.name,
        "description": description,
    }
    for key in ("reference", "licence", "release"):
        if key in text:
            data[key] = text[key]
    data["tensorImageSize"] = "3D"
    data["numTest"] = sum(c.subset == "test" for c in cases)
    data["toolkit_export"] = {
        **source,
        "split": split_name,
        "label_remap": plan.remap_record(),
        "train_val_without_mask_left_out": [c.case_id for c in cases if c.subset != "test" and c.mask is None],
        "test_without_mask": [c.case_id for c in cases if c.subset == "test" and c.mask is None],
        "cases": {c.case_id: {"subset": c.subset, "patient_id": c.patient_id} for c in cases},
    }
    return data


def splits_final(cases: list[ExportCase]) -> list[dict[str, list[str]]] | None:
    """``[{"train": [...], "val": [...]}]`` (one fold, the split's own); None without val cases."""
    train = sorted(c.case_id for c in cases if c.trainable and c.subset == "train")
    val = sorted(c.case_id for c in cases if c.trainable and c.subset == "val")
    if not val or not train:
        return None
    return [{"train": train, "val": val}]

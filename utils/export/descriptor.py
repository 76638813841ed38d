"""Dataset-level facts for the exports: ``descriptors/<dataset>/dataset.yaml``.

The file names the dataset (``name``), its default nnU-Net dataset id, the
name of each image channel (``channel_names``, which selects nnU-Net's
normalisation: ``CT`` or anything else), the SAT-DS ``modality``, how the
patient is named from manifest columns (``patient_id``, a Python format string
such as ``'{site}_{pid}'``), the manifest columns that tell the dataset apart
(``identify_by``) and free text (``description``, ``reference``, ``licence``,
``release``) copied into ``dataset.json`` and the MONAI datalist.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from utils.files.sample_info import read_info

__all__ = ["DESCRIPTORS_DIR", "DatasetDescriptor", "available_datasets", "detect_dataset"]

#: ``descriptors/`` of the repository.
DESCRIPTORS_DIR = Path(__file__).resolve().parents[2] / "descriptors"

_SAT_MODALITIES = ("CT", "MRI", "PET")
_TEXT_KEYS = ("description", "reference", "licence", "release")


@dataclass(frozen=True)
class DatasetDescriptor:
    """Parsed ``dataset.yaml``.

    Attributes
    ----------
    key : str
        Folder name under ``descriptors/`` (``verse``).
    name : str
        Dataset name in the exports (``VerSe``): letters, digits, ``-``.
    nnunet_dataset_id : int
        Default nnU-Net dataset id, 1..999.
    channel_names : tuple of str
        Name of image channel 0, 1, … (one channel here: the volume).
    modality : str
        ``CT``, ``MRI`` or ``PET`` (SAT-DS).
    patient_id : str
        Format string over manifest columns, e.g. ``'{subject}'``.
    identify_by : tuple of str
        Manifest columns that only this dataset's manifests have.
    text : dict of str to str
        ``description``, ``reference``, ``licence``, ``release`` when given.
    """

    key: str
    name: str
    nnunet_dataset_id: int
    channel_names: tuple[str, ...]
    modality: str
    patient_id: str
    identify_by: tuple[str, ...]
    text: dict[str, str]

    @property
    def patient_columns(self) -> list[str]:
        """Manifest columns used by :attr:`patient_id`."""
        return [field for _, field, _, _ in string.Formatter().parse(self.patient_id) if field]

    @classmethod
    def load(cls, path: Path, key: str | None = None) -> "DatasetDescriptor":
        """Read and check a ``dataset.yaml``; raise ``ValueError`` naming the file and the bad entry."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"dataset descriptor not found: {path}")
        data = read_info(path, what="dataset descriptor")  # a YAML mapping read as untrusted input; errors name the file
        missing = [k for k in ("name", "nnunet_dataset_id", "channel_names", "modality", "patient_id", "identify_by") if k not in data]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}")
        name = str(data["name"])
        if not name or not all(ch.isalnum() or ch == "-" for ch in name):
            raise ValueError(f"{path}: name {name!r} must be letters, digits or '-' (it becomes part of folder names)")
        dataset_id = data["nnunet_dataset_id"]
        if not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
            raise ValueError(f"{path}: nnunet_dataset_id {dataset_id!r} must be an integer in 1..999")
        channels = data["channel_names"]
        if not isinstance(channels, dict) or sorted(int(k) for k in channels) != list(range(len(channels))) or not channels:
            raise ValueError(f"{path}: channel_names {channels!r} must map 0, 1, … to names")
        modality = str(data["modality"])
        if modality not in _SAT_MODALITIES:
            raise ValueError(f"{path}: modality {modality!r} must be one of {list(_SAT_MODALITIES)}")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(str(data["patient_id"])) if f is not None]
        except ValueError as exc:
            raise ValueError(f"{path}: patient_id {data['patient_id']!r} is not a format string ({exc})") from None
        if not fields or any(not f.isidentifier() for f in fields):
            raise ValueError(f"{path}: patient_id {data['patient_id']!r} must name manifest columns, e.g. '{{subject}}'")
        return cls(
            key=key or path.parent.name,
            name=name,
            nnunet_dataset_id=dataset_id,
            channel_names=tuple(str(channels[k]) for k in sorted(channels, key=int)),
            modality=modality,
            patient_id=str(data["patient_id"]),
            identify_by=tuple(str(c) for c in data["identify_by"]),
            text={k: " ".join(str(data[k]).split()) for k in _TEXT_KEYS if data.get(k)},
        )

    def patient_of(self, row: dict) -> str:
        """The patient id of a manifest row; raise ``ValueError`` when a column is missing or empty."""
        values = {}
        for col in self.patient_columns:
            value = row.get(col)
            if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
                raise ValueError(f"sample {row.get('ID')!r}: column {col!r} (patient_id {self.patient_id!r}) is empty or missing")
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # an id typed as a number in Excel
            values[col] = str(value).strip()
        return self.patient_id.format_map(values)


def available_datasets(descriptors_dir: Path = DESCRIPTORS_DIR) -> list[str]:
    """Folder names under ``descriptors/`` that hold a ``dataset.yaml``."""
    return sorted(p.parent.name for p in Path(descriptors_dir).glob("*/dataset.yaml"))


def detect_dataset(columns: Iterable[str], descriptors_dir: Path = DESCRIPTORS_DIR) -> DatasetDescriptor:
    """The one descriptor whose ``identify_by`` columns are all among ``columns``.

    Raises
    ------
    ValueError
        None or several match (the message lists them; pass ``--dataset``).
    """
    cols = set(columns)
    found = []
    for key in available_datasets(descriptors_dir):
        desc = DatasetDescriptor.load(Path(descriptors_dir) / key / "dataset.yaml", key)
        if set(desc.identify_by) <= cols:
            found.append(desc)
    if len(found) != 1:
        which = [d.key for d in found] or "none"
        raise ValueError(
            f"cannot tell the dataset from the manifest columns (matching descriptors: {which}); "
            f"pass --dataset {{{','.join(available_datasets(descriptors_dir))}}}"
        )
    return found[0]

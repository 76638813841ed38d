"""A small synthetic NME-2025.8.25 archive in the real layout, with the real archive's quirks.

Made for the demo and the end-to-end tests (no patient data). It holds:

- all five collections ``NME-Seg-2025.8.25-{train-val,test-inner-01,test-outer-02,
  test-outer-03,test-outer-04}`` and all six subset folders (``imagesTr labelsTr
  imagesVd labelsVd`` in train-val, ``imagesTs labelsTs`` in the test collections);
- image names with and without the nnU-Net channel tag ``_0000``;
- mixed orientations (LPS, RAS, LAS, PIR-like sagittal), anisotropic spacing and
  an oblique MRI (12 degrees);
- an int16 mask, a float64 mask, a mask stored with a flipped axis, a sample
  without lesion (all-zero mask);
- one patient (pid) with two samples in an external collection (grouping in
  the cross-site split);
- a second-channel image ``*_0001`` (outside the grammar: listed in routine 01's
  ``Skipped`` sheet) and nnU-Net ``dataset.json`` files (not NIfTI: ignored).

With ``broken=True`` (the tests' archive) it also holds a mask with no image and
an image with no mask, which routine 02 reports (exit code 1) while writing
every good sample. The demo archive leaves them out so the pipeline script runs green.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.archive.synthetic import affine_for, blob_stack_mask, mr_like_volume, write_raw_nifti, write_stored_mask

__all__ = ["PREFIX", "DemoSample", "DEMO_SAMPLES", "BROKEN_FILES", "SECOND_CHANNEL", "sample_arrays", "make_demo_archive"]

#: Collection folder prefix of the real archive.
PREFIX = "NME-Seg-2025.8.25-"


@dataclass(frozen=True)
class DemoSample:
    """One synthetic image/mask pair of the demo archive."""

    collection: str  # train-val, test-inner-01, test-outer-0N
    tag: str  # Tr, Vd, Ts
    seq: str
    pid: str
    codes: str = "LPS"  # orientation of the image
    channel_tag: bool = True  # image named {seq}_{pid}_0000
    oblique_deg: float = 0.0
    mask_dtype: str = "uint8"
    mask_flipped: bool = False  # mask stored with array axis 0 reversed
    lesion: bool = True

    @property
    def id(self) -> str:
        return f"{self.seq}_{self.pid}"

    def image_path(self) -> str:
        suffix = "_0000" if self.channel_tag else ""
        return f"{PREFIX}{self.collection}/images{self.tag}/{self.id}{suffix}.nii.gz"

    def label_path(self) -> str:
        return f"{PREFIX}{self.collection}/labels{self.tag}/{self.id}.nii.gz"


DEMO_SAMPLES: tuple[DemoSample, ...] = (
    DemoSample("train-val", "Tr", "01A001", "1004091054"),
    DemoSample("train-val", "Tr", "01A002", "60012875311", codes="RAS", mask_dtype="int16"),
    DemoSample("train-val", "Tr", "01A003", "60012880027", channel_tag=False, oblique_deg=12.0),
    DemoSample("train-val", "Tr", "01A004", "1004122310", codes="LAS", mask_flipped=True),
    DemoSample("train-val", "Vd", "01B001", "60012901145", mask_dtype="float64"),
    DemoSample("train-val", "Vd", "01B002", "1004150077", lesion=False),
    DemoSample("test-inner-01", "Ts", "01C001", "60013002281"),
    DemoSample("test-inner-01", "Ts", "01C002", "1004203345", channel_tag=False),
    DemoSample("test-outer-02", "Ts", "02A001", "5300118842"),
    DemoSample("test-outer-02", "Ts", "02A002", "5300118842", codes="RAS"),  # same patient, second sample
    DemoSample("test-outer-02", "Ts", "02A003", "5300120971"),
    DemoSample("test-outer-03", "Ts", "03A001", "4300230018", codes="LAS"),
    DemoSample("test-outer-03", "Ts", "03A002", "4300230122"),
    DemoSample("test-outer-04", "Ts", "04A001", "HK00310045", channel_tag=False),
    DemoSample("test-outer-04", "Ts", "04A002", "HK00310311", mask_dtype="int16"),
)

#: Archive files of the broken cases (``broken=True``): (path, kind).
BROKEN_FILES = (
    (f"{PREFIX}test-outer-03/labelsTs/03A009_4300239999.nii.gz", "mask without image"),
    (f"{PREFIX}test-outer-04/imagesTs/04A009_HK00319999_0000.nii.gz", "image without mask"),
)

#: A second MR channel: outside the ``{seq}_{pid}[_0000]`` grammar, listed in ``Skipped``.
SECOND_CHANNEL = f"{PREFIX}train-val/imagesTr/01A001_1004091054_0001.nii.gz"


def sample_arrays(sample: DemoSample, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image int16, mask uint8, affine) of one sample on the image grid.

    The grid is 20 x 24 x 10 voxels of 0.8 x 0.8 x 2.5 mm (axial slices along
    the third axis); the lesion is two overlapping ellipsoids, off centre.
    """
    rng = np.random.default_rng(seed)
    shape = (20, 24, 10)
    affine = affine_for(sample.codes, (0.8, 0.8, 2.5), origin=(60.0 - seed, -20.0 + 2 * seed, -30.0), oblique_deg=sample.oblique_deg)
    mask = np.zeros(shape, np.uint8)
    if sample.lesion:
        blob = blob_stack_mask((12, 12, 8), [1, 1], axis=2, radius_fraction=0.3, rng=rng)
        i0, j0 = 2 + seed % 5, 3 + seed % 7
        mask[i0 : i0 + 12, j0 : j0 + 12, 1:9] = blob
    return mr_like_volume(mask, rng), mask, affine


def make_demo_archive(archive_root: Path, *, broken: bool = False) -> list[Path]:
    """Write the demo archive below ``archive_root`` (created; existing files are overwritten).

    Parameters
    ----------
    archive_root : Path
        ``root_dir/archive``.
    broken : bool
        Add a mask with no image and an image with no mask (:data:`BROKEN_FILES`).

    Returns
    -------
    files : list of Path
        Every file written.
    """
    archive_root = Path(archive_root)
    written: list[Path] = []
    for seed, sample in enumerate(DEMO_SAMPLES, start=1):
        image, mask, affine = sample_arrays(sample, seed)
        written.append(write_raw_nifti(archive_root / sample.image_path(), image, affine))
        storage = "flipped" if sample.mask_flipped else "same"
        written.append(write_stored_mask(archive_root / sample.label_path(), mask, affine, dtype=sample.mask_dtype, storage=storage))
    image, _mask, affine = sample_arrays(DEMO_SAMPLES[0], 1)
    written.append(write_raw_nifti(archive_root / SECOND_CHANNEL, image, affine))
    if broken:
        for i, (rel, kind) in enumerate(BROKEN_FILES):
            image, mask, affine = sample_arrays(DEMO_SAMPLES[0], 90 + i)
            written.append(write_raw_nifti(archive_root / rel, mask if kind.startswith("mask") else image, affine))
    for collection in sorted({s.collection for s in DEMO_SAMPLES}):
        meta = archive_root / f"{PREFIX}{collection}" / "dataset.json"
        meta.write_text(json.dumps({"channel_names": {"0": "DCE"}, "labels": {"background": 0, "NME": 1}, "file_ending": ".nii.gz"}))
        written.append(meta)
    return written

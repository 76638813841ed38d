"""Problems planted in a copy of the grouped VerSe demo dataset, one per audit check the issue lists.

Used by the audit's tests (``tests/test_audit_dataset.py``) and by
``benchmarks/audit_vs_nnunet.py`` (the audit and nnU-Net's ``verify_dataset_integrity`` on the
same planted dataset). :func:`plant` changes a grouped VerSe demo folder (the output of
``verse/run_pipeline.sh`` on ``python demo/make_demo_archive.py verse ROOT``) in place; run it on a copy.

  python verse/audit_demo.py ROOT/grouped     # then: python utils/audit_dataset.py --root_dir ROOT/grouped --output_dir ROOT/audit
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.files.nifti_io import load_nifti, read_mask, save_nifti
from utils.files.sample_info import read_info, write_info
from utils.archive.synthetic import flip_storage

__all__ = ["PLANTED", "IMPLIED", "plant", "sample_folder", "read_image", "write_image"]

#: Planted problem -> (sample folder it is planted in, codes it must give there).
PLANTED = {
    "swapped labels 17/18 (PIR storage)": ("VerSe19/train/verse004", {"LABEL_ORDER"}),
    "label 20 at 4x its median volume": ("VerSe19/train/verse401-201", {"LABEL_VOLUME_OUTLIER"}),
    "label 3 cut by the last slice": ("VerSe20/test/gl017", {"LABEL_AT_FOV_EDGE"}),
    "empty mask": ("VerSe20/train/verse506", {"MASK_EMPTY"}),
    "verse010 stored again with a flipped axis, another patient, in test": ("VerSe20/test/verse900", {"DUPLICATE_ACROSS_PATIENTS", "DUPLICATE_ACROSS_SUBSETS"}),
    "gl003 again with noise added, same patient": ("VerSe20/train/gl003-002", {"NEAR_DUPLICATE_SCAN"}),
    "CT without its rescale (+1024)": ("VerSe19/test/verse020", {"CT_NOT_HU"}),
    "constant volume": ("VerSe20/val/verse525", {"VOLUME_CONSTANT"}),
    "second scan of verse401 with another sex, in test": ("VerSe19/train/verse401-253", {"PATIENT_SEX_MISMATCH", "PATIENT_ACROSS_SUBSETS"}),
}  # fmt: skip

#: Consequences of a plant that are right too: a volume shifted by 1024 HU or made constant has an outlying
#: intensity under its mask.
IMPLIED = {"VerSe19/test/verse020": {"FOREGROUND_INTENSITY_OUTLIER"}, "VerSe20/val/verse525": {"FOREGROUND_INTENSITY_OUTLIER"}}


def sample_folder(root: Path, rel: str) -> tuple[Path, str]:
    folder = root / rel
    return folder, folder.name


def read_image(folder: Path, sid: str, what: str):
    """``(data, affine, image)`` of ``{sid}_{what}.nii.gz`` (volume as float32, mask as uint8)."""
    path = folder / f"{sid}_{what}.nii.gz"
    img = load_nifti(path)
    data = read_mask(img, path) if what == "mask" else np.asarray(img.get_fdata(dtype=np.float32))
    return np.array(data), img.affine, img


def write_image(folder: Path, sid: str, what: str, data: np.ndarray, affine: np.ndarray, template=None) -> None:
    """Write ``{sid}_{what}.nii.gz`` keeping the header codes of ``template`` (the image it replaces)."""
    save_nifti(folder / f"{sid}_{what}.nii.gz", data, affine, dtype=np.uint8 if what == "mask" else np.float32, template=template)


def _edit_info(folder: Path, sid: str, **changes) -> None:
    info = read_info(folder / f"{sid}_info.yaml")
    info.update(changes)
    write_info(folder / f"{sid}_info.yaml", info)


def _copy_sample(root: Path, src_rel: str, dst_rel: str, transform, **info_changes) -> None:
    src, sid = sample_folder(root, src_rel)
    dst, new = sample_folder(root, dst_rel)
    dst.mkdir(parents=True)
    for what in ("volume", "mask"):
        data, affine, img = read_image(src, sid, what)
        data, affine = transform(what, data, affine)
        write_image(dst, new, what, data, affine, img)
    info = read_info(src / f"{sid}_info.yaml")
    info.update({"ID": new, **info_changes})
    info.pop("mask_labels", None)
    write_info(dst / f"{new}_info.yaml", info)


def plant(root: Path) -> None:
    """Every problem of :data:`PLANTED`, in ``root`` (a copy of the grouped demo)."""
    folder, sid = sample_folder(root, "VerSe19/train/verse004")  # PIR: the superior-inferior axis is the second array axis
    mask, affine, img = read_image(folder, sid, "mask")
    swapped = mask.copy()
    swapped[mask == 17], swapped[mask == 18] = 18, 17
    write_image(folder, sid, "mask", swapped, affine, img)

    folder, sid = sample_folder(root, "VerSe19/train/verse401-201")  # LPS, k runs superior; 22 | 21 | 20 | 19 from k = 0
    mask, affine, img = read_image(folder, sid, "mask")
    target = 4.3 * np.count_nonzero(mask == 20)
    k20, k21 = np.nonzero((mask == 20).any(axis=(0, 1)))[0], np.nonzero((mask == 21).any(axis=(0, 1)))[0]
    slices = np.arange(k21.min(), k20.max() + 1)
    i, j = np.ogrid[: mask.shape[0], : mask.shape[1]]
    radius = np.sqrt(target / (np.pi * len(slices)))
    disc = (i - mask.shape[0] / 2 + 0.5) ** 2 + (j - mask.shape[1] / 2 + 0.5) ** 2 <= radius**2
    mask[:, :, slices] = np.where(disc[:, :, None], 20, np.where(mask[:, :, slices] == 21, 0, mask[:, :, slices]))
    write_image(folder, sid, "mask", mask, affine, img)

    folder, sid = sample_folder(root, "VerSe20/test/gl017")  # RAS: label 3 is the top vertebra; cut 5 slices off the top
    for what in ("volume", "mask"):
        data, affine, img = read_image(folder, sid, what)
        write_image(folder, sid, what, np.ascontiguousarray(data[:, :, :-5]), affine, img)

    folder, sid = sample_folder(root, "VerSe20/train/verse506")
    mask, affine, img = read_image(folder, sid, "mask")
    write_image(folder, sid, "mask", np.zeros_like(mask), affine, img)

    def flipped(what, data, affine):
        return flip_storage(data, affine, axis=0)

    _copy_sample(root, "VerSe19/val/verse010", "VerSe20/test/verse900", flipped, subject="verse900", archive="VerSe20", subset="test")
    rng = np.random.default_rng(7)

    def noisy(what, data, affine):
        return (data if what == "mask" else (data + rng.normal(0, 20, data.shape)).astype(np.float32)), affine

    _copy_sample(root, "VerSe20/train/gl003", "VerSe20/train/gl003-002", noisy, split="gl003-002")

    folder, sid = sample_folder(root, "VerSe19/test/verse020")
    volume, affine, img = read_image(folder, sid, "volume")
    write_image(folder, sid, "volume", volume + 1024.0, affine, img)

    folder, sid = sample_folder(root, "VerSe20/val/verse525")
    volume, affine, img = read_image(folder, sid, "volume")
    write_image(folder, sid, "volume", np.full_like(volume, -1000.0), affine, img)

    folder, sid = sample_folder(root, "VerSe19/train/verse401-253")
    _edit_info(folder, sid, sex="F", subset="test")


def main(argv: list[str] | None = None) -> int:
    """``python verse/audit_demo.py ROOT/grouped``: plant every problem of :data:`PLANTED` in place."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grouped", type=Path, help="a grouped VerSe demo folder (changed in place: use a copy)")
    args = parser.parse_args(argv)
    plant(args.grouped)
    for problem, (path, codes) in PLANTED.items():
        print(f"{path}: {problem} -> {', '.join(sorted(codes))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

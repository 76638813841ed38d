"""Tiny archives in the three real layouts (two samples of 6x6x5 voxels): fast enough for a bad-input matrix.

Each :class:`Layout` knows where a sample's volume and mask live in its archive,
which sample ID and grouped folder routine 02 gives it, and its routines.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.conftest import run_script
from utils.archive.synthetic import write_raw_nifti

SHAPE = (6, 6, 5)
AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, -0.8, 0, 12.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])


@dataclass(frozen=True)
class Layout:
    """One dataset's archive layout and routines (names are the two samples: ``good`` and ``bad``)."""

    dataset: str
    names: tuple[str, str]
    max_label: int
    mask_optional: bool

    # --- archive paths -------------------------------------------------------------------------------
    def volume_rel(self, name: str) -> str:
        return {
            "verse": f"dataset-01training/rawdata/sub-{name}/sub-{name}_ct.nii.gz",
            "nme": f"NME-Seg-2025.8.25-train-val/imagesTr/{name}_0000.nii.gz",
            "eso": f"tongji/pre/images/{name}.nii.gz",
        }[self.dataset]

    def mask_rel(self, name: str) -> str:
        return {
            "verse": f"dataset-01training/derivatives/sub-{name}/sub-{name}_seg-vert_msk.nii.gz",
            "nme": f"NME-Seg-2025.8.25-train-val/labelsTr/{name}.nii.gz",
            "eso": f"tongji/pre/masks/{name}.nii.gz",
        }[self.dataset]

    def duplicate_volume_rel(self, name: str) -> str:
        """A second volume file that names the same sample (two candidates)."""
        return {
            "verse": f"dataset-01training/rawdata/sub-{name}/sub-{name}_dir-ax_ct.nii.gz",
            "nme": f"NME-Seg-2025.8.25-train-val/imagesTr/{name}.nii.gz",
            "eso": f"tongji/{name}/{name}_pre_image.nii.gz",
        }[self.dataset]

    # --- outputs -------------------------------------------------------------------------------------
    def sample_id(self, name: str) -> str:
        return f"TJ_{name}_pre" if self.dataset == "eso" else name

    def sample_dir(self, root: Path, name: str) -> Path:
        sub = {"verse": "VerSe20/train", "nme": "Tongji/train-val/train", "eso": "TJ/pre"}[self.dataset]
        return root / "grouped" / sub / self.sample_id(name)

    # --- routines ------------------------------------------------------------------------------------
    def script(self, number: str) -> str:
        names = {
            "verse": {"01": "01_gen_archive_manifest", "02": "02_confirm_pairs", "03": "03_reduce_sacrum_cocygis_and_revise_T13_label",
                      "bin": "04_extract_binary_masks", "dm": "05_gen_dataset_manifest", "split": "06_make_split",
                      "index": "07_extract_split_index_manifest"},
            "nme": {"01": "01_gen_archive_manifest", "02": "02_confirm_pairs", "bin": "03_extract_binary_masks",
                    "dm": "04_gen_dataset_manifest", "split": "05_make_split_predefined", "index": "06_extract_split_index_manifest"},
            "eso": {"01": "01_gen_archive_manifest", "02": "02_confirm_pairs", "bin": "03_extract_binary_masks",
                    "dm": "04_gen_dataset_manifest", "split": "05_make_split", "index": "06_extract_split_index_manifest"},
        }[self.dataset]  # fmt: skip
        return f"{self.dataset}/{names[number]}.py"

    def split_args(self) -> list[str]:
        return {
            "verse": ["--split_name", "split01_standard"],
            "nme": ["--split_name", "split01_Tongji", "--site", "Tongji", "--collection", "train-val"],
            "eso": ["--split_name", "split01_TJ", "--site", "TJ", "--test_ratio", "0.5", "--val_ratio", "0.0"],
        }[self.dataset]

    def run_01(self, root: Path, *extra: object) -> int:
        return run_script(self.script("01"), "--root_dir", root / "archive", "--output_manifest_file", root / "descriptor/archive_manifest.xlsx", *extra)

    def run_02(self, root: Path, *extra: object) -> int:
        return run_script(
            self.script("02"), "--root_dir", root / "archive", "--output_dir", root / "grouped",
            "--archive_manifest", root / "descriptor/archive_manifest.xlsx", *extra,
        )  # fmt: skip

    def run_to_dataset_manifest(self, root: Path) -> list[int]:
        """01, 02, (VerSe 03), binary masks, dataset manifest."""
        codes = [self.run_01(root), self.run_02(root)]
        if self.dataset == "verse":
            codes.append(run_script(self.script("03"), "--root_dir", root / "grouped"))
        codes.append(run_script(self.script("bin"), "--root_dir", root / "grouped", "--label_explanation", root / "descriptor/label_map.yaml"))
        codes.append(run_script(self.script("dm"), "--root_dir", root / "grouped", "--output_manifest_file", root / "grouped/dataset_manifest.xlsx"))
        return codes


LAYOUTS = {
    "verse": Layout("verse", ("verse601", "verse602"), 28, False),
    "nme": Layout("nme", ("01A001_111", "01A002_222"), 1, False),
    "eso": Layout("eso", ("111", "222"), 1, True),
}


def base_arrays(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An int16 CT-like volume and a uint8 mask with labels 0 and 1 (seeded)."""
    rng = np.random.default_rng(seed)
    volume = rng.integers(-200, 300, SHAPE).astype(np.int16)
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:5, 1:5, 1:4] = 1
    return volume, mask


def write_sample(archive: Path, layout: Layout, name: str, seed: int) -> tuple[Path, Path]:
    """Write a good volume and mask for ``name``; return their paths."""
    volume, mask = base_arrays(seed)
    return (
        write_raw_nifti(archive / layout.volume_rel(name), volume, AFFINE),
        write_raw_nifti(archive / layout.mask_rel(name), mask, AFFINE),
    )


def make_mini_archive(root: Path, layout: Layout) -> Path:
    """``root/archive`` with the two samples of ``layout``, both valid; returns the archive folder."""
    archive = root / "archive"
    for seed, name in enumerate(layout.names, start=1):
        write_sample(archive, layout, name, seed)
    return archive


def huge_header_nifti(path: Path) -> Path:
    """A gzip NIfTI whose header announces 32767^3 voxels but holds 64 bytes of data."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((32767, 32767, 32767))
    header.set_qform(AFFINE, code=1)
    header.set_sform(AFFINE, code=1)
    header["vox_offset"] = 352
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 64))
    return path


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``folder``."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftover_temporaries(folder: Path) -> list[str]:
    """Hidden ``*.tmp`` files below ``folder``."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(".*.tmp"))


def file_states(folder: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (SHA-256, mtime in ns) of every file below ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_pipeline_script(dataset: str, root: Path):
    """``bash <dataset>/run_pipeline.sh root`` with this interpreter; returns the CompletedProcess."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(REPO / dataset / "run_pipeline.sh"), str(root)], capture_output=True, text=True, env=env)


def assert_second_pipeline_run_changes_nothing(dataset: str, root: Path) -> None:
    """Run the dataset's pipeline script again on a finished ``root``: exit 0, every file byte-identical.

    Only ``grouped/dataset_manifest.xlsx`` may get a new mtime (the dataset-manifest routine rewrites its
    ``Manifest`` sheet and the split routines add their sheets back, to the same bytes); every other file
    is left untouched.
    """
    before = file_states(root)
    second = run_pipeline_script(dataset, root)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    after = file_states(root)
    assert sorted(after) == sorted(before)
    assert [k for k in before if after[k][0] != before[k][0]] == []
    assert [k for k in before if after[k][1] != before[k][1]] == ["grouped/dataset_manifest.xlsx"]
    assert "0 samples written" in second.stderr and "written, " in second.stderr

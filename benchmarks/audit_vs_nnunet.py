"""The dataset audit and nnU-Net's ``verify_dataset_integrity`` on the same planted problems, side by side.

Builds the VerSe demo archive in a temporary folder, runs routines 01-07, plants the problems of
``verse/audit_demo.py`` in the grouped dataset, brings the dataset back up to date (binary masks,
dataset manifest, split01_standard) and then

1. runs ``utils/audit_dataset.py`` on the grouped dataset;
2. exports split01_standard to nnU-Net v2 (``utils/export_dataset.py``, ``--allow_patient_overlap`` so the
   planted leak can be exported at all) and runs nnU-Net's ``verify_dataset_integrity`` on it, as
   ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity`` does;
3. because nnU-Net only looks at training cases (``imagesTr``), exports a second split that puts every
   sample in train and runs ``verify_dataset_integrity`` again, so that it sees every planted case.

It prints a Markdown table: planted problem, what nnU-Net reported for that case (in either run), and the
audit's codes. Needs ``nnunetv2`` importable in the running Python (not a dependency of the toolkit)::

    python benchmarks/audit_vs_nnunet.py          # ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # repository root

VERIFY = """
import sys
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
try:
    verify_dataset_integrity(sys.argv[1], num_processes=1)
except BaseException as exc:
    print(f"EXCEPTION {type(exc).__name__}: {exc}")
"""

ALL_TRAIN = "split90_all_train"


def run(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *(str(a) for a in args)], capture_output=True, text=True, cwd=REPO)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def pipeline(root: Path) -> None:
    g, d, desc = root / "grouped", root / "grouped/dataset_manifest.xlsx", root / "descriptor"
    run("verse/01_gen_archive_manifest.py", "--root_dir", root / "archive", "--output_manifest_file", desc / "archive_manifest.xlsx")
    run("verse/02_confirm_pairs.py", "--root_dir", root / "archive", "--output_dir", g, "--archive_manifest", desc / "archive_manifest.xlsx")
    run("verse/03_reduce_sacrum_cocygis_and_revise_T13_label.py", "--root_dir", g)
    run("verse/04_extract_binary_masks.py", "--root_dir", g, "--label_explanation", desc / "label_map.yaml")
    run("verse/05_gen_dataset_manifest.py", "--root_dir", g, "--output_manifest_file", d)
    run("verse/06_make_split.py", "--manifest_file", d, "--split_name", "split01_standard")


def after_planting(root: Path) -> None:
    """Binary masks, dataset manifest and split01_standard again, and a split with every sample in train."""
    import pandas as pd

    from utils.dataset.splits import write_split_sheet
    from utils.files.spreadsheet import read_sheet

    g, d, desc = root / "grouped", root / "grouped/dataset_manifest.xlsx", root / "descriptor"
    run("verse/04_extract_binary_masks.py", "--root_dir", g, "--label_explanation", desc / "label_map.yaml")
    run("verse/05_gen_dataset_manifest.py", "--root_dir", g, "--output_manifest_file", d)
    run("verse/06_make_split.py", "--manifest_file", d, "--split_name", "split01_standard")
    rows = read_sheet(d)
    write_split_sheet(d, ALL_TRAIN, rows, pd.Series(["train"] * len(rows), index=rows.index).tolist())


def nnunet(root: Path, split: str, dataset_id: int) -> tuple[str, list[str]]:
    """Export ``split`` to nnU-Net and run verify_dataset_integrity: (its whole output, the case IDs in imagesTr)."""
    out = root / f"export_{split}"
    run("utils/export_dataset.py", "--manifest_file", root / "grouped/dataset_manifest.xlsx", "--split_name", split, "--format", "nnunetv2",
        "--output_dir", out, "--allow_patient_overlap", "--dataset_id", dataset_id, "--no_pbar")  # fmt: skip
    (folder,) = (out / "nnUNet_raw").iterdir()
    env = {**os.environ, "nnUNet_raw": str(out / "nnUNet_raw"), "nnUNet_preprocessed": str(root / "pre"), "nnUNet_results": str(root / "res")}
    proc = subprocess.run([sys.executable, "-c", VERIFY, str(folder)], capture_output=True, text=True, env=env, cwd=root)
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in (folder / "imagesTr").glob("*_0000.nii.gz"))
    return proc.stdout + proc.stderr, cases


def mentions(output: str, case: str) -> list[str]:
    """nnU-Net's messages that name ``case`` (one line each: the first line of the message)."""
    blocks = re.split(r"\n(?=(?:Error|Warning|WARNING|Images contain|Segmentation contains|EXCEPTION))", output)
    pattern = re.compile(rf"[/\\]{re.escape(case)}(?:_0000)?\.nii\.gz")
    return sorted({b.strip().splitlines()[0].rstrip(". ") for b in blocks if pattern.search(b)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        print("nnunetv2 is not importable in this Python: install it in a separate venv (see docs/audit.md)", file=sys.stderr)
        return 2
    from importlib.metadata import version

    from verse.audit_demo import PLANTED, plant
    from verse.demo_archive import make_demo_archive

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        if root.exists() and args.keep:
            shutil.rmtree(root)
        make_demo_archive(root / "archive")
        pipeline(root)
        plant(root / "grouped")
        after_planting(root)
        audit = run("utils/audit_dataset.py", "--root_dir", root / "grouped", "--output_dir", root / "audit", "--no_pbar", check=False)
        report = json.loads((root / "audit/audit.json").read_text())
        standard, train_std = nnunet(root, "split01_standard", 501)
        all_train, _ = nnunet(root, ALL_TRAIN, 502)
        verdicts = {"standard": standard.strip().splitlines()[-3:], "all": all_train.strip().splitlines()[-3:]}
        print(f"Audit vs nnU-Net verify_dataset_integrity, {time.strftime('%Y-%m-%d')}, nnunetv2 {version('nnunetv2')}, "
              f"Python {platform.python_version()}, {time.perf_counter() - t0:.0f} s; audit exit code {audit.returncode}")  # fmt: skip
        print(f"- verify_dataset_integrity on split01_standard: {' / '.join(v.strip() for v in verdicts['standard'] if v.strip())}")
        print(f"- verify_dataset_integrity with every sample in imagesTr: {' / '.join(v.strip() for v in verdicts['all'] if v.strip())}")
        print()
        print("| planted problem | sample | in imagesTr of split01_standard | nnU-Net verify_dataset_integrity | audit |")
        print("|---|---|---|---|---|")
        for problem, (path, _codes) in PLANTED.items():
            sid = path.rsplit("/", 1)[-1]
            said = mentions(standard, sid) + mentions(all_train, sid)
            codes = sorted({f"{f['code']} ({f['severity']})" for f in report["findings"] if f["path"] == path})
            print(f"| {problem} | {sid} | {'yes' if sid in train_std else 'no (imagesTs: not checked)'} | "
                  f"{'; '.join(sorted(set(said))) or 'nothing'} | {', '.join(codes)} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

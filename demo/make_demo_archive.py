"""Write a synthetic demo archive of one dataset into ROOT_DIR/archive.

  python demo/make_demo_archive.py verse /tmp/verse     # then: bash verse/run_pipeline.sh /tmp/verse
  python demo/make_demo_archive.py nme /tmp/nme [--broken]
  python demo/make_demo_archive.py eso /tmp/eso

Each archive has the real layout and its quirks; see verse/demo_archive.py,
nme/demo_archive.py and eso/demo_archive.py.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from utils.run.cli import run_main, setup_logging

logger = logging.getLogger("demo")

DATASETS = ("verse", "nme", "eso")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=DATASETS, help="which demo archive")
    parser.add_argument("root_dir", type=Path, help="demo root; the archive goes to ROOT_DIR/archive")
    parser.add_argument("--broken", action="store_true", help="nme only: add a mask without image and an image without mask (routine 02 then exits 1)")
    args = parser.parse_args(argv)
    setup_logging(0)
    if args.broken and args.dataset != "nme":
        parser.error("--broken exists for the nme demo only")
    make = importlib.import_module(f"{args.dataset}.demo_archive").make_demo_archive
    files = make(args.root_dir / "archive", **({"broken": True} if args.broken else {}))
    logger.info("demo %s archive: %d files in %s", args.dataset, len(files), args.root_dir / "archive")
    return 0


if __name__ == "__main__":
    run_main(main)

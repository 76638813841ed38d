"""Write the synthetic ESO-2025.10.31 demo archive (see eso/demo_archive.py) into ROOT_DIR/archive."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repository root

from eso.demo_archive import make_demo_archive
from utils.cli import run_main, setup_logging

logger = logging.getLogger("demo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root_dir", type=Path, help="demo root; the archive goes to ROOT_DIR/archive")
    args = parser.parse_args(argv)
    setup_logging(0)
    files = make_demo_archive(args.root_dir / "archive")
    logger.info("demo ESO archive: %d files in %s", len(files), args.root_dir / "archive")
    return 0


if __name__ == "__main__":
    run_main(main)

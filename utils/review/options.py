"""``--review FILE`` / ``--no_review``: which review file a command uses.

Without options, a command uses ``root_dir/descriptor/qc_review.yaml`` when that file exists
(``root_dir`` is the folder above the grouped dataset, where the routines keep their descriptor
copies) and behaves exactly as before when it does not. ``--review FILE`` names another file
(it must exist); ``--no_review`` ignores any review file.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from utils.review.review_file import QcReview

__all__ = ["add_review_args", "default_review_path", "resolve_review"]

logger = logging.getLogger(__name__)


def add_review_args(parser: argparse.ArgumentParser, what: str) -> argparse.ArgumentParser:
    """Add the mutually exclusive ``--review FILE`` and ``--no_review`` options.

    Parameters
    ----------
    parser : ArgumentParser
    what : str
        What the review does for this command, for the help (``samples marked fail are left out of the split``).
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--review", type=Path, metavar="FILE",
                       help=f"(addition) qc_review.yaml of the QC page: {what} "
                            "(default: ROOT_DIR/descriptor/qc_review.yaml when it exists; see docs/qc-review.md)")
    group.add_argument("--no_review", action="store_true", help="(addition) ignore any review file")
    return parser  # fmt: skip


def default_review_path(grouped_dir: Path) -> Path:
    """``root_dir/descriptor/qc_review.yaml`` for the grouped dataset ``root_dir/grouped``."""
    from utils.review.review_file import REVIEW_FILE_NAME

    return Path(grouped_dir).resolve().parent / "descriptor" / REVIEW_FILE_NAME


def resolve_review(explicit: Path | None, default: Path, *, disabled: bool = False, dataset: str | None = None) -> QcReview | None:
    """The review in force for a command, read and validated; None when there is none.

    Parameters
    ----------
    explicit : Path or None
        ``--review FILE``: must exist.
    default : Path
        :func:`default_review_path`: used when it exists.
    disabled : bool
        ``--no_review``: no review, whatever exists (said in one line when a file would have been used).
    dataset : str, optional
        The command's dataset (``verse``, ``nme``, ``eso``): a review made on another dataset's report is refused.

    Raises
    ------
    FileNotFoundError
        ``explicit`` does not exist.
    ReviewFileError
        The file is not a valid review (one line naming the file and the value).
    """
    from utils.review.review_file import load_review

    if disabled:
        if default.is_file():
            logger.info("review file %s not used (--no_review): every sample is kept", default)
        return None
    if explicit is None and not default.is_file():
        logger.debug("no review file (%s does not exist)", default)
        return None
    review = load_review(explicit if explicit is not None else default)
    if dataset is not None:
        review.check_dataset(dataset)
    logger.info("review file %s: %s", review.source, review.describe())
    return review

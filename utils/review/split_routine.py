"""What every split routine does around its own rule: options, the review in force, the reviewed split sheet.

A split routine (VerSe 06, NME 05 predefined and across sites, ESO 05) reads::

    def main(argv=None) -> int:
        parser = split_parser(__doc__, "routine 04", "split01_TJ")
        parser.add_argument("--site", ...)  # the routine's own options
        return split_main(parser, argv, "eso", plan)

where ``plan(args)`` checks the routine's own options (reading any rules file) and returns the
split rule ``rule(manifest) -> (rows, labels)``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from utils.files.spreadsheet import read_sheet
from utils.review.exclusion import write_reviewed_split
from utils.review.options import add_review_args, default_review_path, resolve_review
from utils.run.cli import add_common_args, fail, setup_logging

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["REVIEW_HELP", "SplitRule", "split_parser", "split_main"]

#: What the review does for a split routine (``--review``'s help).
REVIEW_HELP = "samples marked fail are left out of the split and recorded in sheet QcReviewExcluded"

#: ``rule(manifest) -> (rows, labels)``: the selected ``Manifest`` rows and the subset of each.
SplitRule = Callable[["pd.DataFrame"], "tuple[pd.DataFrame, Sequence[str]]"]


def split_parser(description: str | None, manifest_of: str, split_example: str) -> argparse.ArgumentParser:
    """The start of a split routine's command line: ``--manifest_file`` and ``--split_name``.

    The routine adds its own options after these; :func:`split_main` adds ``--review`` /
    ``--no_review`` and the common options (no ``--workers``) last.

    Parameters
    ----------
    description : str or None
        The routine's ``--help`` text (its module docstring), shown verbatim.
    manifest_of : str
        The routine that wrote ``dataset_manifest.xlsx``, for the help (``routine 04``).
    split_example : str
        An example split name, for the help (``split01_standard``).

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest_file", type=Path, required=True, help=f"dataset_manifest.xlsx of {manifest_of}")
    parser.add_argument("--split_name", required=True, help=f"worksheet and column name, e.g. {split_example}")
    return parser


def split_main(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    dataset: str,
    plan: Callable[[argparse.Namespace], SplitRule],
) -> int:
    """Run a split routine: parse, ``plan``, the review in force, the rule on the manifest, the reviewed sheet.

    In this order: ``--review`` / ``--no_review`` and the common options are added to ``parser``
    and ``argv`` is parsed; logging is set up; ``plan(args)`` checks the routine's own options;
    the review in force is read (:func:`utils.review.options.resolve_review`, refused when made on
    another dataset); the ``Manifest`` sheet is read and split by the rule; the split sheet is
    written without the samples marked ``fail``
    (:func:`utils.review.exclusion.write_reviewed_split`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        :func:`split_parser` with the routine's own options.
    argv : sequence of str or None
        Command-line arguments; None reads ``sys.argv``.
    dataset : str
        ``verse``, ``nme`` or ``eso``: the dataset a review file must be made on.
    plan : callable
        ``plan(args) -> rule`` (:data:`SplitRule`); raises ``ValueError`` (or ``OSError``) on a bad
        option value, its message logged as the one error line.

    Returns
    -------
    exit_code : int
        0 written; 2 a problem logged in one line (nothing written).
    """
    add_review_args(parser, REVIEW_HELP)
    args = add_common_args(parser, workers=False).parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        rule = plan(args)
        review = resolve_review(args.review, default_review_path(args.manifest_file.parent), disabled=args.no_review, dataset=dataset)
        manifest = read_sheet(args.manifest_file)
        rows, labels = rule(manifest)
        write_reviewed_split(args.manifest_file, args.split_name, rows, labels, review, manifest_ids=manifest.get("ID", []))
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    return 0

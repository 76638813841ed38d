"""The QC review loop: the review file, its options, samples marked fail left out.
May import: utils.files, utils.geometry, utils.labels, utils.run, utils.archive, utils.dataset, utils.maskqc (never a package above, never a tool).

The QC review loop: a reviewer's verdicts from the QC page, read back by the tools that use them.

The QC page (``utils/qc_report.py``) lets a reviewer mark every sample ``pass``, ``fail`` or
``unsure`` with a note and download the marks as ``qc_review.yaml`` (the contract is in
``docs/qc-review.md``). Placed at ``root_dir/descriptor/qc_review.yaml`` (or given with
``--review FILE``), the file makes the split routines and the training export leave out the
samples marked ``fail``, each named in one log line and recorded.

Modules
-------
review_file
    The file format: :func:`load_review` reads and validates it (untrusted input), :func:`dump_review`
    writes it. This is the loader other tools use (e.g. an audit silencing codes a reviewer accepted).
options
    ``--review FILE`` / ``--no_review`` and which review file is in force for a command.
exclusion
    Samples marked ``fail`` left out of a split sheet or an export, logged and recorded.
split_routine
    What every split routine does around its own rule: its common options, the review in force, the
    reviewed split sheet (:func:`split_main`).

A script's ``--help`` imports :mod:`utils.review.options` (a split routine's also
:mod:`utils.review.split_routine`): keep them light.
"""

"""The release diff: samples added, removed, renamed and changed between two grouped datasets.
May import: utils.files, utils.geometry, utils.labels, utils.run, utils.archive, utils.dataset, utils.maskqc, utils.review, utils.export, utils.report, utils.audit (never a package above, never a tool).

Release diff (``utils/diff_datasets.py``): what changed between two releases of a grouped dataset.

Samples are matched by ID (their folder name). A sample only in the old release is *removed*,
only in the new one *added* — unless the same volume voxels (by hash) appear under another ID:
then it is *renamed* and compared like a sample present in both. For every sample in both, the
files are hashed first and read only when the hashes differ: volume voxels, geometry (shape,
affine), mask labels (voxel count and volume per label before/after, Dice of each label's binary
mask on the same grid — never resampled), labels added/removed, and the changed fields of the
info yaml and the dataset manifest.

Modules
-------
fingerprint
    File and voxel hashes.
compare
    One sample pair (runs in ``--workers`` processes).
run
    The whole diff: matching, renames, the per-sample loop, the JSON-ready result.
tables
    The result as the sheets of ``diff.xlsx``.
report_json
    The JSON file (written by the tool, read by the QC report's diff section).
"""

"""The dataset audit: coded findings on geometry, labels, duplicates, intensities, graded by a policy.
May import: utils.files, utils.geometry, utils.labels, utils.run, utils.archive, utils.dataset, utils.maskqc, utils.review, utils.export, utils.report (never a package above, never a tool).

The dataset audit (``utils/audit_dataset.py``): one coded report of everything that looks wrong in a grouped dataset.

Every sample is read once (:mod:`~utils.audit.measure`: volume and mask, in worker
processes); what the checks need is kept as per-sample statistics and a small
signature, so that every check — per sample and across the dataset — runs on
numbers in memory, and a re-run with another policy reads no image again.

Modules
-------
codes
    The stable finding codes: default severity, meaning, suggestion (the documentation's source).
policy
    ``descriptors/<dataset>/audit.yaml`` and a user's ``--policy FILE``: thresholds, severities,
    expected anatomy, ignored findings.
geometry
    The readers-agree check (nibabel vs ITK), through the geometry module of the toolkit.
measure
    One sample: read volume and mask once, compute its statistics and signature.
signature
    Canonical orientation, the exact-duplicate voxel hash and the near-duplicate signature.
checks
    Per-sample checks on one record, distribution checks over all records.
pairs
    Duplicates, near-duplicates, patients and split sheets: the checks between samples.
findings
    The :class:`~utils.audit.findings.Finding` record, grading by the policy, the summary.
output
    ``audit.json``, ``audit.xlsx`` and ``audit_signatures.npz``.
run
    The whole audit of a grouped folder.
"""

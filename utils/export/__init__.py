"""Training exports (nnU-Net v2, MONAI, SAT-DS) and the framework statistics (nnU-Net fingerprint, MONAI data stats).
May import: utils.files, utils.geometry, utils.labels, utils.run, utils.archive, utils.dataset, utils.maskqc, utils.review (never a package above, never a tool).

Exports of a split of the clean dataset to the training frameworks.

- :mod:`utils.export.descriptor` — dataset-level facts (``descriptors/<dataset>/dataset.yaml``)
- :mod:`utils.export.cases` — the split's samples as export cases, patient and label checks
- :mod:`utils.export.verify` — per-case check of the source files (what nnU-Net will check, earlier)
- :mod:`utils.export.files` — hard links / symlinks / copies, JSON, staged folders committed atomically
- :mod:`utils.export.nnunet` — nnU-Net v2 raw dataset (``Dataset{ID}_{name}``, ``dataset.json``, ``splits_final.json``)
- :mod:`utils.export.monai_datalist` — MONAI Decathlon-style datalist
- :mod:`utils.export.satds` — SAT-DS jsonl
- :mod:`utils.export.fingerprint` — nnU-Net's ``dataset_fingerprint.json``, computed as nnU-Net computes it
- :mod:`utils.export.monai_stats` — MONAI Auto3DSeg's ``DataAnalyzer`` statistics (``data_stats.yaml``)
- :mod:`utils.export.value_stats` — exact statistics (extremes, moments, medians, percentiles) of voxel values
- :mod:`utils.export.extents` — value range and the boxes of non-zero and of positive voxels
- :mod:`utils.export.framework_stats` — both taken in the per-case pass, combined, recorded and reused
- :mod:`utils.export.run` — the whole export of one split (``utils/export_dataset.py``)

Only this file and :mod:`utils.export.files` are imported by ``utils/export_dataset.py --help``: keep them light.
"""

#: The export formats, in the order they are written.
FORMATS = ("nnunetv2", "monai", "satds")

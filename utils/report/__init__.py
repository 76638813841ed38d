"""The QC report: planes, pictures, statistics, the dataset card and the offline page.
May import: utils.files, utils.geometry, utils.labels, utils.run, utils.archive, utils.dataset, utils.maskqc, utils.review, utils.export (never a package above, never a tool).

The dataset QC report (``utils/qc_report.py``): one picture per sample, ``index.html`` and the dataset card.

Modules
-------
dataset_profile
    What kind of dataset a grouped folder is (``descriptors/<dataset>/report.yaml``):
    modality, display window, grouping columns.
planes
    The three orthogonal planes through a point, in patient orientation (radiological
    convention), taken from the stored array whatever its orientation.
render
    Windowing, label overlay, patient-side letters, legend; one compressed PNG per sample.
stats
    Per-sample label voxel counts and volumes, the dataset card's resolution and label tables.
sample
    Everything about one sample folder: read, check, measure, render (one call per worker).
card
    ``dataset_card.md`` and ``dataset_card.json``.
page
    The self-contained ``index.html``.
build
    The whole report for a list of sample folders.
"""

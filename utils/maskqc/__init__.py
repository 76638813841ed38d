"""Mask QC: slice morphology, label fusion, the close/open/threshold steps on sample folders, the reference oracle.
May import: utils.files, utils.geometry, utils.labels, utils.run, utils.archive, utils.dataset (never a package above, never a tool).
"""

"""The grouped dataset: the shared numbered routines, the dataset manifest and its checks, splits.
May import: utils.files, utils.geometry, utils.labels, utils.run, utils.archive (never a package above, never a tool).
"""

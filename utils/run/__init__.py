"""The command-line frame: common options, logging, the per-sample loop (processes or Dask), one item's call, the dependency check.
May import: utils.files, utils.geometry, utils.labels (never a package above, never a tool).
"""

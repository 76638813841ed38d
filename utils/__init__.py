"""Shared library of the preprocessing toolkit (NIfTI I/O, geometry, labels, manifests, splits)."""

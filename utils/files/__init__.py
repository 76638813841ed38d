"""Files on disk: NIfTI reading and writing (and how nibabel and ITK read a header), xlsx, yaml, atomic writes, sample folders, locks, safe names, output paths.
May import: no other package of utils (never a package above, never a tool).
"""

"""Labels: label maps, per-label statistics and boxes, binary masks per label, connected regions.
May import: utils.files, utils.geometry (never a package above, never a tool).
"""

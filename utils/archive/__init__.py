"""Raw archives: scanning files into the archive manifest, pairing volume and mask, metadata sheets, synthetic archives.
May import: utils.files, utils.geometry, utils.labels, utils.run (never a package above, never a tool).
"""

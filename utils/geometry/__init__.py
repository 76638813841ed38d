"""A file's geometry as every reader sees it: nibabel's reading, ITK's reading, whether they agree, and what to do.

- :mod:`utils.geometry.readers` — how nibabel and ITK (SimpleITK, ITK-SNAP, 3D Slicer, nnU-Net's
  default reader) turn a NIfTI header into a voxel-to-world map, and
  :func:`check_reader_agreement`, the structured verdict (``agree``, reason codes, numbers).
- :mod:`utils.geometry.validity` — headers that cannot describe a real image (zero-length axis,
  zero or non-finite voxel size, NaN or singular affine, RGB data, NaN scaling), refused on reading.
- :mod:`utils.geometry.policy` — routine 02's decision per problem (refuse, use the authoritative
  matrix, resample onto a rigid grid) and the messages naming the cause.
- :mod:`utils.geometry.rigid` — the nearest rigid grid of a sheared one, and resampling onto it.

The rules are written down, with the source lines they come from, in ``docs/geometry.md``.
"""

from utils.geometry.readers import (
    OUTPUT_READER_TOL_MM,
    READER_CODES,
    READER_TOL_MM,
    ReaderAgreement,
    ReaderView,
    check_reader_agreement,
    itk_view,
    nibabel_view,
)

__all__ = [
    "OUTPUT_READER_TOL_MM",
    "READER_CODES",
    "READER_TOL_MM",
    "ReaderAgreement",
    "ReaderView",
    "check_reader_agreement",
    "itk_view",
    "nibabel_view",
]

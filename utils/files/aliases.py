"""Type aliases shared by the library.

Module names in ``utils/`` must never shadow the standard library (``types``,
``io``, ``logging`` …): ``python utils/<tool>.py`` puts ``utils/`` first on
``sys.path``.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import numpy.typing as npt

PathLike = Union[str, "os.PathLike[str]"]
Affine = npt.NDArray[np.float64]  # (4, 4) voxel-to-world (RAS+ mm) matrix

"""NME-2025.8.25 breast-MRI pipeline: archive rules (descriptors/nme/) and split rules applied by the numbered routines."""

import utils  # noqa: F401,E402  checks the dependencies before this package's modules import numpy/pandas

"""VerSe spine-CT pipeline: the archive's rules and the routines' work functions."""

import utils  # noqa: F401,E402  checks the dependencies before this package's modules import numpy/pandas

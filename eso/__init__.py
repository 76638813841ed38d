"""ESO-2025.10.31 (esophagus cancer CT, pre/post therapy, three sites): archive rules, metadata, pairing, splits."""

import utils  # noqa: F401,E402  checks the dependencies before this package's modules import numpy/pandas

"""ESO-2025.10.31 (esophagus cancer CT, pre/post therapy, three sites): archive rules, metadata, pairing, splits."""

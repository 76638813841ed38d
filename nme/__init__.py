"""NME-2025.8.25 breast-MRI pipeline: archive rules (descriptors/nme/) and split rules applied by the numbered routines."""

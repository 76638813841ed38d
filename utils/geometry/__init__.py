"""Geometry in world space: orientation, mask-to-volume alignment, the policy per reader-disagreement problem, rigid grids.
May import: utils.files (never a package above, never a tool).

- :mod:`utils.geometry.orientation` — axis codes, exact reorientation by flips and transposes.
- :mod:`utils.geometry.alignment` — a mask compared with its volume in world space: aligned, reoriented exactly, or refused.
- :mod:`utils.geometry.policy` — routine 02's decision per problem (refuse, use the authoritative
  matrix, resample onto a rigid grid) and the messages naming the cause.
- :mod:`utils.geometry.rigid` — the nearest rigid grid of a sheared one, and resampling onto it.

The rules are written down, with the source lines they come from, in ``docs/geometry.md``.
"""

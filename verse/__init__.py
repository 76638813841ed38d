"""VerSe spine-CT pipeline: the archive's rules and the routines' work functions."""

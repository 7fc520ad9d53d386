"""Validation of GFNCP and NCP against exact posteriors (``python -m validation.exact``)."""

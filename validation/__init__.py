"""Validation of GFNCP and NCP against exact posteriors.

:func:`validate` (``python -m validation.exact`` on the command line) compares networks'
q(c | x) with the exact posterior over partitions and returns a :class:`ValidationReport`
(``.to_json()``, ``.table()``, ``.plot(dir)``). The other commands: ``python -m
validation.race`` (amortized inference against collapsed Gibbs), ``python -m validation.dag``
(the DAG of Fig. 2) and ``python -m validation.ablation``.
"""

from .report import ValidationReport, validate

__all__ = ["validate", "ValidationReport"]

"""The support of partition-valued distributions: canonical label vectors.

A partition of ``N`` points is one event of shape ``(N,)`` holding its canonical labels
(a restricted growth string, see :mod:`gfncp_pyro.partitions`), the action space of Eqs. 9-10
and 21 in [1].

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import torch
from torch.distributions.constraints import Constraint

from ..partitions import is_canonical

__all__ = ["canonical_partition"]


class _CanonicalPartition(Constraint):
    """Label vectors ``(..., N)`` in canonical form: ``c[0] == 0`` and ``c[i] <= max(c[:i]) + 1``.

    Discrete, with one event dimension (the points). Floating-point values are accepted when
    they hold integers, as for torch's integer constraints.
    """

    is_discrete = True
    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        """Whether each label vector of ``value`` ``(..., N)`` is canonical; shape ``(...)``."""
        if value.is_floating_point():
            integral = (value % 1 == 0).all(dim=-1)
            finite = torch.isfinite(value).all(dim=-1)
            safe = torch.where(torch.isfinite(value), value, 0).long()
            return integral & finite & is_canonical(safe)
        return is_canonical(value)

    def __repr__(self) -> str:
        return "CanonicalPartition()"


canonical_partition = _CanonicalPartition()
"""Constraint instance: canonical partition label vectors (event dim 1)."""

"""The isotropic Normal-Normal cluster likelihood of Eq. (1) in [1] (the paper's MoG model).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive_int
from .base import _LOG_2PI, ConjugateGaussian, NormalPosterior, _float_above, _in_sigma_range

__all__ = ["IsotropicGaussian"]


class IsotropicGaussian(ConjugateGaussian):
    """Isotropic Normal-Normal clusters: ``mu_k ~ N(0, sigma_mu^2 I_D)``,
    ``x_i ~ N(mu_{c_i}, sigma_x^2 I_D)``.

    :param float sigma_mu: prior standard deviation of the cluster means (> 0).
    :param float sigma_x: standard deviation of the points around their mean (> 0).
    :param int dim: dimension ``D``.
    """

    def __init__(self, sigma_mu: float, sigma_x: float, dim: int):
        self.sigma_mu = _in_sigma_range(_float_above(sigma_mu, "sigma_mu"), "sigma_mu")
        self.sigma_x = _in_sigma_range(_float_above(sigma_x, "sigma_x"), "sigma_x")
        _in_sigma_range(self.sigma_mu / self.sigma_x, "sigma_mu / sigma_x")
        self.dim = check_positive_int(dim, "dim")

    def __repr__(self) -> str:
        return (f"IsotropicGaussian(sigma_mu={self.sigma_mu}, sigma_x={self.sigma_x}, "
                f"dim={self.dim})")

    def _scatter_term(self, delta):
        return delta.square().sum(-1)

    def standardise(self, x: torch.Tensor):
        """Units of ``sigma_x``: ``x' = x / sigma_x`` with ``sigma_mu' = sigma_mu / sigma_x``,
        ``sigma_x' = 1`` and ``log_unit = D log sigma_x``. The prior mean 0 fixes the origin, so the
        points are not centred (a shift changes this model's posterior)."""
        unit = self.sigma_x
        scaled = IsotropicGaussian(self.sigma_mu / unit, 1.0, self.dim)
        x = x / unit
        self._check_range(x, f"sigma_x = {unit:.3g} from the prior mean 0 (|x| / sigma_x)")
        return x, scaled, self.dim * math.log(unit)

    def log_marginal_from_stats(self, counts, means, scatter):
        """Per dimension the block is ``N(0, sigma_x^2 I + sigma_mu^2 11^T)``, so::

            log p = -(nD/2) log(2 pi sigma_x^2) - (D/2) log(1 + n sigma_mu^2 / sigma_x^2)
                    - S / (2 sigma_x^2) - n ||xbar||^2 / (2 (sigma_x^2 + n sigma_mu^2))

        :param counts: ``(...)``; :param means: ``(..., D)``; :param scatter: ``(...)``.
        :returns: ``(...)``, 0 where ``counts == 0``.
        """
        n = counts.to(means.dtype)
        vx, vm = self.sigma_x**2, self.sigma_mu**2
        d = self.dim
        log_p = (
            -0.5 * n * d * (_LOG_2PI + math.log(vx))
            - 0.5 * d * torch.log1p(n * (vm / vx))
            - scatter / (2 * vx)
            - n * means.square().sum(-1) / (2 * (vx + n * vm))
        )
        return torch.where(n > 0, log_p, torch.zeros_like(log_p))

    def posterior_from_stats(self, counts, means, scatter) -> NormalPosterior:
        """``mu_k | x ~ N(n sigma_mu^2 xbar / (sigma_x^2 + n sigma_mu^2),
        sigma_mu^2 sigma_x^2 / (sigma_x^2 + n sigma_mu^2))`` per dimension."""
        n = counts.to(means.dtype).unsqueeze(-1)
        vx, vm = self.sigma_x**2, self.sigma_mu**2
        total = vx + n * vm
        loc = n * vm * means / total
        scale = torch.sqrt(vm * vx / total).expand_as(loc)
        return NormalPosterior(loc, scale)

    def _log_predictive_from_stats(self, x_new, counts, means, scatter):
        loc, scale = self.posterior_from_stats(counts, means, scatter)
        var = self.sigma_x**2 + scale[..., 0].square()  # (B, K)
        dist2 = (x_new - loc).square().sum(-1)
        return -0.5 * self.dim * (_LOG_2PI + torch.log(var)) - dist2 / (2 * var)

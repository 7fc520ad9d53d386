"""Gaussian clusters with unknown mean and covariance: the Normal-inverse-Wishart family [2].

References
----------
[2] K. P. Murphy. Conjugate Bayesian analysis of the Gaussian distribution. Technical note,
    2007 (Secs. 2.3 and 9).
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive_int
from .base import ConjugateGaussian, NIWPosterior, _float_above

__all__ = ["NormalInverseWishart"]


def _log_multigamma(a: torch.Tensor, dim: int) -> torch.Tensor:
    """``log Gamma_D(a)`` without the constant ``D(D-1)/4 log pi`` (it cancels in ratios)."""
    shifts = torch.arange(dim, dtype=a.dtype, device=a.device) / 2
    return torch.lgamma(a.unsqueeze(-1) - shifts).sum(-1)


def _log_det_and_cholesky(matrix: torch.Tensor):
    chol = torch.linalg.cholesky(matrix)
    return 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1), chol


class NormalInverseWishart(ConjugateGaussian):
    """Gaussian clusters with unknown mean and covariance under a Normal-inverse-Wishart prior:
    ``Sigma_k ~ IW(nu0, Psi)``, ``mu_k | Sigma_k ~ N(mu0, Sigma_k / kappa0)``,
    ``x_i ~ N(mu_{c_i}, Sigma_{c_i})`` (Sec. 9 of [2]).

    :param int dim: dimension ``D``.
    :param mu0: prior mean, a number (times the ones vector) or ``(D,)``.
    :param float kappa0: prior pseudo-count of the mean (> 0).
    :param float nu0: prior degrees of freedom (> D - 1; default ``D + 2``, which gives the
        prior covariance the finite mean ``Psi / (nu0 - D - 1) = Psi``).
    :param scale: ``Psi``, symmetric positive definite ``(D, D)``, or a positive number times
        the identity (default: the identity).
    """

    def __init__(self, dim: int, mu0=0.0, kappa0: float = 1.0, nu0: float | None = None,
                 scale=None):
        self.dim = check_positive_int(dim, "dim")
        mu0 = torch.as_tensor(mu0, dtype=torch.float64)
        if mu0.ndim == 0:
            mu0 = mu0.expand(self.dim).clone()
        if mu0.shape != (self.dim,) or not bool(torch.isfinite(mu0).all()):
            raise ValueError(f"mu0 must be a finite number or a finite vector of shape "
                             f"({self.dim},), got {mu0.tolist()}")
        self.mu0 = mu0
        self.kappa0 = _float_above(kappa0, "kappa0")
        self.nu0 = _float_above(self.dim + 2.0 if nu0 is None else nu0, "nu0", self.dim - 1)
        if scale is None:
            scale = torch.eye(self.dim, dtype=torch.float64)
        else:
            scale = torch.as_tensor(scale, dtype=torch.float64)
            if scale.ndim == 0:
                scale = _float_above(scale.item(), "scale") * torch.eye(self.dim).double()
        if scale.shape != (self.dim, self.dim) or not bool(torch.isfinite(scale).all()):
            raise ValueError(f"scale must be a finite ({self.dim}, {self.dim}) matrix or a "
                             f"positive number, got shape {tuple(scale.shape)}")
        if not torch.allclose(scale, scale.T, rtol=1e-10, atol=1e-12):
            raise ValueError("scale must be symmetric; pass (Psi + Psi.T) / 2")
        if int(torch.linalg.cholesky_ex(scale).info) != 0:
            raise ValueError("scale must be positive definite (its Cholesky factorisation failed)")
        self.scale = scale

    def __repr__(self) -> str:
        return (f"NormalInverseWishart(dim={self.dim}, mu0={self.mu0.tolist()}, "
                f"kappa0={self.kappa0}, nu0={self.nu0}, scale={self.scale.tolist()})")

    def _scatter_term(self, delta):
        return delta.unsqueeze(-1) * delta.unsqueeze(-2)

    def standardise(self, x: torch.Tensor):
        """Centred on ``mu0`` in units of ``s = sqrt(max diag Psi)``: ``x' = (x - mu0) / s`` with
        ``mu0' = 0``, ``Psi' = Psi / s^2`` (the family is affine-equivariant) and
        ``log_unit = D log s``."""
        unit = math.sqrt(float(torch.diagonal(self.scale).max()))
        scaled = NormalInverseWishart(self.dim, 0.0, self.kappa0, self.nu0, self.scale / unit**2)
        x = (x.double() - self.mu0.to(x.device)) / unit
        self._check_range(x, f"s = {unit:.3g} from mu0 (|x - mu0| / s, s^2 = the largest diagonal entry of Psi)")
        return x, scaled, self.dim * math.log(unit)

    def posterior_from_stats(self, counts, means, scatter) -> NIWPosterior:
        """``kappa_n = kappa0 + n``, ``nu_n = nu0 + n``, ``mu_n = (kappa0 mu0 + n xbar) / kappa_n``,
        ``Psi_n = Psi + S + (kappa0 n / kappa_n)(xbar - mu0)(xbar - mu0)^T`` (Sec. 9 of [2])."""
        n = counts.to(means.dtype)
        mu0 = self.mu0.to(means)
        psi = self.scale.to(means)
        kappa = self.kappa0 + n
        nu = self.nu0 + n
        loc = (self.kappa0 * mu0 + n.unsqueeze(-1) * means) / kappa.unsqueeze(-1)
        shrink = (self.kappa0 * n / kappa)[..., None, None]
        scale = psi + scatter + shrink * self._scatter_term(means - mu0)
        return NIWPosterior(loc, kappa, nu, scale)

    def log_marginal_from_stats(self, counts, means, scatter):
        """``log p(x_S) = -(nD/2) log pi + log Gamma_D(nu_n/2) - log Gamma_D(nu0/2)
        + (nu0/2) log|Psi| - (nu_n/2) log|Psi_n| + (D/2) log(kappa0 / kappa_n)`` (Sec. 9
        of [2]); log-determinants by Cholesky.

        :param counts: ``(...)``; :param means: ``(..., D)``; :param scatter: ``(..., D, D)``.
        :returns: ``(...)``, 0 where ``counts == 0``.
        """
        post = self.posterior_from_stats(counts, means, scatter)
        n = counts.to(means.dtype)
        d = self.dim
        log_det_prior, _ = _log_det_and_cholesky(self.scale.to(means))
        log_det_post, _ = _log_det_and_cholesky(post.scale)
        log_p = (
            -0.5 * n * d * math.log(math.pi)
            + _log_multigamma(post.nu / 2, d)
            - _log_multigamma(torch.full_like(n, self.nu0 / 2), d)
            + 0.5 * self.nu0 * log_det_prior
            - 0.5 * post.nu * log_det_post
            + 0.5 * d * (math.log(self.kappa0) - torch.log(post.kappa))
        )
        return torch.where(n > 0, log_p, torch.zeros_like(log_p))

    def _log_predictive_from_stats(self, x_new, counts, means, scatter):
        """Multivariate Student-t with ``nu_n - D + 1`` degrees of freedom, location ``mu_n``
        and shape ``Psi_n (kappa_n + 1) / (kappa_n (nu_n - D + 1))`` (Sec. 9 of [2])."""
        post = self.posterior_from_stats(counts, means, scatter)
        d = self.dim
        df = post.nu - d + 1
        factor = (post.kappa + 1) / (post.kappa * df)
        log_det_psi, chol = _log_det_and_cholesky(post.scale)
        delta = (x_new - post.loc).unsqueeze(-1)
        z = torch.linalg.solve_triangular(chol, delta, upper=False).squeeze(-1)
        maha = z.square().sum(-1) / factor
        return (
            torch.lgamma((df + d) / 2)
            - torch.lgamma(df / 2)
            - 0.5 * d * (torch.log(df) + math.log(math.pi) + torch.log(factor))
            - 0.5 * log_det_psi
            - 0.5 * (df + d) * torch.log1p(maha / df)
        )

"""The exact posterior over partitions of a small data set, by enumeration (Bell numbers).

For a CRP prior (Ewens EPPF) and a conjugate likelihood the log joint of a partition with
blocks ``S_1, ..., S_K`` is a sum over blocks::

    log p(c, x) = lgamma(alpha) - lgamma(alpha + N) + sum_k T[S_k],
    T[S] = log alpha + lgamma(|S|) + log p(x_S)            (T[empty] = 0)

so the ``2^N`` subset scores ``T`` are computed once
(:meth:`~gfncp_pyro.likelihoods.IsotropicGaussian.subset_log_marginals`) and every partition is
scored by table look-ups of its block bitmasks. All in float64.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._checks import positive_float
from .partitions import MAX_ENUMERATION_N, enumerate_partitions

__all__ = ["ExactPosterior", "exact_posterior", "subset_log_joint_table", "make_likelihood"]

_CHUNK = 1 << 19


class ExactPosterior(NamedTuple):
    """The exact posterior over all Bell(N) partitions.

    :ivar labels: canonical labels ``(B_N, N)`` (lexicographic order), ``torch.long``.
    :ivar log_posterior: ``log p(c | x)`` ``(B_N,)``, float64.
    :ivar log_evidence: ``log p(x)`` (scalar tensor, float64).
    """

    labels: torch.Tensor
    log_posterior: torch.Tensor
    log_evidence: torch.Tensor

    def top(self, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` most probable partitions and their log-probabilities."""
        values, index = torch.topk(self.log_posterior, min(k, self.log_posterior.numel()))
        return self.labels[index], values

    @property
    def entropy(self) -> float:
        """Entropy of the posterior in nats."""
        p = self.log_posterior.exp()
        return float(-(p * self.log_posterior).sum())


def make_likelihood(likelihood, sigma_mu, sigma_x, dim):
    """The likelihood object to use: ``likelihood`` if given, else an isotropic Gaussian."""
    if likelihood is not None:
        return likelihood
    from .likelihoods import IsotropicGaussian

    return IsotropicGaussian(sigma_mu=sigma_mu, sigma_x=sigma_x, dim=dim)


def _check_alpha(alpha) -> float:
    return positive_float(alpha, "alpha")


def _check_x(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.double()
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, D) (one data set), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x has no points (N = 0)")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    return x.double()


def subset_log_joint_table(x: torch.Tensor, alpha: float, likelihood) -> torch.Tensor:
    """Block scores ``T[S] = log alpha + lgamma(|S|) + log p(x_S)`` for all ``2^N`` subsets.

    :param torch.Tensor x: points ``(N, D)``.
    :returns: float64 ``(2^N,)``, ``T[0] = 0``.
    """
    x = _check_x(x)
    alpha = _check_alpha(alpha)
    n = x.shape[0]
    table = likelihood.subset_log_marginals(x).double()
    subsets = torch.arange(1 << n, device=x.device)
    bits = 1 << torch.arange(n, device=x.device)
    sizes = ((subsets.unsqueeze(-1) & bits) > 0).sum(-1).double()
    table = table + math.log(alpha) + torch.lgamma(sizes.clamp(min=1))
    table[0] = 0.0
    return table


def exact_posterior(
    x: torch.Tensor,
    alpha: float,
    sigma_mu: float = 10.0,
    sigma_x: float = 1.0,
    likelihood=None,
) -> ExactPosterior:
    """The exact posterior ``p(c | x)`` of Eq. (1) in [1] over all partitions of ``x``.

    :param torch.Tensor x: points ``(N, D)`` with ``1 <= N <= 12``.
    :param float alpha: CRP concentration.
    :param float sigma_mu: prior std of cluster means (ignored when ``likelihood`` is given).
    :param float sigma_x: std of points around their mean (ignored when ``likelihood`` is given).
    :param likelihood: a conjugate likelihood from :mod:`gfncp_pyro.likelihoods`
        (default: :class:`IsotropicGaussian` with ``sigma_mu, sigma_x``).
    :returns: :class:`ExactPosterior` (float64).
    """
    x = _check_x(x)
    n, dim = x.shape
    if n > MAX_ENUMERATION_N:
        raise ValueError(
            f"x has N={n} points; enumeration handles N <= {MAX_ENUMERATION_N}. "
            "Use the subset dynamic programme for larger N."
        )
    alpha = _check_alpha(alpha)
    likelihood = make_likelihood(likelihood, sigma_mu, sigma_x, dim)
    table = subset_log_joint_table(x, alpha, likelihood)
    labels = enumerate_partitions(n, dtype=torch.int8, device=x.device)
    bits = (1 << torch.arange(n, device=x.device)).expand(min(_CHUNK, labels.shape[0]), n)
    log_joint = torch.empty(labels.shape[0], dtype=torch.float64, device=x.device)
    for start in range(0, labels.shape[0], _CHUNK):
        chunk = labels[start : start + _CHUNK].long()
        masks = torch.zeros_like(chunk).scatter_add_(1, chunk, bits[: chunk.shape[0]])
        log_joint[start : start + _CHUNK] = table[masks].sum(-1)
    log_joint += math.lgamma(alpha) - math.lgamma(alpha + n)
    log_evidence = torch.logsumexp(log_joint, 0)
    return ExactPosterior(labels.long(), log_joint - log_evidence, log_evidence)

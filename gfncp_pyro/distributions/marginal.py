"""The collapsed likelihood ``p(x | c)`` of a conjugate Gaussian mixture as a Pyro distribution."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from ..likelihoods import IsotropicGaussian
from ..partitions import check_canonical
from .provenance import plain, with_provenance_of

__all__ = ["GaussianMixtureMarginal"]


class GaussianMixtureMarginal(TorchDistribution):
    """Points ``x`` ``(N, D)`` given a partition ``c``, with the cluster means integrated out.

    ``mu_k ~ N(0, sigma_mu^2 I)`` and ``x_i ~ N(mu_{c_i}, sigma_x^2 I)``; ``log_prob`` is the
    conjugate marginal :meth:`IsotropicGaussian.log_marginal` (within-cluster scatter form),
    ``sample`` draws the means and then the points. Used by the ``"collapsed"`` variant of
    :class:`~gfncp_pyro.models.CRPMixture`.

    :param torch.Tensor labels: canonical labels ``(..., N)``; leading dims are batch dims.
    :param float sigma_mu: prior standard deviation of the means.
    :param float sigma_x: standard deviation of the points around their mean.
    :param int dim: dimension ``D``.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = False

    def __init__(self, labels: torch.Tensor, sigma_mu: float, sigma_x: float, dim: int, validate_args=None):
        labels = torch.as_tensor(labels)
        if labels.ndim < 1:
            raise ValueError("labels must have shape (..., N)")
        check_canonical(labels)
        self.labels = labels.long()
        self.likelihood = IsotropicGaussian(sigma_mu=sigma_mu, sigma_x=sigma_x, dim=dim)
        n = labels.shape[-1]
        super().__init__(labels.shape[:-1], torch.Size((n, dim)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GaussianMixtureMarginal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.labels = self.labels.expand(batch_shape + self.labels.shape[-1:])
        new.likelihood = self.likelihood
        super(GaussianMixtureMarginal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        n, dim = self.event_shape
        if value.shape[-2:] != (n, dim):
            raise ValueError(f"value must have shape (..., {n}, {dim}), got {tuple(value.shape)}")
        shape = torch.broadcast_shapes(value.shape[:-2], self.batch_shape)

        def log_marginal(labels):  # TraceGraph_ELBO: labels may carry Pyro's provenance
            x = plain(value).expand(shape + (n, dim)).reshape(-1, n, dim)
            return self.likelihood.log_marginal(x, labels.expand(shape + (n,)).reshape(-1, n)).reshape(shape)

        return with_provenance_of(self.labels, log_marginal)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        n, dim = self.event_shape
        shape = self._extended_shape(sample_shape)  # sample + batch + (N, D)
        labels = self.labels.expand(shape[:-1])
        like = self.likelihood
        means = like.sigma_mu * torch.randn(shape, dtype=torch.get_default_dtype(), device=labels.device)
        noise = like.sigma_x * torch.randn(shape, dtype=means.dtype, device=labels.device)
        return means.gather(-2, labels.unsqueeze(-1).expand(shape)) + noise

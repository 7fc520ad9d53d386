"""Collapsed Gibbs sampling of the CRP mixture's partition (Neal 2000, Algorithm 3), many chains.

The baseline that amortized inference is raced against: it needs no training. With the cluster
parameters integrated out (conjugate likelihood), the full conditional of point ``i``'s label
given the others, ``c_{-i}``, is (Eq. (3.7) of [2], Eq. (1) of [1])::

    p(c_i = k     | c_{-i}, x) ∝ n_{k,-i} p(x_i | x_{S_k minus i})     (existing cluster k)
    p(c_i = new   | c_{-i}, x) ∝ alpha    p(x_i)                        (a new cluster)

with ``n_{k,-i}`` the size of cluster ``k`` without point ``i`` and ``p(x_i | x_S)`` the
posterior predictive of the likelihood
(:meth:`~gfncp_pyro.likelihoods.ConjugateGaussian.log_predictive_from_stats`). One sweep
updates the points ``0, ..., N-1`` in turn; this order is inherently sequential, but each point's
update is one vectorised pass over all chains and all cluster slots.

State per chain: slot labels ``(C, N)`` in ``0..N-1`` (``N`` slots always suffice, and removing
a point always leaves an empty slot for a new cluster), and per slot the count, mean and
within-cluster scatter (the statistics of :class:`~gfncp_pyro.likelihoods.BlockStatistics`),
updated by Welford's increments when a point leaves or joins. They are recomputed from the
labels in float64 at the start of every sweep (:meth:`ConjugateGaussian.block_statistics`), so
rounding cannot accumulate over sweeps.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
[2] R. M. Neal. Markov chain sampling methods for Dirichlet process mixture models. Journal of
    Computational and Graphical Statistics 9(2), 2000 (Algorithm 3).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._checks import check_int, explicit_generator
from .distributions import ChineseRestaurantProcess
from .exact import _check_alpha, _check_x, make_likelihood
from .partitions import canonicalize, check_canonical, sample_uniform_partitions

__all__ = ["GibbsResult", "CollapsedGibbs", "collapsed_gibbs"]


class GibbsResult(NamedTuple):
    """Samples of :func:`collapsed_gibbs`.

    :ivar labels: canonical labels ``(C, T, N)``: chain, kept sweep, point.
    :ivar log_joint: ``log p(c, x)`` of every kept state ``(C, T)``, float64.
    """

    labels: torch.Tensor
    log_joint: torch.Tensor

    @property
    def samples(self) -> torch.Tensor:
        """All kept states of all chains, ``(C * T, N)``."""
        return self.labels.reshape(-1, self.labels.shape[-1])

    def table(self):
        """The empirical distribution of the kept states (float64), a
        :class:`gfncp_pyro.infer.PartitionTable`."""
        from .infer import posterior_table

        flat = self.samples
        return posterior_table(flat, torch.zeros(flat.shape[0], dtype=torch.float64))

    def co_clustering(self) -> torch.Tensor:
        """``P(c_i = c_j)`` under the kept states ``(N, N)``, float64."""
        from .infer import co_clustering

        flat = self.samples
        return co_clustering(flat, torch.zeros(flat.shape[0], dtype=torch.float64))


class CollapsedGibbs:
    """The state of ``C`` collapsed Gibbs chains on one data set; :meth:`sweep` advances them.

    :param torch.Tensor x: points ``(N, D)`` (computed in float64).
    :param float alpha: CRP concentration (> 0).
    :param likelihood: a conjugate likelihood of :mod:`gfncp_pyro.likelihoods` for dimension
        ``D`` (any :class:`~gfncp_pyro.likelihoods.ConjugateGaussian`).
    :param int num_chains: ``C >= 1``.
    :param init: ``"uniform"`` (each chain starts from a partition drawn uniformly over all
        Bell(N), :func:`~gfncp_pyro.partitions.sample_uniform_partitions`), ``"one"`` (one
        cluster), ``"singletons"``, or canonical labels ``(N,)`` or ``(C, N)``.
    :param generator: a :class:`torch.Generator`, an ``int`` seed, or ``None`` for torch's
        global RNG (so :func:`pyro.set_rng_seed` makes a run reproducible).
    """

    def __init__(self, x, alpha, likelihood, num_chains: int = 64, init="uniform", generator=None):
        self.x = _check_x(x)
        n, dim = self.x.shape
        self.alpha = _check_alpha(alpha)
        if getattr(likelihood, "dim", None) != dim or not hasattr(likelihood, "log_predictive_from_stats"):
            raise ValueError(f"likelihood must be a conjugate likelihood of gfncp_pyro.likelihoods for points "
                             f"of dimension {dim}, got {likelihood!r}")
        self.likelihood = likelihood
        self.num_chains = check_int(num_chains, "num_chains", 1)
        self.generator = explicit_generator(generator)
        self.labels = self._initial_labels(init)
        self._rows = torch.arange(self.num_chains)
        self._log_alpha = math.log(self.alpha)
        self.refresh()

    def _initial_labels(self, init) -> torch.Tensor:
        c, n = self.num_chains, self.x.shape[0]
        if isinstance(init, str):
            if init == "uniform":
                return sample_uniform_partitions(n, c, generator=self.generator)
            if init == "one":
                return torch.zeros(c, n, dtype=torch.long)
            if init == "singletons":
                return torch.arange(n).expand(c, n).clone()
            raise ValueError(f"init must be 'uniform', 'one', 'singletons' or a label tensor, got {init!r}")
        labels = torch.as_tensor(init)
        if labels.is_floating_point() or labels.dtype == torch.bool or labels.shape not in ((n,), (c, n)):
            raise ValueError(f"init labels must be an integer tensor of shape ({n},) or ({c}, {n}), "
                             f"got {labels.dtype} {tuple(labels.shape)}")
        check_canonical(labels, name="init labels")
        return labels.long().expand(c, n).clone()

    def refresh(self) -> None:
        """Canonicalise the labels and recompute every slot's statistics from them (float64)."""
        n = self.x.shape[0]
        self.labels = canonicalize(self.labels)
        self.counts, self.means, self.scatter = self.likelihood.block_statistics(self.x, self.labels, num_clusters=n)

    def _expand(self, factor: torch.Tensor) -> torch.Tensor:
        """``(C,)`` -> broadcastable against one slot's scatter ``(C,)`` or ``(C, D, D)``."""
        return factor.reshape((-1,) + (1,) * (self.scatter.ndim - 2))

    def remove(self, i: int) -> None:
        """Take point ``i`` out of its cluster in every chain (Welford downdate)."""
        rows, k = self._rows, self.labels[:, i]
        n = self.counts[rows, k]
        rest = n - 1
        safe = rest.clamp(min=1)
        delta = self.x[i] - self.means[rows, k]
        kept = rest > 0
        mean = torch.where(kept.unsqueeze(-1), self.means[rows, k] - delta / safe.unsqueeze(-1), 0.0)
        term = self.likelihood._scatter_term(delta)
        scatter = self.scatter[rows, k] - self._expand(n / safe) * term
        self.counts[rows, k] = rest
        self.means[rows, k] = mean
        self.scatter[rows, k] = torch.where(self._expand(kept), scatter, 0.0)

    def conditional_logits(self, i: int) -> torch.Tensor:
        """Unnormalised ``log p(c_i = slot | c_{-i}, x)`` ``(C, N)`` after :meth:`remove` (i):
        ``log n_k + log p(x_i | x_{S_k})`` for occupied slots, ``log alpha + log p(x_i)`` for the
        first empty slot (a new cluster), ``-inf`` for the other empty slots."""
        c = self.num_chains
        pred = self.likelihood.log_predictive_from_stats(self.x[i].expand(c, -1), self.counts, self.means,
                                                         self.scatter)
        occupied = self.counts > 0
        logits = torch.where(occupied, self.counts.clamp(min=1).log() + pred, -math.inf)
        new = (~occupied).to(torch.uint8).argmax(1)  # first empty slot
        logits[self._rows, new] = self._log_alpha + pred[self._rows, new]
        return logits

    def add(self, i: int, k: torch.Tensor) -> None:
        """Put point ``i`` into slot ``k[c]`` of every chain ``c`` (Welford update)."""
        rows = self._rows
        n = self.counts[rows, k]
        grown = n + 1
        delta = self.x[i] - self.means[rows, k]
        self.counts[rows, k] = grown
        self.means[rows, k] = self.means[rows, k] + delta / grown.unsqueeze(-1)
        self.scatter[rows, k] = self.scatter[rows, k] + self._expand(n / grown) * self.likelihood._scatter_term(delta)
        self.labels[:, i] = k

    def sweep(self) -> None:
        """One Gibbs sweep over the points ``0..N-1`` in every chain (Gumbel-max draws)."""
        self.refresh()
        n = self.x.shape[0]
        uniforms = torch.rand((n, self.num_chains, n), generator=self.generator, dtype=torch.float64)
        gumbel = -torch.log(-torch.log(uniforms))
        for i in range(n):
            self.remove(i)
            self.add(i, torch.argmax(self.conditional_logits(i) + gumbel[i], dim=1))

    def state(self) -> torch.Tensor:
        """The chains' current partitions as canonical labels ``(C, N)``."""
        return canonicalize(self.labels)

    def log_joint(self, labels: torch.Tensor) -> torch.Tensor:
        """``log p(c, x)`` (Ewens' formula plus the collapsed likelihood) of labels ``(..., N)``."""
        n = self.x.shape[0]
        flat = labels.reshape(-1, n)
        crp = ChineseRestaurantProcess(torch.tensor(self.alpha, dtype=torch.float64), n)
        out = crp.log_prob(flat) + self.likelihood.log_marginal(self.x, flat)
        return out.reshape(labels.shape[:-1])


def collapsed_gibbs(
    x: torch.Tensor,
    alpha: float,
    sigma_mu: float = 10.0,
    sigma_x: float = 1.0,
    likelihood=None,
    *,
    num_chains: int = 64,
    num_samples: int = 100,
    burn_in: int = 100,
    thin: int = 1,
    init="uniform",
    generator: torch.Generator | int | None = None,
) -> GibbsResult:
    """Sample the posterior over partitions ``p(c | x)`` of Eq. (1) in [1] by collapsed Gibbs.

    Runs ``burn_in + num_samples * thin`` sweeps of :class:`CollapsedGibbs` and keeps every
    ``thin``-th state after the burn-in. Cost per sweep ``O(N * C * N * D)`` (isotropic;
    ``D^3`` for Normal-inverse-Wishart) in ``N`` vectorised steps.

    :param torch.Tensor x: points ``(N, D)``.
    :param float alpha: CRP concentration.
    :param float sigma_mu: prior std of cluster means (ignored when ``likelihood`` is given).
    :param float sigma_x: std of points around their mean (ignored when ``likelihood`` is given).
    :param likelihood: a conjugate likelihood (default :class:`IsotropicGaussian`).
    :param int num_chains: independent chains ``C``.
    :param int num_samples: kept states per chain ``T``.
    :param int burn_in: sweeps discarded first (``>= 0``).
    :param int thin: keep one state every ``thin`` sweeps (``>= 1``).
    :param init: see :class:`CollapsedGibbs`.
    :param generator: a :class:`torch.Generator`, an ``int`` seed, or ``None`` (torch's global
        RNG, so :func:`pyro.set_rng_seed` controls it).
    :returns: :class:`GibbsResult` (labels ``(C, T, N)``).
    """
    x = _check_x(x)
    num_samples = check_int(num_samples, "num_samples", 1)
    burn_in = check_int(burn_in, "burn_in", 0)
    thin = check_int(thin, "thin", 1)
    likelihood = make_likelihood(likelihood, sigma_mu, sigma_x, x.shape[1])
    chains = CollapsedGibbs(x, alpha, likelihood, num_chains, init, generator)
    for _ in range(burn_in):
        chains.sweep()
    kept = []
    for _ in range(num_samples):
        for _ in range(thin):
            chains.sweep()
        kept.append(chains.state())
    labels = torch.stack(kept, dim=1)
    return GibbsResult(labels, chains.log_joint(labels))

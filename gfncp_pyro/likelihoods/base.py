"""The interface of the conjugate cluster likelihoods (:class:`ConjugateGaussian`), their
sufficient statistics and shared limits; the families are in :mod:`.isotropic` and :mod:`.niw`
(see the package docstring, which also gives the references).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from typing import NamedTuple

import torch

from ..partitions import check_canonical, num_clusters as count_clusters

__all__ = ["MAX_SUBSET_N", "MAX_STANDARDISED", "SIGMA_RANGE", "ConjugateGaussian", "BlockStatistics",
           "NormalPosterior", "NIWPosterior"]

MAX_SUBSET_N = 22
"""Largest set for :meth:`ConjugateGaussian.subset_log_marginals` (``2^22`` subsets)."""

MAX_STANDARDISED = 1e100
"""Largest coordinate of standardised points (:meth:`ConjugateGaussian.standardise`)."""

SIGMA_RANGE = (1e-150, 1e150)
"""Supported range of the isotropic family's ``sigma_mu``, ``sigma_x`` and of their ratio
(their squares must be finite, normal float64 numbers)."""

_LOG_2PI = math.log(2 * math.pi)


class BlockStatistics(NamedTuple):
    """Sufficient statistics of the blocks of a batch of labellings.

    :ivar counts: block sizes ``(B, K)`` in the dtype of ``x`` (0 for empty slots).
    :ivar means: block means ``(B, K, D)`` (0 for empty slots).
    :ivar scatter: within-block scatter, ``(B, K)`` (sum of squares, isotropic) or
        ``(B, K, D, D)`` (scatter matrices, Normal-inverse-Wishart).
    """

    counts: torch.Tensor
    means: torch.Tensor
    scatter: torch.Tensor


class NormalPosterior(NamedTuple):
    """Normal posterior ``N(loc, diag(scale^2))`` of each cluster mean, ``(B, K, D)`` each."""

    loc: torch.Tensor
    scale: torch.Tensor


class NIWPosterior(NamedTuple):
    """Posterior ``NIW(loc, kappa, nu, scale)`` of each cluster's mean and covariance.

    :ivar loc: ``mu_n`` ``(B, K, D)``.
    :ivar kappa: ``kappa_n = kappa0 + n`` ``(B, K)``.
    :ivar nu: ``nu_n = nu0 + n`` ``(B, K)``.
    :ivar scale: ``Psi_n`` ``(B, K, D, D)``.
    """

    loc: torch.Tensor
    kappa: torch.Tensor
    nu: torch.Tensor
    scale: torch.Tensor


def _in_sigma_range(value: float, name: str) -> float:
    low, high = SIGMA_RANGE
    if not low <= value <= high:
        raise ValueError(f"{name} = {value:.3g} is outside the supported range [{low:.0e}, {high:.0e}] "
                         "(its square must be a finite float64 number)")
    return value


def _float_above(value, name: str, lower: float = 0.0) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > {lower}, got {value!r}") from None
    if not math.isfinite(value) or value <= lower:
        raise ValueError(f"{name} must be a finite number > {lower}, got {value!r}")
    return value


class ConjugateGaussian(ABC):
    """Interface of a conjugate Gaussian cluster likelihood in ``D`` dimensions.

    Subclasses supply the scatter of a deviation (:meth:`_scatter_term`) and the closed forms in
    terms of block statistics; the batching, masking, validation and the subset table live here.
    Shapes: ``x`` is ``(N, D)`` (one set, shared by all labellings) or ``(B, N, D)``; ``labels``
    ``(N,)`` or ``(B, N)``; an optional boolean ``mask`` of the shape of ``labels`` marks the
    real points of padded sets (a prefix of each row; labels and points beyond it are ignored).
    Results carry the broadcast batch shape ``(B,)``, or ``()`` when neither ``x`` nor
    ``labels`` has a batch dimension.
    """

    dim: int

    # ------------------------------------------------------------ family-specific closed forms
    @abstractmethod
    def _scatter_term(self, delta: torch.Tensor) -> torch.Tensor:
        """Scatter contribution of deviations ``(..., D)``: ``(...)`` or ``(..., D, D)``."""

    @abstractmethod
    def log_marginal_from_stats(
        self, counts: torch.Tensor, means: torch.Tensor, scatter: torch.Tensor
    ) -> torch.Tensor:
        """``log p(x_S)`` of blocks with the given statistics, shape ``counts.shape``.

        Empty blocks (``counts == 0``) score 0.
        """

    @abstractmethod
    def posterior_from_stats(self, counts, means, scatter):
        """Posterior of the cluster parameters given block statistics (empty blocks: prior)."""

    @abstractmethod
    def _log_predictive_from_stats(
        self, x_new: torch.Tensor, counts: torch.Tensor, means: torch.Tensor, scatter: torch.Tensor
    ) -> torch.Tensor:
        """``log p(x_new | block)`` for ``x_new`` ``(B, 1, D)`` and blocks ``(B, K)``."""

    # ----------------------------------------------------------------------- validation
    def _check_x(self, x, name: str = "x", ranks=(2, 3)) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a floating-point torch.Tensor, got {got}")
        shapes = " or ".join({1: "(D,)", 2: "(N, D)", 3: "(B, N, D)"}[r] for r in ranks)
        if x.ndim not in ranks or x.shape[-1] != self.dim:
            raise ValueError(
                f"{name} must have shape {shapes} with D = {self.dim}, got {tuple(x.shape)}"
            )
        return x

    def _prepare(self, x, labels, mask):
        """Validate and flatten to ``x (B, N, D)``, ``labels (B, N)``, ``mask (B, N)``."""
        x = self._check_x(x)
        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels)
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
        if labels.ndim not in (1, 2):
            raise ValueError(f"labels must have shape (N,) or (B, N), got {tuple(labels.shape)}")
        n = x.shape[-2]
        if labels.shape[-1] != n:
            raise ValueError(
                f"labels have length {labels.shape[-1]} but x has N = {n} points; "
                "give one label per point"
            )
        labels = labels.to(device=x.device, dtype=torch.long)
        if mask is not None:
            mask = torch.as_tensor(mask, device=x.device)
            if mask.dtype != torch.bool or mask.shape != labels.shape:
                raise ValueError(
                    f"mask must be a boolean tensor of the shape of labels {tuple(labels.shape)}, "
                    f"got dtype {mask.dtype} and shape {tuple(mask.shape)}"
                )
            if bool((mask[..., 1:] & ~mask[..., :-1]).any()):
                raise ValueError("mask must mark a prefix of each row (True then False), "
                                 "i.e. real points first and padding on the right")
        check_canonical(labels, mask)
        try:
            batch = torch.broadcast_shapes(x.shape[:-2], labels.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"x batch shape {tuple(x.shape[:-2])} and labels batch shape "
                f"{tuple(labels.shape[:-1])} do not match"
            ) from None
        rows = batch.numel()
        x = x.expand(batch + x.shape[-2:]).reshape(rows, n, self.dim)
        labels = labels.expand(batch + (n,)).reshape(rows, n)
        if mask is None:
            mask = torch.ones_like(labels, dtype=torch.bool)
        else:
            mask = mask.expand(batch + (n,)).reshape(rows, n)
        finite = torch.isfinite(x).all(-1)
        if not bool((finite | ~mask).all()):
            raise ValueError("x contains NaN or infinite values at real points (padding is "
                             "ignored); remove or impute them first")
        return x, labels, mask, batch

    # --------------------------------------------------------------------- statistics
    def _statistics(self, x, labels, mask, num_slots: int | None) -> BlockStatistics:
        rows, n, dim = x.shape
        k_max = int(count_clusters(labels, mask).max()) if rows and n else 0
        if num_slots is None:
            num_slots = k_max
        elif isinstance(num_slots, bool) or not isinstance(num_slots, numbers.Integral) \
                or num_slots < k_max:
            raise ValueError(
                f"num_clusters must be an integer >= the largest number of clusters "
                f"({k_max}), got {num_slots!r}"
            )
        weight = mask.to(x.dtype)
        index = torch.where(mask, labels, torch.zeros_like(labels))
        x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
        counts = x.new_zeros(rows, num_slots).scatter_add_(1, index, weight)
        index_d = index.unsqueeze(-1).expand(rows, n, dim)
        sums = x.new_zeros(rows, num_slots, dim).scatter_add_(1, index_d, x)
        means = sums / counts.clamp(min=1).unsqueeze(-1)
        delta = (x - means.gather(1, index_d)) * weight.unsqueeze(-1)  # second pass
        term = self._scatter_term(delta)  # (rows, n) or (rows, n, D, D)
        event = term.shape[2:]
        flat = term.reshape(rows, n, event.numel())
        scatter = x.new_zeros(rows, num_slots, flat.shape[-1])
        scatter.scatter_add_(1, index.unsqueeze(-1).expand_as(flat), flat)
        return BlockStatistics(counts, means, scatter.reshape((rows, num_slots) + event))

    def block_statistics(self, x, labels, num_clusters=None, mask=None) -> BlockStatistics:
        """Counts, means and within-block scatter of every block (two passes, no loops).

        :param torch.Tensor x: points ``(N, D)`` or ``(B, N, D)``.
        :param torch.Tensor labels: canonical labels ``(N,)`` or ``(B, N)``.
        :param int num_clusters: number of slots ``K`` (default: the largest number of clusters
            in the batch); slots beyond a row's clusters are empty.
        :param torch.Tensor mask: optional boolean ``(B, N)``, True on real points.
        :returns: :class:`BlockStatistics` with leading shape ``(B, K)`` (``(K,)`` unbatched).
        """
        x, labels, mask, batch = self._prepare(x, labels, mask)
        stats = self._statistics(x, labels, mask, num_clusters)
        return BlockStatistics(*(t.reshape(batch + t.shape[1:]) for t in stats))

    def log_marginal(self, x, labels, mask=None) -> torch.Tensor:
        """``log p(x | c)`` with the cluster parameters integrated out (Eq. 1 in [1]).

        The sum over blocks of :meth:`log_marginal_from_stats`. Cost ``O(B N D)`` time and
        memory for the isotropic family; ``O(B N D^2)`` plus ``B K`` Cholesky factorisations
        ``(D, D)`` for the Normal-inverse-Wishart family. No Python loop.

        :param torch.Tensor x: points ``(N, D)`` (shared by all labellings) or ``(B, N, D)``.
        :param torch.Tensor labels: canonical labels ``(N,)`` or ``(B, N)``.
        :param torch.Tensor mask: optional boolean ``(B, N)``, True on real points.
        :returns: ``(B,)`` (``()`` when unbatched), dtype of ``x``.
        """
        x, labels, mask, batch = self._prepare(x, labels, mask)
        stats = self._statistics(x, labels, mask, None)
        return self.log_marginal_from_stats(*stats).sum(-1).reshape(batch)

    def posterior_params(self, x, labels, num_clusters: int | None = None, mask=None):
        """Posterior of each cluster's parameters given ``(x, c)``; empty slots get the prior.

        Arguments as in :meth:`block_statistics`. Returns :class:`NormalPosterior` (isotropic)
        or :class:`NIWPosterior` with leading shape ``(B, K)``.
        """
        return self.posterior_from_stats(*self.block_statistics(x, labels, num_clusters, mask))

    def log_predictive(self, x_new, x, labels, mask=None) -> torch.Tensor:
        """Log posterior predictive of ``x_new`` joining each cluster or opening a new one.

        Column ``k < K_b`` of row ``b`` is ``log p(x_new | x_{c = k})``, column ``K_b`` is the
        prior predictive (a new cluster) and columns beyond ``K_b`` (rows with fewer clusters
        than the batch maximum ``K``) are ``-inf``. This is the action space of Eqs. (9)-(10)
        and (21) in [1].

        :param torch.Tensor x_new: the new point ``(D,)`` or ``(B, D)``.
        :param torch.Tensor x: points ``(N, D)`` or ``(B, N, D)``.
        :param torch.Tensor labels: canonical labels ``(N,)`` or ``(B, N)``.
        :param torch.Tensor mask: optional boolean ``(B, N)``, True on real points.
        :returns: ``(B, K + 1)`` (``(K + 1,)`` when nothing is batched), dtype of ``x``.
        """
        x_new = self._check_x(x_new, "x_new", ranks=(1, 2))
        if not bool(torch.isfinite(x_new).all()):
            raise ValueError("x_new contains NaN or infinite values")
        x, labels, mask, batch = self._prepare(x, labels, mask)
        try:
            batch = torch.broadcast_shapes(batch, x_new.shape[:-1])
        except RuntimeError:
            raise ValueError(f"x_new batch shape {tuple(x_new.shape[:-1])} does not match the "
                             f"batch shape {tuple(batch)} of x and labels") from None
        rows = batch.numel()
        x = x.expand(rows, *x.shape[1:])
        labels, mask = labels.expand(rows, -1), mask.expand(rows, -1)
        x_new = x_new.to(x).expand(batch + (self.dim,)).reshape(rows, 1, self.dim)
        k = count_clusters(labels, mask)
        num_slots = int(k.max()) + 1 if rows else 1
        stats = self._statistics(x, labels, mask, num_slots)
        out = self._log_predictive_from_stats(x_new, *stats)
        beyond = torch.arange(num_slots, device=x.device) > k.unsqueeze(-1)
        out = out.masked_fill(beyond, -math.inf)
        return out.reshape(batch + (num_slots,))

    def log_predictive_from_stats(self, x_new, counts, means, scatter) -> torch.Tensor:
        """``log p(x_new | x_S)`` for blocks given by their statistics (empty blocks: the prior
        predictive ``log p(x_new)``), the per-step quantity of collapsed Gibbs sampling.

        :param torch.Tensor x_new: one point per row ``(B, D)``.
        :param counts: ``(B, K)``; :param means: ``(B, K, D)``; :param scatter: ``(B, K)`` or
            ``(B, K, D, D)`` as in :class:`BlockStatistics`.
        :returns: ``(B, K)``.
        """
        return self._log_predictive_from_stats(x_new.unsqueeze(-2), counts, means, scatter)

    # ----------------------------------------------------------------- standardisation
    def standardise(self, x: torch.Tensor):
        """An equivalent problem in well-scaled units: ``(x', likelihood', log_unit)`` with
        ``log p(x_S) = log p'(x'_S) - |S| log_unit`` for every subset ``S``, so the posterior over
        partitions is the same. The base class changes nothing (``log_unit = 0``); the Gaussian
        families centre on the prior mean where the family allows it and divide by a scale of
        the prior, in float64 (see the subclasses).

        :param torch.Tensor x: points ``(N, D)``.
        :raises ValueError: if the standardised points exceed :data:`MAX_STANDARDISED`.
        """
        return x, self, 0.0

    def _check_range(self, x: torch.Tensor, unit: str) -> None:
        largest = float(x.abs().max()) if x.numel() else 0.0
        if not largest <= MAX_STANDARDISED:
            raise ValueError(
                f"the points lie up to {largest:.3g} {unit}; the exact maths supports at most "
                f"{MAX_STANDARDISED:.0e} (squared distances must stay finite in float64). Rescale the "
                "data or choose hyper-parameters of its scale"
            )

    # --------------------------------------------------------------------- subset table
    def subset_log_marginals(self, x) -> torch.Tensor:
        """``log p(x_S)`` of every subset ``S`` of one set, taken as a single cluster.

        Entry ``s`` is the subset whose bitmask is ``s`` (bit ``i`` = point ``i``); entry 0 (the
        empty set) is 0. The statistics are built by doubling over the bits: the subsets whose
        highest bit is ``i`` are the subsets of points ``0..i-1`` plus point ``i``, updated with
        Welford's stable increment ``xbar' = xbar + (x_i - xbar)/n'``,
        ``S' = S + (n/n') (x_i - xbar)(x_i - xbar)^T``. Cost ``O(2^N D)`` time and memory for
        the isotropic family, ``O(2^N D^3)`` time and ``O(2^N D^2)`` memory for the
        Normal-inverse-Wishart family (its log-determinants); ``N`` sequential steps.

        :param torch.Tensor x: one set of points ``(N, D)``, ``N <= 22``.
        :returns: ``(2^N,)`` in the dtype of ``x``.
        """
        x = self._check_x(x, ranks=(2,))
        n = x.shape[0]
        if n > MAX_SUBSET_N:
            raise ValueError(f"x has N = {n} points; the subset table has 2^N entries and "
                             f"is limited to N <= {MAX_SUBSET_N}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values")
        counts = x.new_zeros(1)
        means = x.new_zeros(1, self.dim)
        scatter = self._scatter_term(x.new_zeros(1, self.dim))
        for i in range(n):
            grown = counts + 1
            delta = x[i] - means
            new_means = means + delta / grown.unsqueeze(-1)
            factor = (counts / grown).reshape((-1,) + (1,) * (scatter.ndim - 1))
            new_scatter = scatter + factor * self._scatter_term(delta)
            counts = torch.cat([counts, grown])
            means = torch.cat([means, new_means])
            scatter = torch.cat([scatter, new_scatter])
        return self.log_marginal_from_stats(counts, means, scatter)

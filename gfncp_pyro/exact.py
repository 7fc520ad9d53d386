"""The exact posterior over partitions of a small data set, by enumeration (Bell numbers).

For a CRP prior (Ewens EPPF) and a conjugate likelihood the log joint of a partition with
blocks ``S_1, ..., S_K`` is a sum over blocks::

    log p(c, x) = lgamma(alpha) - lgamma(alpha + N) + sum_k T[S_k],
    T[S] = log alpha + lgamma(|S|) + log p(x_S)            (T[empty] = 0)

so the ``2^N`` subset scores ``T`` are computed once
(:meth:`~gfncp_pyro.likelihoods.IsotropicGaussian.subset_log_marginals`) and every partition is
scored by table look-ups of its block bitmasks. All in float64.

Enumeration splits the points into a prefix ``0..p-1`` and a suffix of ``s = min(N - 1, 6)``
points: the partitions in lexicographic order are the prefixes' (Bell(p) of them) each followed
by every canonical continuation of its ``K`` open clusters, and those continuations and their
block bitmasks depend on ``K`` only. They are built once per ``K``; each prefix then costs two
block copies into the preallocated label matrix and ``K`` look-ups per row into reused
buffers (the blocks opened inside the suffix are scored once per ``K``). Peak memory is the
output (``B_N x N`` int64 labels and ``B_N`` float64 log-probabilities) plus ``O(2^N)``.

Inputs are standardised first (:meth:`~gfncp_pyro.likelihoods.ConjugateGaussian.standardise`:
divided by ``sigma_x``, or centred on ``mu0`` and divided by the scale of ``Psi``), which leaves
the posterior unchanged and keeps every finite input whose standardised coordinates stay within
:data:`~gfncp_pyro.likelihoods.MAX_STANDARDISED` exact; beyond that a ``ValueError`` names the
supported range.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

from ._checks import positive_float
from .likelihoods import IsotropicGaussian  # at import: a lazy import would cost the first call ~3 ms
from .partitions import MAX_ENUMERATION_N, bell_number, enumerate_partitions

__all__ = ["ExactPosterior", "exact_posterior", "subset_log_joint_table", "make_likelihood"]

_SUFFIX = 6
"""Points in the suffix of the enumeration (continuation tables of at most ~1e5 rows)."""


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


@functools.lru_cache(maxsize=8)
def _size_terms(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``|S|`` and ``lgamma(max(|S|, 1))`` of every subset ``(2^N,)`` float64 (cached for
    ``N <= 16``)."""
    subsets = torch.arange(1 << n, device=device)
    sizes = ((subsets.unsqueeze(-1) >> torch.arange(n, device=device)) & 1).sum(-1).double()
    return sizes, torch.lgamma(sizes.clamp(min=1))


def subset_log_joint_table(x: torch.Tensor, alpha: float, likelihood) -> torch.Tensor:
    """Block scores ``T[S] = log alpha + lgamma(|S|) + log p(x_S)`` for all ``2^N`` subsets.

    ``log p(x_S)`` is computed on the standardised problem (module docstring) and mapped back,
    ``log p(x_S) = log p'(x'_S) - |S| log_unit``.

    :param torch.Tensor x: points ``(N, D)``.
    :returns: float64 ``(2^N,)``, ``T[0] = 0``.
    :raises ValueError: for points outside the supported range, or if a score is not finite.
    """
    x = _check_x(x)
    alpha = _check_alpha(alpha)
    n = x.shape[0]
    x_std, standard, log_unit = likelihood.standardise(x)
    table = standard.subset_log_marginals(x_std).double()
    terms = _size_terms if n <= 16 else _size_terms.__wrapped__  # keep at most ~1 MiB per N
    sizes, log_gamma = terms(n, str(x.device))
    table = table - log_unit * sizes + math.log(alpha) + log_gamma
    table[0] = 0.0
    if not bool(torch.isfinite(table).all()):
        raise ValueError("the block scores log p(x_S) are not finite for these points and hyper-parameters; "
                         "rescale the data or choose hyper-parameters of its scale")
    return table


def _continuations(k_open: int, length: int) -> torch.Tensor:
    """Every canonical continuation, in lexicographic order, of a prefix with ``k_open`` open
    clusters by ``length`` more labels: ``(count, length)`` long. One tensor op per position."""
    labels = torch.zeros((1, 0), dtype=torch.long)
    k = torch.full((1,), k_open, dtype=torch.long)
    for _ in range(length):
        counts = k + 1
        parent = torch.repeat_interleave(torch.arange(labels.shape[0]), counts)
        child = torch.arange(parent.shape[0]) - (torch.cumsum(counts, 0) - counts)[parent]
        labels = torch.cat([labels[parent], child.unsqueeze(-1)], dim=-1)
        k = torch.maximum(k[parent], child + 1)
    return labels


def _block_masks(labels: torch.Tensor, width: int, first_bit: int) -> torch.Tensor:
    """Bitmask of every block ``(rows, width)`` of labels ``(rows, L)`` whose column ``t`` is
    point ``first_bit + t``."""
    bits = (1 << torch.arange(first_bit, first_bit + labels.shape[1])).expand_as(labels)
    return torch.zeros(labels.shape[0], width, dtype=torch.long).scatter_add_(1, labels, bits)


_SMALL_N = 9
"""Up to this N the whole enumeration plan (labels and block masks, at most Bell(9) = 21,147
rows) is kept between calls."""


class _Plan(NamedTuple):
    """What enumeration needs that depends on ``N`` only (cached by :func:`_plan`)."""

    prefix_len: int
    prefixes: torch.Tensor  # (Bell(p), p)
    k_prefix: list  # open clusters of each prefix
    prefix_masks: torch.Tensor  # (Bell(p), p)
    conts: dict  # K -> continuations (count, suffix)
    heads: dict  # K -> bitmasks of the suffix points joining the prefix's K blocks (count, K)
    tail_masks: dict  # K -> bitmasks of the blocks opened in the suffix (count, suffix)
    labels: torch.Tensor | None  # N <= _SMALL_N: all partitions (B_N, N)
    masks: torch.Tensor | None  # N <= _SMALL_N: their block bitmasks (B_N, N)


@functools.lru_cache(maxsize=16)
def _plan(n: int) -> _Plan:
    if n <= _SMALL_N:
        labels = enumerate_partitions(n)
        return _Plan(n, labels, [], labels, {}, {}, {}, labels, _block_masks(labels, n, 0))
    suffix = min(n - 1, _SUFFIX)
    p = n - suffix
    prefixes = enumerate_partitions(p)
    k_prefix = (prefixes.max(1).values + 1).tolist()
    prefix_masks = _block_masks(prefixes, p, 0)
    conts, heads, tail_masks = {}, {}, {}
    for k in sorted(set(k_prefix)):
        conts[k] = _continuations(k, suffix)
        masks = _block_masks(conts[k], k + suffix, p)
        heads[k] = masks[:, :k].contiguous()
        tail_masks[k] = masks[:, k:].contiguous()
    return _Plan(p, prefixes, k_prefix, prefix_masks, conts, heads, tail_masks, None, None)


def _enumerate_log_joint(table: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All partitions (lexicographic) and ``sum_k T[S_k]`` of each, by prefix and suffix."""
    plan = _plan(n)
    if plan.labels is not None:  # small N: two tensor operations
        return plan.labels.clone(), table.index_select(0, plan.masks.view(-1)).view(plan.masks.shape).sum(1)
    p = plan.prefix_len
    tails = {k: table[m].sum(1) for k, m in plan.tail_masks.items()}  # prefix-free blocks
    total = bell_number(n)
    labels = torch.empty((total, n), dtype=torch.long)
    log_joint = torch.empty(total, dtype=torch.float64)
    width = max(h.numel() for h in plan.heads.values())
    index_buf = torch.empty(width, dtype=torch.long)
    value_buf = torch.empty(width, dtype=torch.float64)
    row = 0
    for j, k in enumerate(plan.k_prefix):
        conts, heads = plan.conts[k], plan.heads[k]
        count = conts.shape[0]
        rows = slice(row, row + count)
        labels[rows, :p] = plan.prefixes[j]
        labels[rows, p:] = conts
        index = torch.bitwise_or(heads, plan.prefix_masks[j, :k], out=index_buf[: count * k].view(count, k))
        values = torch.index_select(table, 0, index.view(-1), out=value_buf[: count * k]).view(count, k)
        torch.sum(values, 1, out=log_joint[rows])
        log_joint[rows] += tails[k]
        row += count
    return labels, log_joint


def exact_posterior(
    x: torch.Tensor,
    alpha: float,
    sigma_mu: float = 10.0,
    sigma_x: float = 1.0,
    likelihood=None,
) -> ExactPosterior:
    """The exact posterior ``p(c | x)`` of Eq. (1) in [1] over all partitions of ``x``.

    :param torch.Tensor x: points ``(N, D)`` with ``1 <= N <= 12``, finite, within the range of
        :meth:`~gfncp_pyro.likelihoods.ConjugateGaussian.standardise` (e.g. ``|x| / sigma_x <=
        1e100`` for the isotropic family).
    :param float alpha: CRP concentration.
    :param float sigma_mu: prior std of cluster means (ignored when ``likelihood`` is given).
    :param float sigma_x: std of points around their mean (ignored when ``likelihood`` is given).
    :param likelihood: a conjugate likelihood from :mod:`gfncp_pyro.likelihoods`
        (default: :class:`IsotropicGaussian` with ``sigma_mu, sigma_x``).
    :returns: :class:`ExactPosterior` (float64; labels int64 in lexicographic order).
    :raises ValueError: for bad shapes, non-finite points, points or hyper-parameters outside
        the supported range.
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
    table = subset_log_joint_table(x, alpha, likelihood).cpu()
    labels, log_joint = _enumerate_log_joint(table, n)
    log_joint += math.lgamma(alpha) - math.lgamma(alpha + n)
    log_evidence = torch.logsumexp(log_joint, 0)
    log_joint -= log_evidence
    return ExactPosterior(labels.to(x.device), log_joint.to(x.device), log_evidence.to(x.device))

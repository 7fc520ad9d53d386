"""Exact posterior summaries beyond enumeration: a dynamic programme over the ``2^N`` subsets.

With block scores ``T[S]`` (see :func:`gfncp_pyro.exact.subset_log_joint_table`) the joint of a
partition is a product over its blocks, so the sum over all partitions of a subset ``S`` obeys

    Z(S) = sum_{R subset of S minus {l}} T[{l} u R] * Z(S minus {l} minus R),   l = min(S),

(the block holding the lowest point ``l`` is chosen first). Processing lowest points
``l = N-1, ..., 0`` every level visits the ``3^(N-1-l)`` pairs (S', R) with
``R subset of S' subset of {l+1, ..., N-1}``, grouped by ``|S'|`` so that each ``S'`` is one
dense row of its submasks: a row-wise log-sum-exp, no scatter. In total ``O(3^N)`` work and
``O(2^N)`` memory (cache-sized chunks bound the temporaries). From ``Z``:

* the log evidence ``log p(x) = log Z(all) + lgamma(alpha) - lgamma(alpha + N)``;
* the probability that a subset ``B`` is a block of the partition,
  ``T[B] Z(complement of B) / Z(all)``, hence the co-clustering matrix;
* the MAP partition (the same recursion with max instead of sum);
* exact i.i.d. posterior samples (choose the block of the lowest unassigned point, recurse).

Bell(16) ~ 1.0e10 partitions are out of reach of enumeration; ``3^16`` ~ 4.3e7 is not.

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

from .exact import _check_alpha, _check_x, make_likelihood, subset_log_joint_table
from .partitions import canonicalize

__all__ = ["SubsetPosterior", "subset_posterior", "MAX_DP_N"]

MAX_DP_N = 20
_ROW_BITS = 15  # chunks of about 2^15 terms (cache-sized temporaries)


class SubsetPosterior(NamedTuple):
    """Exact posterior summaries from the subset DP (float64).

    :ivar table: block scores ``T`` ``(2^N,)``.
    :ivar log_z: ``log Z(S)`` for every subset ``(2^N,)`` (``log Z(empty) = 0``).
    :ivar log_max: max over partitions of ``S`` of the log product of block scores ``(2^N,)``.
    :ivar best_block: for each non-empty ``S``, the bitmask of the MAP block of ``min(S)``.
    :ivar log_norm: ``lgamma(alpha) - lgamma(alpha + N)``.
    """

    table: torch.Tensor
    log_z: torch.Tensor
    log_max: torch.Tensor
    best_block: torch.Tensor
    log_norm: float

    @property
    def num_points(self) -> int:
        return int(self.table.numel()).bit_length() - 1

    @property
    def log_evidence(self) -> torch.Tensor:
        """``log p(x)``."""
        return self.log_z[-1] + self.log_norm

    def log_block_probabilities(self) -> torch.Tensor:
        """``log P(B is a block | x)`` for every subset ``B`` ``(2^N,)`` (-inf for ``B`` empty)."""
        full = self.table.numel() - 1
        subsets = torch.arange(full + 1, device=self.table.device)
        out = self.table + self.log_z[full ^ subsets] - self.log_z[full]
        out[0] = -math.inf
        return out

    def coclustering(self) -> torch.Tensor:
        """``P(c_i = c_j | x)`` ``(N, N)``: the sum of block probabilities over blocks holding both."""
        n = self.num_points
        prob = self.log_block_probabilities().exp()
        members = _members_matrix if n <= 16 else _members_matrix.__wrapped__  # cache <= 8 MiB each
        member = members(n, str(self.table.device))  # (2^N, N) float64
        return member.T @ (prob.unsqueeze(-1) * member)

    def map_partition(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The MAP partition (canonical labels ``(N,)``) and its log posterior probability."""
        n = self.num_points
        labels = torch.empty(n, dtype=torch.long)
        remaining, k = (1 << n) - 1, 0
        best = self.best_block.tolist()
        while remaining:
            block = best[remaining]
            for i in range(n):
                if block >> i & 1:
                    labels[i] = k
            remaining &= ~block
            k += 1
        return labels, self.log_max[-1] - self.log_z[-1]

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact i.i.d. posterior samples, canonical labels ``(num_samples, N)``.

        Each sample chooses the block of its lowest unassigned point among the subsets of the
        remaining points (probability ``T[B] Z(rest) / Z(remaining)``), then recurses: at most
        ``N`` vectorised draws per sample.
        """
        n = self.num_points
        out = torch.empty((num_samples, n), dtype=torch.long)
        table, log_z = self.table.cpu(), self.log_z.cpu()
        for s in range(num_samples):
            remaining, k = (1 << n) - 1, 0
            while remaining:
                low = remaining & -remaining
                rest = remaining ^ low
                subs = _submasks(rest)
                logits = table[subs | low] + log_z[rest ^ subs]
                pick = torch.multinomial(torch.softmax(logits, 0), 1, generator=generator)
                block = int(subs[pick]) | low
                for i in range(n):
                    if block >> i & 1:
                        out[s, i] = k
                remaining ^= block
                k += 1
        return canonicalize(out)


def _bit_matrix(size: int, n: int, device) -> torch.Tensor:
    subsets = torch.arange(size, device=device)
    return (subsets.unsqueeze(-1) >> torch.arange(n, device=device)) & 1


@functools.lru_cache(maxsize=4)
def _members_matrix(n: int, device: str) -> torch.Tensor:
    """Membership of point ``i`` in subset ``s`` ``(2^N, N)`` float64 (cached for ``N <= 16``,
    read-only)."""
    return _bit_matrix(1 << n, n, device).double()


def _submasks(mask: int) -> torch.Tensor:
    """All submasks of ``mask`` (including 0 and ``mask``) as a tensor."""
    bits = [1 << i for i in range(mask.bit_length()) if mask >> i & 1]
    if not bits:
        return torch.zeros(1, dtype=torch.long)
    member = _bit_matrix(1 << len(bits), len(bits), None)
    return member @ torch.tensor(bits, dtype=torch.long)


def _members(m: int, size: int, offset: int) -> torch.Tensor:
    """The subsets ``S'`` of bits ``offset .. offset + m - 1`` with ``size`` members, as the
    bit values of their members ``(G, size)`` (lexicographic)."""
    if size == 0:
        return torch.zeros((1, 0), dtype=torch.long)
    member = _bit_matrix(1 << m, m, None).bool()  # (2^m, m); torch.combinations is O(m^size)
    member = member[member.sum(1) == size]
    values = (1 << (torch.arange(m) + offset)).expand(member.shape[0], m)
    return values[member].reshape(-1, size)  # row-major: members in increasing order


def _level(table, log_z, log_max, best_block, low: int, n: int) -> None:
    """Fill ``Z``, the max-product and the MAP block of every ``S`` with ``min(S) = low``.

    ``S = {low} u S'``; grouping the ``S'`` by size makes each one's terms a dense row of its
    ``2^|S'|`` submasks ``R`` (the members picked by the bits of the column index: one integer
    matrix product), so the sums are row-wise ``logsumexp`` (stable by construction) and the
    maxima row-wise ``max``. Rows go in chunks of about ``2^_ROW_BITS`` terms, so every
    temporary stays small and cache-resident.
    """
    m, low_bit = n - 1 - low, 1 << low
    for size in range(m + 1):
        members = _members(m, size, low + 1)
        picks = _bit_matrix(1 << size, size, None).T.contiguous()  # (size, 2^size)
        step = max(1, (1 << _ROW_BITS) >> size)
        for start in range(0, members.shape[0], step):
            chunk = members[start : start + step]
            r = chunk @ picks if size else torch.zeros((chunk.shape[0], 1), dtype=torch.long)
            sp = chunk.sum(1)
            rest = sp.unsqueeze(-1) - r  # S' minus R
            head = table[r + low_bit]
            targets = sp + low_bit
            log_z[targets] = _logsumexp_rows(head + log_z[rest])
            best, arg = torch.max(head + log_max[rest], 1)
            log_max[targets] = best
            best_block[targets] = r.gather(1, arg.unsqueeze(-1)).squeeze(-1) + low_bit


_PADDED_BITS = 8
"""Levels with ``m = N - 1 - low <= _PADDED_BITS`` run as one padded ``(2^m, 2^m)`` block."""


@functools.lru_cache(maxsize=None)
def _padded_level(m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tensors of a small level of ``m`` free bits, in local bit positions (cached: they
    depend on ``m`` only, so repeated DPs and small ``N`` pay no set-up).

    Row ``i`` is ``S'``, column ``j`` is ``R``, a submask of ``S'`` where ``j & ~i == 0``; the
    other columns point at ``R = empty`` and get ``-inf``.

    :returns: ``heads (2^m * 2^m,)`` (``R``), ``rests (2^m * 2^m,)`` (``S' minus R``), both
        flat, and ``pad (2^m, 2^m)`` float64 (0 or ``-inf``).
    """
    i = torch.arange(1 << m).unsqueeze(-1)
    j = torch.arange(1 << m).unsqueeze(0)
    inside = (j & ~i) == 0
    r = torch.where(inside, j, 0)
    pad = torch.zeros(inside.shape, dtype=torch.float64).masked_fill_(~inside, -math.inf)
    return r.reshape(-1), (i - r).reshape(-1), pad


def _logsumexp_rows(values: torch.Tensor) -> torch.Tensor:
    """Row-wise log-sum-exp of ``values`` ``(rows, cols)``, overwriting it. Every row holds a
    finite entry here (the term ``R = empty``), so shifting by the row maximum is safe; five
    in-place kernels instead of ``torch.logsumexp``'s general (and, for small rows, slower)
    path."""
    top = values.amax(1, keepdim=True)
    return values.sub_(top).exp_().sum(1).log_().add_(top.squeeze(1))


def _padded(table, log_z, log_max, best_block, low: int, n: int) -> None:
    """:func:`_level` for a small level: one padded block, a handful of tensor operations.

    The subsets of this level and the ones it reads are every ``2^(low+1)``-th entry of the
    tables (from ``2^low`` for ``{low} u R``, from 0 for ``S' minus R``), so strided views turn
    the local indices of :func:`_padded_level` into global ones for free.
    """
    m, low_bit, step = n - 1 - low, 1 << low, 1 << (low + 1)
    heads, rests, pad = _padded_level(m)
    shape = pad.shape
    head = table[low_bit::step].index_select(0, heads).view(shape).add_(pad)
    log_z[low_bit::step] = _logsumexp_rows(log_z[::step].index_select(0, rests).view(shape).add_(head))
    best, arg = torch.max(log_max[::step].index_select(0, rests).view(shape).add_(head), 1)
    log_max[low_bit::step] = best
    best_block[low_bit::step] = arg.mul_(step).add_(low_bit)  # the best column is R (local), never a pad


def subset_posterior(
    x: torch.Tensor,
    alpha: float,
    sigma_mu: float = 10.0,
    sigma_x: float = 1.0,
    likelihood=None,
) -> SubsetPosterior:
    """Run the subset DP for the CRP mixture of Eq. (1) in [1] on one data set.

    :param torch.Tensor x: points ``(N, D)``, ``1 <= N <= 20`` (N = 16: about 1 s; N = 18:
        about 10 s on 2 CPU cores; memory ``O(2^N)``).
    :param float alpha: CRP concentration.
    :param likelihood: conjugate likelihood (default isotropic Gaussian with ``sigma_mu``,
        ``sigma_x``).
    :returns: :class:`SubsetPosterior`.
    """
    x = _check_x(x)
    n, dim = x.shape
    if n > MAX_DP_N:
        raise ValueError(f"x has N={n} points; the subset DP is O(3^N) and handles N <= {MAX_DP_N}")
    alpha = _check_alpha(alpha)
    table = subset_log_joint_table(x, alpha, make_likelihood(likelihood, sigma_mu, sigma_x, dim)).cpu()
    size = 1 << n
    log_z = torch.full((size,), -math.inf, dtype=torch.float64)
    log_max = torch.full((size,), -math.inf, dtype=torch.float64)
    best_block = torch.zeros(size, dtype=torch.long)
    log_z[0] = log_max[0] = 0.0
    for low in range(n - 1, -1, -1):
        (_padded if n - 1 - low <= _PADDED_BITS else _level)(table, log_z, log_max, best_block, low, n)
    return SubsetPosterior(
        table=table,
        log_z=log_z,
        log_max=log_max,
        best_block=best_block,
        log_norm=math.lgamma(alpha) - math.lgamma(alpha + n),
    )

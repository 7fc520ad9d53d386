"""The Chinese Restaurant Process as a Pyro distribution over partitions.

The CRP with concentration ``alpha`` is the prior ``p(c_{1:N} | alpha_1)`` of Eq. (1) in [1]:
customer ``i`` (0-based) opens a new table with probability ``alpha / (alpha + i)`` and joins
table ``k`` with probability ``n_k / (alpha + i)``. The probability of a partition with ``K``
blocks of sizes ``n_1, ..., n_K`` is Ewens' sampling formula (the EPPF, [2] Eq. 3.5 and [3]):

    p(c) = alpha^K Gamma(alpha) / Gamma(alpha + N) * prod_k Gamma(n_k),

which depends only on the block sizes, so the prior is exchangeable (Eq. (2) in [1]). The
number of blocks ``K`` is a sum of independent Bernoulli(``alpha / (alpha + i)``) variables
and ``P(K = k) = |s(N, k)| alpha^k Gamma(alpha) / Gamma(alpha + N)`` with the unsigned Stirling
numbers of the first kind ``|s(N, k)|``.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
[2] J. Pitman. Combinatorial Stochastic Processes. Lecture Notes in Mathematics 1875,
    Springer, 2006.
[3] W. J. Ewens. The sampling theory of selectively neutral alleles. Theoretical Population
    Biology 3(1), 1972.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from ..partitions import (
    PAD_LABEL,
    check_canonical,
    cluster_sizes,
    enumerate_partitions,
    lengths_to_mask,
    num_clusters,
)
from .constraints import canonical_partition

__all__ = ["ChineseRestaurantProcess", "sample_crp_labels"]


def _describe_bad(values: torch.Tensor, bad: torch.Tensor) -> str:
    shown = values[bad].reshape(-1)[:10].tolist()
    return f"{shown}{' ...' if int(bad.sum()) > 10 else ''}"


def _check_alpha(alpha: torch.Tensor) -> None:
    bad = ~(torch.isfinite(alpha) & (alpha > 0))
    if bool(bad.any()):
        raise ValueError(
            "alpha (the CRP concentration) must be positive and finite, got "
            f"{_describe_bad(alpha, bad)}; pass alpha > 0 (e.g. 1.0)"
        )


def _as_float_tensor(alpha, device=None) -> torch.Tensor:
    if isinstance(alpha, torch.Tensor):
        if alpha.dtype == torch.bool or alpha.is_complex():
            raise ValueError(f"alpha must be a real tensor or number, got dtype {alpha.dtype}")
        return alpha if alpha.is_floating_point() else alpha.to(torch.get_default_dtype())
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"alpha must be a positive number or a float tensor, got {alpha!r}")
    # A Python number has double precision: keep it (lgamma(alpha) - lgamma(alpha + N) cancels
    # catastrophically in float32 for large alpha).
    return torch.tensor(float(alpha), dtype=torch.float64, device=device)


def _check_num_points(num_points) -> int:
    integral = isinstance(num_points, numbers.Integral) and not isinstance(num_points, bool)
    if not integral or num_points < 1:
        raise ValueError(
            f"num_points must be a positive integer (the number of points N), got {num_points!r}"
        )
    return int(num_points)


def _pointer_roots(pointer: torch.Tensor) -> torch.Tensor:
    """Follow pointers ``(B, N)`` with ``pointer[..., i] <= i`` to their fixed points.

    After ``r`` rounds of ``p <- p[p]`` every entry is its ``2^r``-th ancestor (or its root).
    Chains have at most ``N - 1`` links, so ``ceil(log2(N - 1))`` rounds reach every root.
    """
    n = pointer.shape[-1]
    for _ in range(max(n - 2, 0).bit_length()):
        pointer = pointer.gather(-1, pointer)
    return pointer


def sample_crp_labels(
    alpha: torch.Tensor | float,
    lengths: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact, fully vectorised CRP draws for a batch of sets of different sizes.

    Every customer ``i`` (0-based) draws a *pointer*: itself (a new table) with probability
    ``alpha / (alpha + i)``, otherwise a uniformly random earlier customer ``j < i``, whose
    table it joins. Following pointers to their fixed point (pointer jumping,
    ``p <- p[p]`` for ``ceil(log2(N - 1))`` rounds) gives each customer the first customer of its
    table; numbering these by first appearance gives canonical labels.

    *Proof of exactness.* Given customers ``0..i-1`` seated, a uniform earlier customer sits at
    table ``k`` with probability ``n_k / i``, so customer ``i`` joins ``k`` with probability
    ``(i / (alpha + i)) (n_k / i) = n_k / (alpha + i)`` and opens a table with
    ``alpha / (alpha + i)``: the CRP conditional. Pointers are drawn independently, so the
    joint law is the product of these conditionals, i.e. the CRP.

    Random numbers are drawn in ``alpha``'s dtype on ``alpha``'s device (``lengths``' device
    when ``alpha`` is a number; the generator must live there too). The only loop is over the
    ``ceil(log2(N_max - 1))`` jumping rounds, not over points.

    :param alpha: concentration, a float tensor ``(B,)`` or anything broadcastable to it
        (e.g. a scalar); every entry positive and finite.
    :param torch.Tensor lengths: integer set sizes ``(B,)``, each ``>= 0``.
    :param torch.Generator generator: source of randomness (default: torch's global RNG).
    :returns: canonical labels, ``torch.long``, shape ``(B, N_max)`` with ``N_max =
        lengths.max()``, :data:`~gfncp_pyro.partitions.PAD_LABEL` beyond each set's length.
    :raises ValueError: on a non-positive or non-finite ``alpha``, or malformed ``lengths``.
    """
    lengths = torch.as_tensor(lengths)
    alpha = _as_float_tensor(alpha, device=lengths.device)
    _check_alpha(alpha)
    lengths = lengths.to(alpha.device)
    if lengths.is_floating_point() or lengths.dtype == torch.bool or lengths.ndim != 1:
        raise ValueError(
            f"lengths must be a 1-D integer tensor of set sizes (B,), got dtype {lengths.dtype} "
            f"and shape {tuple(lengths.shape)}"
        )
    if bool((lengths < 0).any()):
        raise ValueError(f"lengths must be non-negative set sizes, got {lengths.tolist()}")
    try:
        alpha = torch.broadcast_to(alpha, lengths.shape)
    except RuntimeError as error:
        raise ValueError(
            f"alpha of shape {tuple(alpha.shape)} does not broadcast to lengths' shape "
            f"{tuple(lengths.shape)}; pass one alpha per set or a scalar"
        ) from error
    batch = lengths.shape[0]
    n_max = int(lengths.max()) if batch else 0
    dtype, device = alpha.dtype, alpha.device
    position = torch.arange(n_max, device=device)
    i = position.to(dtype)
    opens = torch.rand((batch, n_max), generator=generator, dtype=dtype, device=device)
    opens = (opens * (alpha.unsqueeze(-1) + i) < alpha.unsqueeze(-1)) | (position == 0)
    earlier = torch.rand((batch, n_max), generator=generator, dtype=dtype, device=device)
    earlier = torch.minimum(torch.floor(earlier * i).long(), (position - 1).clamp(min=0))
    root = _pointer_roots(torch.where(opens, position, earlier))
    table = torch.cumsum(root == position, dim=-1) - 1  # tables numbered by their first customer
    labels = table.gather(-1, root)
    return torch.where(lengths_to_mask(lengths, n_max), labels, PAD_LABEL)


@lru_cache(maxsize=16)
def _log_stirling_first_kind(n: int) -> torch.Tensor:
    """``log |s(n, k)|`` for ``k = 0..n`` in float64 (``-inf`` where zero).

    Recurrence ``|s(m + 1, k)| = m |s(m, k)| + |s(m, k - 1)|`` from ``|s(1, 1)| = 1`` in log
    space, one vector operation per ``m`` (computed once per ``n >= 1`` and cached).
    """
    row = torch.full((n + 1,), -math.inf, dtype=torch.float64)
    row[1] = 0.0  # |s(1, 1)| = 1
    for m in range(1, n):
        shifted = torch.cat([row.new_full((1,), -math.inf), row[:-1]])
        row = torch.logaddexp(row + math.log(m), shifted)
    return row


class ChineseRestaurantProcess(TorchDistribution):
    """Chinese Restaurant Process over partitions of ``num_points`` points (Eq. (1) in [1]).

    One event is a whole partition: canonical labels of shape ``(N,)``. The batch shape is the
    shape of ``alpha``. ``log_prob`` is Ewens' formula; ``sample`` is the exact vectorised
    pointer sampler :func:`sample_crp_labels`; ``enumerate_support`` lists all Bell(N)
    partitions (``N <= 12``).

    :param alpha: concentration ``> 0``, a float tensor of any shape (the batch shape) or a
        number (kept as a float64 tensor: a Python float has double precision).
    :param int num_points: ``N >= 1``, always validated.
    :param validate_args: as in torch; when on, ``alpha`` must be positive and finite and values
        given to ``log_prob`` must be canonical (``ValueError`` otherwise).
    """

    arg_constraints = {"alpha": constraints.positive}
    support = canonical_partition
    has_enumerate_support = True

    def __init__(self, alpha, num_points: int, validate_args=None):
        self.num_points = _check_num_points(num_points)
        self.alpha = _as_float_tensor(alpha)
        validate = self._validate_args if validate_args is None else validate_args
        if validate:
            _check_alpha(self.alpha)
        event_shape = torch.Size((self.num_points,))
        super().__init__(self.alpha.shape, event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ChineseRestaurantProcess, _instance)
        batch_shape = torch.Size(batch_shape)
        new.num_points = self.num_points
        new.alpha = self.alpha.expand(batch_shape)
        super(ChineseRestaurantProcess, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def _validate_sample(self, value: torch.Tensor) -> None:
        try:
            torch.broadcast_shapes(value.shape, self.batch_shape + self.event_shape)
        except RuntimeError as error:
            raise ValueError(
                f"value of shape {tuple(value.shape)} does not broadcast with batch_shape + "
                f"event_shape {tuple(self.batch_shape + self.event_shape)}"
            ) from error
        if value.is_floating_point():
            if not bool(canonical_partition.check(value).all()):
                raise ValueError(
                    "value must hold integer labels in canonical form; got floating-point values "
                    "that are not canonical. Use gfncp_pyro.partitions.canonicalize() first."
                )
        else:
            check_canonical(value, name="value (partition labels)")

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Ewens' formula ``K log alpha + lgamma(alpha) - lgamma(alpha + N) + sum_k lgamma(n_k)``.

        :param torch.Tensor value: canonical labels ``(..., N)``; ``...`` broadcasts with the
            batch shape. Without validation non-canonical labels give meaningless numbers.
        :returns: log-probabilities of shape ``broadcast(..., batch_shape)`` in alpha's dtype
            (computed in float64).
        """
        n = self.num_points
        if not isinstance(value, torch.Tensor) or value.ndim < 1 or value.shape[-1] != n:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
            raise ValueError(f"value must be a tensor of labels (..., {n}), got {shape}")
        if self._validate_args:
            self._validate_sample(value)
        labels = value.long()
        # Ewens' terms are sums of lgamma values of size N log N that cancel: computed in
        # float64 whatever alpha's dtype, and returned in alpha's dtype.
        alpha = self.alpha.double()
        sizes = cluster_sizes(labels, num_slots=n).to(alpha.dtype)
        log_sizes = torch.lgamma(sizes.clamp(min=1)).sum(-1)  # empty slots add lgamma(1) = 0
        k = num_clusters(labels).to(alpha.dtype)
        log_prob = k * torch.log(alpha) + torch.lgamma(alpha) - torch.lgamma(alpha + n) + log_sizes
        return log_prob.to(self.alpha.dtype)

    def sample(
        self, sample_shape=torch.Size(), generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw partitions with :func:`sample_crp_labels`.

        :param sample_shape: leading sample dimensions.
        :param torch.Generator generator: optional source of randomness on alpha's device; the
            default (``None``) uses torch's global RNG, so ``pyro.set_rng_seed`` applies as for
            every Pyro distribution. Pyro itself never passes it; it is for direct calls.
        :returns: canonical labels ``sample_shape + batch_shape + (N,)``, ``torch.long``.
        """
        shape = self._extended_shape(sample_shape)
        alpha = self.alpha.detach().expand(shape[:-1]).reshape(-1)
        lengths = torch.full(alpha.shape, self.num_points, dtype=torch.long, device=alpha.device)
        if alpha.numel() == 0:
            return torch.empty(shape, dtype=torch.long, device=alpha.device)
        return sample_crp_labels(alpha, lengths, generator=generator).reshape(shape)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        """All Bell(N) partitions, shape ``(Bell(N),) + batch_shape + (N,)`` (or with singleton
        batch dims when ``expand=False``), in lexicographic order. Requires ``N <= 12``."""
        values = enumerate_partitions(self.num_points, device=self.alpha.device)
        count = values.shape[0]
        values = values.reshape((count,) + (1,) * len(self.batch_shape) + self.event_shape)
        if expand:
            values = values.expand((count,) + self.batch_shape + self.event_shape)
        return values

    @property
    def expected_num_clusters(self) -> torch.Tensor:
        """``E[K] = sum_{i=0}^{N-1} alpha / (alpha + i)``, shape ``batch_shape``."""
        alpha = self.alpha.unsqueeze(-1)
        i = torch.arange(self.num_points, dtype=alpha.dtype, device=alpha.device)
        return (alpha / (alpha + i)).sum(-1)

    def num_clusters_log_prob(self, k) -> torch.Tensor:
        """``log P(K = k) = log |s(N, k)| + k log alpha + lgamma(alpha) - lgamma(alpha + N)``.

        :param k: integer tensor (or int) of cluster counts; broadcasts with the batch shape.
            Counts outside ``1..N`` have log-probability ``-inf``.
        :returns: tensor of shape ``broadcast(k.shape, batch_shape)`` in alpha's dtype (computed
            in float64, whose terms of size ``N log N`` would lose digits in float32).
        """
        alpha, n = self.alpha.double(), self.num_points
        k = torch.as_tensor(k, device=alpha.device)
        if k.is_floating_point() or k.dtype == torch.bool:
            raise ValueError(f"k must be an integer tensor of cluster counts, got dtype {k.dtype}")
        table = _log_stirling_first_kind(n).to(device=alpha.device)
        log_stirling = torch.where((k >= 1) & (k <= n), table[k.clamp(0, n)], -math.inf)
        rising = torch.lgamma(alpha + n) - torch.lgamma(alpha)
        log_prob = log_stirling + k.double() * torch.log(alpha) - rising
        return log_prob.to(self.alpha.dtype)

    def __repr__(self) -> str:
        shape = tuple(self.alpha.shape)
        return f"ChineseRestaurantProcess(alpha: {shape}, num_points: {self.num_points})"

"""Random set sizes, data orders, exploration partitions and step subsets for training batches
(Alg. 1 in [1]).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import torch

from .._checks import check_lengths, check_positive_int, make_generator
from ..partitions import PAD_LABEL, lengths_to_mask, sample_uniform_partitions

__all__ = ["random_lengths", "random_orders", "prefix_shuffled_orders", "exploration_mask", "with_exploration",
           "random_step_subset"]


def random_lengths(batch_size: int, n_min: int, n_max: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set sizes ``(B,)`` drawn uniformly from ``{n_min, ..., n_max}`` (App. A.1 in [1])."""
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
    return torch.randint(n_min, n_max + 1, (batch_size,), generator=generator)


def random_orders(lengths: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One uniformly random order per set, ``(B, N_max)``.

    Row ``b`` starts with a permutation of ``0..N_b-1``; padded positions follow in place
    (``orders[b, t] = t`` for ``t >= N_b``). Drawn by sorting random keys, no Python loop.
    """
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    n_max = int(lengths.max())
    mask = lengths_to_mask(lengths, n_max)
    keys = torch.rand((lengths.shape[0], n_max), generator=generator, dtype=torch.float64)
    keys = torch.where(mask, keys, 2.0 + torch.arange(n_max, dtype=torch.float64))
    return torch.argsort(keys, dim=1)


def prefix_shuffled_orders(orders: torch.Tensor, lengths: torch.Tensor,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Orders that share a suffix with ``orders`` ``(B, N_max)``: per set a cut ``t`` uniform on
    ``{2, ..., N_b}`` (``1`` for ``N_b = 1``), the first ``t`` entries of the row in a uniformly
    random order and the rest (padding included) in place.

    Two orders of one set that agree from position ``t`` on visit the same sets of assigned
    points after every step ``>= t``, so for one partition their trajectories differ only in the
    first ``t`` steps: ``log q(c | rho) - log q(c | rho')`` is the order dependence of the
    marginal of the prefix ``c[rho[:t]]``. Drawn by sorting random keys (one cut and ``N_max``
    keys per set), no Python loop.
    """
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    batch, n_max = orders.shape
    low = torch.full_like(lengths, 2).minimum(lengths)
    cut = low + (torch.rand(batch, generator=generator, dtype=torch.float64) * (lengths - low + 1)).long()
    cut = cut.minimum(lengths)
    position = torch.arange(n_max, dtype=torch.float64)
    keys = torch.rand((batch, n_max), generator=generator, dtype=torch.float64)
    keys = torch.where(position < cut.unsqueeze(1), keys, 2.0 + position)
    return orders.gather(1, torch.argsort(keys, dim=1).to(orders.device))


def exploration_mask(batch_size: int, beta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B,)`` bool, ``True`` for the sets whose labels are replaced by uniform partitions.

    Alg. 1 in [1] draws ``l ~ Bernoulli(beta)`` once per iteration; we draw it per set, the
    batched equivalent (each set is a data-policy set with probability ``beta``).
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    return torch.rand(batch_size, generator=generator, dtype=torch.float64) >= beta


def with_exploration(
    labels: torch.Tensor, lengths: torch.Tensor, explore: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace the labels of the sets flagged in ``explore`` by partitions drawn uniformly over
    all set partitions of their size (Alg. 1, line 9 in [1]; Stam's algorithm, see
    :func:`~gfncp_pyro.partitions.sample_uniform_partitions`)."""
    uniform = sample_uniform_partitions(lengths, generator=generator).to(labels.device)
    if uniform.shape[1] < labels.shape[1]:
        pad = torch.full((labels.shape[0], labels.shape[1] - uniform.shape[1]), PAD_LABEL, device=labels.device)
        uniform = torch.cat([uniform, pad], dim=1)
    return torch.where(explore.to(labels.device).unsqueeze(-1), uniform, labels)


def random_step_subset(
    lengths: torch.Tensor,
    num_steps: int,
    generator: torch.Generator | int | None = None,
    *,
    n_max: int | None = None,
) -> torch.Tensor:
    """Random steps for unbiased estimates of sums over steps (Eqs. 11 and 24 in [1]).

    Set ``b`` gets ``S_b = min(num_steps, N_b - 1)`` distinct steps drawn uniformly among
    ``t = 1, ..., N_b - 1`` (the steps with a flow-matching residual; step 0's policy is
    deterministic). Each step is then selected with probability ``S_b / (N_b - 1)``, so
    ``(N_b - 1) / S_b`` times a sum over the selected steps is unbiased for the sum over all
    of them: see :func:`~gfncp_pyro.policy.teacher_force`'s ``step_subset``.

    :param torch.Tensor lengths: set sizes ``N_b >= 1``, ``(B,)`` integer.
    :param int num_steps: steps per set (fewer when a set has fewer).
    :param generator: a :class:`torch.Generator` (drawn on its device, result moved to
        ``lengths``' device), an ``int`` seed, or ``None`` (torch's global RNG, which
        ``pyro.set_rng_seed`` controls).
    :param int n_max: width of the result (default ``max(lengths)``, as for a batch padded to
        its longest set); extra columns are ``False`` and do not change the draw.
    :returns: ``(B, N_max)`` bool, ``True`` on the selected steps.
    """
    lengths = check_lengths(lengths)
    num_steps = check_positive_int(num_steps, "num_steps")
    longest = int(lengths.max())
    width = longest if n_max is None else check_positive_int(n_max, "n_max")
    if width < longest:
        raise ValueError(f"n_max ({width}) must be at least the longest set ({longest})")
    generator = make_generator(generator)
    keys = torch.rand((lengths.shape[0], longest), generator=generator, dtype=torch.float64,
                      device=generator.device).to(lengths.device)
    steps = torch.arange(longest, device=lengths.device)
    eligible = (steps >= 1) & (steps < lengths.unsqueeze(-1))
    rank = torch.where(eligible, keys, 2.0).argsort(1).argsort(1)  # eligible steps rank first
    count = (lengths.long() - 1).clamp(max=num_steps)
    subset = rank < count.unsqueeze(-1)
    return torch.cat([subset, subset.new_zeros(subset.shape[0], width - longest)], 1)

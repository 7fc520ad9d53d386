"""Random set sizes, data orders and exploration partitions for training batches (Alg. 1 in [1]).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import torch

from ..partitions import PAD_LABEL, lengths_to_mask, sample_uniform_partitions

__all__ = ["random_lengths", "random_orders", "exploration_mask", "with_exploration"]


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

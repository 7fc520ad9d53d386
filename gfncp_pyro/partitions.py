"""Set partitions as canonical label vectors (restricted growth strings).

A partition of ``N`` points is stored as a label vector ``c`` of shape ``(N,)`` in *canonical
form*: ``c[0] == 0`` and every new cluster takes the next unused integer, i.e.
``c[i] <= max(c[:i]) + 1``. This is exactly the action space of NCP and GFNCP (Eqs. 9-10 and
21 in [1]): point ``n`` joins one of the ``K`` open clusters or opens cluster ``K``.

Batches of sets with different sizes are padded on the right: ``labels`` has shape
``(B, N_max)``, a boolean ``mask`` of the same shape is ``True`` on real points (always a
prefix of each row) and padded positions hold :data:`PAD_LABEL`.

All functions are vectorised over the batch; none loops in Python over points or clusters.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Sequence

import torch

__all__ = [
    "PAD_LABEL",
    "MAX_ENUMERATION_N",
    "bell_number",
    "log_bell_number",
    "canonicalize",
    "is_canonical",
    "check_canonical",
    "num_clusters",
    "cluster_sizes",
    "labels_to_blocks",
    "blocks_to_labels",
    "enumerate_partitions",
    "lengths_to_mask",
    "sample_uniform_partitions",
]

PAD_LABEL = -1
"""Label stored at padded positions of a batch."""

MAX_ENUMERATION_N = 12
"""Largest ``n`` for which :func:`enumerate_partitions` materialises all Bell(n) partitions."""


@lru_cache(maxsize=None)
def _bell_row(n: int) -> tuple[int, ...]:
    # Bell triangle: row 0 is (1,); each row starts with the last entry of the previous row.
    row = (1,)
    for _ in range(n):
        new = [row[-1]]
        for value in row:
            new.append(new[-1] + value)
        row = tuple(new)
    return row


def bell_number(n: int) -> int:
    """The number of set partitions of ``n`` points (exact Python integer).

    :param int n: number of points, ``n >= 0``.
    """
    n = _check_nonnegative_int(n, "n")
    return _bell_row(n)[0]


def log_bell_number(n: int) -> float:
    """``log(bell_number(n))`` computed without overflow (exact integer, then ``log``)."""
    value = bell_number(n)
    # math.log of a huge int is exact enough (Python converts via frexp internally).
    return math.log(value)


def _check_nonnegative_int(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    if n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n}")
    return int(n)


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Boolean mask ``(B, N_max)`` that is ``True`` on the first ``lengths[b]`` positions.

    :param torch.Tensor lengths: integer tensor of shape ``(B,)``.
    :param int max_len: width of the mask (default ``lengths.max()``).
    """
    lengths = torch.as_tensor(lengths)
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    return torch.arange(max_len, device=lengths.device) < lengths.unsqueeze(-1)


def _check_labels(labels: torch.Tensor, name: str = "labels") -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if labels.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (..., N), got a scalar")
    return labels


def canonicalize(labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Relabel clusters by order of first appearance (restricted growth string).

    Any integer labels are accepted (negative or large values included); two points share a
    canonical label iff they shared a label. Cost ``O(B N log(B N))``, no Python loop.

    :param torch.Tensor labels: integer labels of shape ``(..., N)``.
    :param torch.Tensor mask: optional boolean ``(..., N)``; ``False`` positions are ignored and
        set to :data:`PAD_LABEL` in the output.
    :returns: canonical labels, ``torch.long``, shape ``(..., N)``.
    """
    labels = _check_labels(labels)
    shape = labels.shape
    n = shape[-1]
    if labels.numel() == 0:
        return labels.long().clone()
    flat = labels.reshape(-1, n).long()
    rows = flat.shape[0]
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=labels.device)
        if mask.shape != shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(shape)}")
        mask_flat = mask.reshape(-1, n)
    # A key unique to (row, label): labels compacted to 0..V-1 by one global 1-D unique (any
    # int64 values), then ``row * V + label`` (< (rows * n)^2, no overflow) and a second 1-D
    # unique. 1-D uniques sort plain integers (``unique(dim=0)`` is many times slower).
    values, compact = torch.unique(flat.reshape(-1), return_inverse=True)
    row_ids = torch.arange(rows, device=flat.device).repeat_interleave(n)
    _, inverse = torch.unique(row_ids * values.numel() + compact, return_inverse=True)
    positions = torch.arange(n, device=flat.device).expand(rows, n).reshape(-1)
    if mask is not None:
        positions = torch.where(mask_flat.reshape(-1), positions, torch.full_like(positions, n))
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long, device=flat.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    first_pos = first[inverse].reshape(rows, n)  # position of the first occurrence of my label
    is_first = first_pos == torch.arange(n, device=flat.device)
    rank = torch.cumsum(is_first.long(), dim=-1) - 1
    out = rank.gather(-1, first_pos.clamp(max=n - 1))
    if mask is not None:
        out = torch.where(mask_flat, out, torch.full_like(out, PAD_LABEL))
    return out.reshape(shape)


def is_canonical(labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Whether each label vector is in canonical form.

    :param torch.Tensor labels: integer ``(..., N)``.
    :param torch.Tensor mask: optional boolean ``(..., N)`` (a prefix of each row); padded
        positions are not checked.
    :returns: boolean tensor of shape ``(...)``.
    """
    labels = _check_labels(labels).long()
    if labels.shape[-1] == 0:
        return torch.ones(labels.shape[:-1], dtype=torch.bool, device=labels.device)
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=labels.device)
        if mask.shape != labels.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(labels.shape)}")
        labels = torch.where(mask, labels, torch.zeros_like(labels))
    prev_max = torch.cummax(labels, dim=-1).values
    prev_max = torch.cat([torch.full_like(prev_max[..., :1], -1), prev_max[..., :-1]], dim=-1)
    ok = (labels >= 0) & (labels <= prev_max + 1)
    if mask is not None:
        ok = ok | ~mask
    return ok.all(dim=-1)


def check_canonical(labels: torch.Tensor, mask: torch.Tensor | None = None, name: str = "labels"):
    """Raise ``ValueError`` unless every row of ``labels`` is canonical."""
    ok = is_canonical(labels, mask)
    if not bool(ok.all()):
        bad = torch.nonzero(~ok.reshape(-1))[0].item()
        row = labels.reshape(-1, labels.shape[-1])[bad].tolist()
        raise ValueError(
            f"{name} are not canonical (row {bad}: {row[:20]}{'...' if len(row) > 20 else ''}); "
            "labels must start at 0 and each new cluster must take the next integer. "
            "Use gfncp_pyro.partitions.canonicalize() first."
        )


def num_clusters(labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Number of clusters ``K`` of canonical label vectors, shape ``(...)``.

    Assumes canonical labels (then ``K = max + 1``); padded positions are ignored.
    """
    labels = _check_labels(labels).long()
    if mask is not None:
        labels = torch.where(torch.as_tensor(mask, device=labels.device), labels, -1)
    if labels.shape[-1] == 0:
        return torch.zeros(labels.shape[:-1], dtype=torch.long, device=labels.device)
    return labels.max(dim=-1).values + 1


def cluster_sizes(
    labels: torch.Tensor, num_slots: int | None = None, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Cluster sizes ``(..., num_slots)`` of canonical labels (zeros beyond ``K``)."""
    labels = _check_labels(labels).long()
    if num_slots is None:
        num_slots = max(int(num_clusters(labels, mask).max()), 0) if labels.numel() else 0
    ones = torch.ones_like(labels)
    if mask is not None:
        mask = torch.as_tensor(mask, device=labels.device)
        ones = ones * mask
        labels = torch.where(mask, labels, 0)
    out = torch.zeros(labels.shape[:-1] + (num_slots,), dtype=torch.long, device=labels.device)
    return out.scatter_add_(-1, labels, ones)


def labels_to_blocks(labels: Sequence[int] | torch.Tensor) -> list[list[int]]:
    """One label vector to its blocks, ``[[indices of cluster 0], [cluster 1], ...]``.

    Blocks are ordered by their smallest element (the canonical order).
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one vector (N,), got shape {tuple(labels.shape)}")
    canon = canonicalize(labels).tolist()
    blocks: list[list[int]] = [[] for _ in range(max(canon, default=-1) + 1)]
    for i, k in enumerate(canon):
        blocks[k].append(i)
    return blocks


def blocks_to_labels(blocks: Sequence[Sequence[int]], n: int | None = None) -> torch.Tensor:
    """Blocks (lists of point indices) to a canonical label vector ``(n,)``.

    :raises ValueError: if the blocks are not a partition of ``{0, ..., n-1}``.
    """
    flat = [int(i) for block in blocks for i in block]
    if n is None:
        n = len(flat)
    if sorted(flat) != list(range(n)):
        raise ValueError(f"blocks must partition {{0, ..., {n - 1}}} exactly once, got {blocks!r}")
    labels = torch.empty(n, dtype=torch.long)
    for k, block in enumerate(blocks):
        labels[list(block)] = k
    return canonicalize(labels)


def enumerate_partitions(n: int, dtype: torch.dtype = torch.long, device=None) -> torch.Tensor:
    """All Bell(n) partitions of ``n`` points as canonical labels, in lexicographic order.

    Built level by level: each prefix is expanded to its children ``0..K`` with
    ``repeat_interleave`` (one tensor op per point, no loop over partitions), which keeps the
    rows in lexicographic order.

    :param int n: number of points, ``0 <= n <= 12`` (Bell(12) = 4,213,597 rows).
    :param dtype: integer dtype of the result (``torch.int8`` saves memory for large ``n``).
    :returns: tensor of shape ``(bell_number(n), n)``.
    """
    n = _check_nonnegative_int(n, "n")
    if n > MAX_ENUMERATION_N:
        raise ValueError(
            f"enumerate_partitions(n={n}) would materialise Bell({n}) = {bell_number(n):,} "
            f"partitions; the limit is n <= {MAX_ENUMERATION_N}. For larger n use the subset "
            "dynamic programme (exact evidence, co-clustering, samples) instead of enumeration."
        )
    if n == 0:
        return torch.zeros((1, 0), dtype=dtype, device=device)
    labels = torch.zeros((1, 1), dtype=torch.int8, device=device)
    k_open = torch.ones(1, dtype=torch.long, device=device)  # clusters open after the prefix
    for _ in range(1, n):
        counts = k_open + 1  # each prefix has K + 1 children
        parent = torch.repeat_interleave(torch.arange(labels.shape[0], device=device), counts)
        starts = torch.cumsum(counts, 0) - counts
        child = torch.arange(parent.shape[0], device=device) - starts[parent]
        labels = torch.cat([labels[parent], child.to(torch.int8).unsqueeze(-1)], dim=-1)
        k_open = torch.maximum(k_open[parent], child + 1)
    return labels.to(dtype)


def _log_stam_weights(n: int, max_urns: int) -> torch.Tensor:
    m = torch.arange(1, max_urns + 1, dtype=torch.float64)
    return n * torch.log(m) - torch.lgamma(m + 1)


def _stam_num_urns(n: int) -> int:
    """Truncation of Stam's urn count: the dropped tail has relative mass < 1e-18."""
    # The weights m^n / m! peak near m ~ n / log n and then decay super-exponentially.
    max_urns = max(8, 2 * n + 8)
    logw = _log_stam_weights(n, max_urns)
    keep = logw >= logw.max() - 45.0
    return int(torch.nonzero(keep)[-1]) + 2


def sample_uniform_partitions(
    lengths: torch.Tensor | int,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """Partitions drawn **uniformly over all set partitions** of each set (Alg. 1, line 9 of [1]).

    Every one of the Bell(n) partitions of a set of ``n`` points has probability ``1/Bell(n)``.
    Stam's algorithm makes this exact and parallel: draw a number of urns ``M`` with
    ``P(M = m) = m^n / (m! e Bell(n))``, throw every point into one of the ``M`` urns uniformly
    at random, and read the non-empty urns as clusters. ``M`` is truncated where the dropped
    tail has relative mass below ``1e-18`` (under float64 resolution).

    :param lengths: set sizes ``(B,)`` (or one int with ``num_samples``).
    :param int num_samples: with an int ``lengths``, the number of partitions to draw.
    :param torch.Generator generator: source of randomness.
    :returns: canonical labels ``(B, N_max)``, :data:`PAD_LABEL` beyond each set's length.
    """
    if isinstance(lengths, int) or (isinstance(lengths, torch.Tensor) and lengths.ndim == 0):
        if num_samples is None:
            raise ValueError("num_samples is required when lengths is a single integer")
        lengths = torch.full((int(num_samples),), int(lengths), dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=device)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must have shape (B,), got {tuple(lengths.shape)}")
    if bool((lengths < 0).any()):
        raise ValueError(f"lengths must be non-negative, got {lengths.tolist()}")
    device = lengths.device
    batch = lengths.shape[0]
    n_max = int(lengths.max()) if batch else 0
    urns = torch.ones(batch, dtype=torch.float64)
    for n in torch.unique(lengths).tolist():
        if n == 0:
            continue
        rows = torch.nonzero(lengths.cpu() == n).squeeze(-1)
        logw = _log_stam_weights(n, _stam_num_urns(n))
        probs = torch.softmax(logw, 0)
        draws = torch.multinomial(probs, rows.numel(), replacement=True, generator=generator)
        urns[rows] = (draws + 1).double()
    uniform = torch.rand((batch, n_max), generator=generator, dtype=torch.float64)
    raw = torch.floor(uniform * urns.unsqueeze(-1)).long().to(device)
    mask = lengths_to_mask(lengths, n_max)
    return canonicalize(raw, mask)

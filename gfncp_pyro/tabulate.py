"""q and the learned reward of every partition of a small set (``N <= 12``), without sampling.

:func:`policy_log_q` gives the policy's probability of every partition along given orders by
walking the prefix tree of states once per order (no teacher forcing);
:func:`reward_log_p` normalises the learned reward ``exp(-E[c_{1:N}])`` (Eq. 25 in [1]) over
all partitions: an order-invariant posterior by construction. Both are exact (float64
normalisation) and feed the exact validation and the trainer's fidelity panel.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .nn import EnergyNet
from .partitions import enumerate_partitions

__all__ = ["partition_codes", "policy_log_q", "reward_log_p", "log_normalise"]

_CHUNK_ROWS = 2**16  # states per f evaluation in _state_energies


def partition_codes(labels: torch.Tensor) -> torch.Tensor:
    """Integer code of each canonical label vector ``(B, N) -> (B,)``: base-N digits, most
    significant first, so lexicographic order of labels is numeric order of codes."""
    n = labels.shape[-1]
    weights = torch.tensor([n ** (n - 1 - i) for i in range(n)], dtype=torch.long, device=labels.device)
    return (labels.long() * weights).sum(-1)


def _subset_tables(net: EnergyNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``W_G g(H_S)`` and ``W_U U_S`` for every subset ``S`` of the points (bit ``i`` of the
    index = point ``i``): ``(2^N, hidden)`` each. ``H_S`` and ``U_S`` sum ``h`` and ``u`` over
    ``S`` (Eqs. 12 and 14 in [1]); ``g`` is evaluated once per subset, whatever the orders."""
    n = x.shape[0]
    bits = (torch.arange(2**n).unsqueeze(-1) >> torch.arange(n)) & 1  # (2^N, N)
    h, u = net.encode(x)
    heads = net.fused_heads()
    members = bits.to(h.dtype)
    project_g = heads.project(members @ h)
    project_u = torch.zeros_like(project_g) if net.config.online else nn.functional.linear(members @ u, heads.weight_u)
    if heads.bias_f is not None:
        project_u = project_u + heads.bias_f
    return project_g, project_u


def _state_energies(heads, project_g: torch.Tensor, project_u: torch.Tensor, states: torch.Tensor,
                    bits: torch.Tensor, remaining: int) -> torch.Tensor:
    """Energies ``(P,)`` (Eq. 15 in [1]) of the states ``(P, m)``: canonical labels of the points
    whose bits are ``bits`` ``(m,)``, with the points of bitmask ``remaining`` unassigned. Each
    is ``f`` of ``sum_k W_G g(H_k) + W_U U + b``, read from :func:`_subset_tables`."""
    m = states.shape[1]
    table = torch.cat([torch.zeros_like(project_g[:1]), project_g[1:]])  # the empty set adds nothing
    first = project_u[remaining]
    parts = []
    for block in states.split(_CHUNK_ROWS):
        clusters = torch.zeros((block.shape[0], m), dtype=torch.long).scatter_add_(1, block, bits.expand(block.shape[0], m))
        G = nn.functional.embedding_bag(clusters, table, mode="sum")  # sum_k W_G g(H_k)
        parts.append(heads.energy(G + first).double())
    return torch.cat(parts)


def _partition_keys(states: torch.Tensor, points: torch.Tensor, n: int) -> torch.Tensor:
    """An integer key ``(P,)`` of each partition of ``0..n-1``, whatever the labelling: row ``j``
    of ``states`` ``(P, n)`` gives the cluster label of point ``points[j]``; the key lists, for
    every point, the smallest point of its cluster (base-``n`` digits)."""
    bits = (1 << points).expand(states.shape[0], n)
    clusters = torch.zeros_like(states).scatter_add_(1, states, bits)
    lowest = (clusters & -clusters).double().log2().round().long()  # smallest point per cluster
    smallest = torch.empty_like(states).scatter_(1, points.expand_as(states), lowest.gather(1, states))
    weights = n ** torch.arange(n - 1, -1, -1)
    return (smallest * weights).sum(-1)


def _segment_logsumexp(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """``logsumexp`` of ``values`` ``(P,)`` within each group (``groups`` ``(P,)`` in
    ``0..num_groups-1``, none empty): ``(num_groups,)``."""
    top = torch.full((num_groups,), -math.inf, dtype=values.dtype).scatter_reduce(0, groups, values, "amax")
    total = torch.zeros_like(top).index_add_(0, groups, (values - top[groups]).exp())
    return top + total.log()


def policy_log_q(net: EnergyNet, x: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """``log q(c | x, rho)`` (Eq. 30 without the order factor) of every partition (rows of
    ``labels`` ``(P, N)``, canonical in the points' order) along every order (rows of ``orders``
    ``(R, N)``): ``(R, P)``, float64. Along ``rho`` the actions are ``canonicalize(c[rho])``.

    A state after ``m`` steps along ``rho`` is a partition of the points ``rho[:m]``; the policy
    is ``P(child | state) = softmax over the children of -E`` (see :mod:`gfncp_pyro.policy`). The
    states of step ``m`` along ``rho`` are :func:`enumerate_partitions(m) <enumerate_partitions>`
    (lexicographic, so the children of a state are consecutive and their parent's index is the
    count of labels ``a_m = 0`` so far, minus one): their energies are computed once each, with
    ``g`` read from a table over the ``2^N`` subsets, and the terminal states (every partition of
    all points) are shared by all orders. ``R * sum_{m<N} Bell(m) + Bell(N)`` evaluations of
    ``f``'s tail, no teacher forcing. Tested against :func:`gfncp_pyro.policy.log_prob`."""
    n, r = x.shape[0], orders.shape[0]
    dtype = next(net.parameters()).dtype
    out = torch.zeros((r, labels.shape[0]), dtype=torch.float64)
    if n == 1:
        return out
    with torch.no_grad():
        project_g, project_u = _subset_tables(net, x.to(dtype))
        heads = net.fused_heads()
        terminal = enumerate_partitions(n)
        points = torch.arange(n)
        terminal_keys, terminal_index = _partition_keys(terminal, points, n).sort()
        terminal_energy = _state_energies(heads, project_g, project_u, terminal, 1 << points, 0)[terminal_index]
        levels = [enumerate_partitions(m) for m in range(1, n + 1)]
        groups = [(level[:, -1] == 0).long().cumsum(0) - 1 for level in levels]
        wanted = _partition_keys(labels, points, n)
        for i, order in enumerate(orders):
            bits = 1 << order
            along = _partition_keys(levels[-1], order, n)  # terminal states along the order
            log_q = torch.zeros(1, dtype=torch.float64)  # the one state after step 1
            for m in range(2, n + 1):
                if m < n:
                    energy = _state_energies(heads, project_g, project_u, levels[m - 1], bits[:m],
                                             int(bits[m:].sum()))
                else:  # terminal states along the order -> the shared table
                    energy = terminal_energy[torch.searchsorted(terminal_keys, along)]
                parent = groups[m - 1]
                log_z = _segment_logsumexp(-energy, parent, levels[m - 2].shape[0])
                log_q = log_q[parent] - energy - log_z[parent]
            order_keys, order_index = along.sort()
            out[i] = log_q[order_index[torch.searchsorted(order_keys, wanted)]]
    return out


def log_normalise(log_w: torch.Tensor) -> torch.Tensor:
    """``log_w - logsumexp(log_w)`` over the last dimension."""
    return log_w - torch.logsumexp(log_w, -1, keepdim=True)


def reward_log_p(net: EnergyNet, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The learned reward normalised over the given partitions, float64 ``(P,)``.

    ``log p_theta(c | x) = -E[c] - logsumexp_c'(-E[c'])`` (Eq. 25 in [1]) with ``E[c] =
    f(sum_k g(H_k), 0)`` of each partition, read from the subset tables (``g`` once per subset
    of the points). With ``labels`` every partition (:func:`enumerate_partitions`), this is the
    reward's posterior; it never depends on an order.

    :param torch.Tensor x: one set ``(N, *point_shape)``.
    :param torch.Tensor labels: ``(P, N)`` canonical labels.
    """
    n = x.shape[0]
    dtype = next(net.parameters()).dtype
    with torch.no_grad():
        project_g, project_u = _subset_tables(net, x.to(dtype))
        energy = _state_energies(net.fused_heads(), project_g, project_u, labels.long(), 1 << torch.arange(n), 0)
    return log_normalise(-energy)

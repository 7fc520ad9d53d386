"""Compare an amortized posterior q(c | x) with the exact posterior p(c | x) over all partitions.

For one data set with all Bell(N) partitions enumerated: q of every partition along the identity
order (Eq. 30 without the order factor) and averaged over R random orders (the GFlowNet's
marginal over orders, Eq. 19), the divergences between p and q, MAP agreement, q's mass on the
exact top-10, SDPP (Eq. 32) of the exact MAP partition, MC (Eq. 24) of the true partition, and
self-normalised importance sampling with q as proposal (log evidence, ESS, corrected posterior).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gfncp_pyro import decoding, losses, policy
from gfncp_pyro.exact import ExactPosterior
from gfncp_pyro.nn import EnergyNet
from gfncp_pyro.partitions import enumerate_partitions

__all__ = ["partition_codes", "policy_log_q", "divergences", "compare_one"]

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


def divergences(log_p: torch.Tensor, log_q: torch.Tensor) -> dict[str, float]:
    """TV, KL(p||q), KL(q||p), Jensen-Shannon (nats) between two distributions on the same support."""
    p, q = log_p.exp(), log_q.exp()
    log_m = torch.logaddexp(log_p, log_q) - math.log(2)

    def kl(a, log_a, log_b) -> float:  # sum a log(a/b), with 0 log 0 = 0
        return float(torch.where(a > 0, a * (log_a - log_b), 0.0).sum())

    return {
        "tv": float(0.5 * (p - q).abs().sum()),
        "kl_pq": kl(p, log_p, log_q),
        "kl_qp": kl(q, log_q, log_p),
        "js": 0.5 * kl(p, log_p, log_m) + 0.5 * kl(q, log_q, log_m),
    }


def _log_normalise(log_w: torch.Tensor) -> torch.Tensor:
    return log_w - torch.logsumexp(log_w, 0)


def compare_one(net: EnergyNet, x: torch.Tensor, exact: ExactPosterior, true_labels: torch.Tensor,
                orders: torch.Tensor, num_importance: int = 1000, sdpp_orders: int = 500,
                generator: torch.Generator | None = None) -> dict:
    """All metrics of one model on one data set (see the module docstring).

    :param orders: ``(R, N)`` random orders; q is also evaluated along the identity order.
    :returns: a JSON-ready dict of floats, plus ``"log_q"`` (identity order, float64 ``(P,)``)
        for plotting.
    """
    n = x.shape[0]
    identity = torch.arange(n).unsqueeze(0)
    log_q_all = policy_log_q(net, x, exact.labels, torch.cat([identity, orders]))
    log_q = log_q_all[0]
    log_q_avg = torch.logsumexp(log_q_all[1:], 0) - math.log(orders.shape[0]) if orders.shape[0] else log_q
    log_p = exact.log_posterior
    out = {f"{k}": v for k, v in divergences(log_p, log_q).items()}
    out.update({f"{k}_orders": v for k, v in divergences(log_p, _log_normalise(log_q_avg)).items()})
    out["q_mass_identity"] = float(log_q.exp().sum())
    p_map = int(log_p.argmax())
    out["map_agreement"] = float(int(log_q.argmax()) == p_map)
    top10 = torch.topk(log_p, min(10, log_p.numel())).indices
    out["q_mass_on_top10"] = float(log_q[top10].exp().sum())
    out["p_mass_on_top10"] = float(log_p[top10].exp().sum())
    dtype = next(net.parameters()).dtype
    with torch.no_grad():
        result = policy.sdpp(net, x.to(dtype), exact.labels[p_map], sdpp_orders,
                             generator=int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        out["sdpp_map"] = float(result.value)
        steps = policy.teacher_force(net, x.to(dtype)[None], true_labels[None])
        out["mc_true_paper"] = float(losses.marginal_consistency(steps, "paper"))
        out["mc_true_consistent"] = float(losses.marginal_consistency(steps, "consistent"))
    # Self-normalised importance sampling with q (identity order) as the proposal.
    samples, log_q_s = decoding.sample(net, x.to(dtype), num_importance, generator=generator)
    index = torch.searchsorted(partition_codes(exact.labels), partition_codes(samples))
    log_joint = log_p[index] + exact.log_evidence
    log_w = log_joint - log_q_s.double()
    log_ev_hat = torch.logsumexp(log_w, 0) - math.log(num_importance)
    w = torch.softmax(log_w, 0)
    corrected = torch.zeros_like(log_p).index_add_(0, index, w)
    out["is_log_evidence_error"] = float(log_ev_hat - exact.log_evidence)
    out["is_ess"] = float(1.0 / (w.square().sum()))
    out["is_tv"] = float(0.5 * (corrected - log_p.exp()).abs().sum())
    out["log_q"] = log_q
    return out

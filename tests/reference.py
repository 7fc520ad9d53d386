"""Slow, literal reference implementations shared by the tests.

Everything here works on ONE set and ONE order with Python loops over steps and candidates,
and recomputes every cluster sum from scratch at every step, straight from Eqs. (10), (12)-(15),
(24) and (30) of [1]. Nothing here is vectorised or reuses library code beyond the network's
four functions ``h, u, g, f``. At the end: shared test helpers (a random test network, a
hypothesis strategy for padded batches and its conversion to tensors).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st


def actions_along(labels, order) -> list[int]:
    """Labels read along ``order`` and renumbered by first appearance."""
    seen: dict[int, int] = {}
    actions = []
    for i in order:
        label = int(labels[i])
        if label not in seen:
            seen[label] = len(seen)
        actions.append(seen[label])
    return actions


def step_energies(net, x, labels, order=None) -> tuple[list[int], list[torch.Tensor]]:
    """Energies ``E[t, k]`` for ``k = 0..K_t`` of every step ``t`` of one set.

    :param x: ``(N, *point_shape)``. :param labels: ``(N,)``. :param order: sequence of indices.
    :returns: the actions and a list of ``N`` tensors, the ``t``-th of length ``K_t + 1``.
    """
    n = x.shape[0]
    order = list(range(n)) if order is None else [int(i) for i in order]
    actions = actions_along(labels, order)
    points = [x[i] for i in order]
    h_dim = net.config.h_dim
    rows = []
    for t in range(n):
        num_open = len(set(actions[:t]))
        unassigned = torch.zeros(h_dim, dtype=x.dtype)
        for s in range(t + 1, n):
            unassigned = unassigned + net.u(points[s])
        h_t = net.h(points[t])
        row = []
        for k in range(num_open + 1):
            G = torch.zeros(net.config.g_dim, dtype=x.dtype)
            for j in range(num_open):
                H_j = torch.zeros(h_dim, dtype=x.dtype)
                for s in range(t):
                    if actions[s] == j:
                        H_j = H_j + net.h(points[s])
                if j == k:
                    H_j = H_j + h_t
                G = G + net.g(H_j)
            if k == num_open:
                G = G + net.g(h_t)
            row.append(net.f(G, unassigned))
        rows.append(torch.stack(row))
    return actions, rows


def step_log_probs(rows: list[torch.Tensor]) -> list[list[float]]:
    """Eq. (10): ``log(exp(-E_k) / sum_k' exp(-E_k'))`` of every candidate of every step."""
    out = []
    for row in rows:
        values = [-float(e) for e in row.detach()]
        top = max(values)
        log_norm = top + math.log(sum(math.exp(v - top) for v in values))
        out.append([v - log_norm for v in values])
    return out


def log_prob(actions: list[int], rows: list[torch.Tensor]) -> float:
    """Eq. (30) without ``1/N!``: the product of the per-step probabilities, in log space."""
    return sum(lp[a] for lp, a in zip(step_log_probs(rows), actions))


def _log_sum_exp_neg(values: list[float]) -> float:
    top = max(-v for v in values)
    return top + math.log(sum(math.exp(-v - top) for v in values))


def marginal_consistency(actions: list[int], rows: list[torch.Tensor], flow: str) -> float:
    """Eq. (24) with 1-based ``n`` as printed in [1], for either flow.

    ``flow="consistent"``: ``E_flow[c_{1:n}] = E[c_{1:n}]``. ``flow="paper"``:
    ``Ehat[c_1] = 0``; ``Ehat[c_{1:n}] = E[c_{1:n}] - min_{c'_n} E[c_{1:n-1}, c'_n]`` for
    ``2 <= n < N``; ``Ehat[c_{1:N}] = E[c_{1:N}]``.
    """
    n_points = len(actions)
    energy = [[float(e) for e in row.detach()] for row in rows]  # energy[n - 1][c_n]

    def flow_energy(n: int, choice: int) -> float:  # the flow energy of c_{1:n-1}, c_n = choice
        if flow == "consistent":
            return energy[n - 1][choice]
        if n == 1:
            return 0.0
        if n < n_points:
            return energy[n - 1][choice] - min(energy[n - 1])
        return energy[n - 1][choice]

    total = 0.0
    for n in range(2, n_points + 1):
        parent = flow_energy(n - 1, actions[n - 2])
        children = [flow_energy(n, c) for c in range(len(energy[n - 1]))]
        total += (parent + _log_sum_exp_neg(children)) ** 2
    return total


def make_net(seed: int = 0, dtype=torch.float64, **config):
    """A small random :class:`EnergyNet` whose energies differ by O(1) between candidates.

    PyTorch's default initialisation gives nearly constant energies at this size, which would
    let wrong candidate bookkeeping pass unnoticed; the weights are redrawn larger.
    """
    from gfncp_pyro.nn import EnergyNet, EnergyNetConfig

    sizes = dict(h_dim=8, g_dim=16, hidden=16, encoder_layers=3, g_layers=3, f_layers=3)
    sizes.update(config)
    torch.manual_seed(seed)  # default initialisation of the PReLU and conv layers
    net = EnergyNet(EnergyNetConfig(**sizes))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Linear):
                scale = 1.5 / math.sqrt(module.in_features)
                module.weight.copy_(scale * torch.randn(module.weight.shape, generator=gen))
                if module.bias is not None:
                    module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=gen))
    return net.to(dtype)


@st.composite
def padded_batches(draw, max_sets=3, max_n=7):
    """Sets of different sizes with canonical labels, orders and a seed for the points."""
    sizes = draw(st.lists(st.integers(1, max_n), min_size=1, max_size=max_sets))
    labels, orders = [], []
    for n in sizes:
        raw = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
        labels.append(actions_along(raw, range(n)))
        orders.append(draw(st.permutations(list(range(n)))))
    return labels, orders, draw(st.integers(0, 2**31 - 1))


def to_batch(labels, orders, seed, dtype, point_shape=(2,)):
    """Lists of labels and orders to padded ``(x, labels, mask, orders)`` with random points."""
    n_max = max(len(row) for row in labels)
    gen = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn((len(labels), n_max) + point_shape, generator=gen, dtype=dtype)
    lab = torch.full((len(labels), n_max), -1)
    ords = torch.zeros((len(labels), n_max), dtype=torch.long)
    for b, (row, order) in enumerate(zip(labels, orders)):
        lab[b, : len(row)] = torch.tensor(row)
        ords[b, : len(order)] = torch.tensor(order)
    mask = lab != -1
    x = torch.where(mask.view(mask.shape + (1,) * len(point_shape)), x, 0.0)
    return x, lab, mask, ords

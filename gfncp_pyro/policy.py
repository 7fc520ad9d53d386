"""The clustering policy by teacher forcing: all steps (or a random subset) in one pass.

A set of ``N`` points is clustered along an order ``rho`` (a permutation of ``0..N-1``): step
``t`` assigns point ``rho[t]``. The *actions* are the labels read along the order and
re-canonicalised, ``a = canonicalize(labels[rho])``. Before step ``t`` there are ``K_t``
clusters and the candidates are ``k = 0..K_t`` (join cluster ``k``, or open cluster ``K_t``).
Their energies are Eqs. (12)-(15) in [1],

.. math::

    E[t, k] = f\\Big(\\sum_{j < K_t, j \\ne k} g(H_j^{(t)}) + g(H_k^{(t)} + h(x_{\\rho_t})),
               \\; U_{t+1}\\Big),

where ``H_j^{(t)}`` sums ``h`` over the points of cluster ``j`` assigned before step ``t``
(``H_{K_t}^{(t)} = 0``) and ``U_{t+1}`` sums ``u`` over the points assigned after step ``t``.

**Energy sign** (used throughout the package): probabilities are proportional to
``exp(-E)`` and a log-flow is ``-E``. The policy is ``P(a_t = k | a_{<t}) = softmax_k(-E[t, k])``
(Eq. 10 for NCP, Eq. 21 for GFNCP: the per-step shift of the paper's normalised energy cancels
inside the softmax) and ``P(a_0 = 0) = 1``.

Teacher forcing evaluates every step at once. ``g``'s first layer is affine, so it is applied
to each point's ``h`` once and every candidate's input ``W_in (H_k^{(t)} + h_t) + b_in`` is
formed in its output space (:meth:`~gfncp_pyro.nn.FusedHeads.input_map`). The (mapped) sum of
cluster ``a_s`` right after step ``s`` is a running sum over its steps (one masked ``(N, N)``
product per set), and ``H_k^{(t)}`` is that of cluster ``k``'s last step before ``t``, so each
row is gathered directly (no ``(B, N, K + 1, d)`` prefix-sum tensor). Only one cluster
changes per step, so the ``N`` cluster sums reached after each step are the taken candidates
themselves, and ``S_t = sum_j g(H_j^{(t)})`` is a cumulative sum of per-step changes. ``g`` is
evaluated once per valid candidate and never on padding. Because ``f`` starts with a linear
layer and ``g`` ends with one, ``g``'s output is only ever needed through ``f``'s first layer:
the two are fused into one ``hidden x hidden`` map
(:meth:`~gfncp_pyro.nn.EnergyNet.fused_heads`), and ``U`` enters through its projection.

**Step subsets.** Training losses are sums over steps (Eqs. 11 and 24 in [1]); with
``step_subset`` (from :func:`gfncp_pyro.data.sets.random_step_subset`) only the energies of a few random steps are
computed and the losses scale their partial sums into unbiased estimates of the full ones.

Batches hold different partitions, sizes and orders; the layout is ``energies (B, N_max,
K_max + 1)`` with ``+inf`` at masked-out entries (``exp(-E) = 0``), never NaN.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ._checks import (
    check_encodings,
    check_every_step,
    check_index_tensor,
    check_mask,
    check_orders,
    check_points,
    check_positive_int,
    check_step_subset,
)
from .nn import EnergyNet
from .nn.energy import forward_layers
from .partitions import canonicalize, check_canonical

__all__ = [
    "StepEnergies",
    "Encodings",
    "encode_points",
    "teacher_force",
    "partition_energy",
    "taken_energies",
    "step_log_normalizer",
    "step_log_probs",
    "trajectory_log_prob",
    "log_prob",
    "log_prob_orders",
]

MAX_CHUNK_ELEMENTS = 2**21
"""Default bound on the ``(R, N, K + 1, width)`` intermediates of :func:`log_prob_orders`."""


class StepEnergies(NamedTuple):
    """Energies of every step and candidate of a batch of trajectories.

    :ivar energies: ``(B, N_max, K_max + 1)``: ``E[t, k]``, ``+inf`` where not a candidate.
    :ivar candidate_mask: ``(B, N_max, K_max + 1)`` bool, ``True`` where ``t < N_b`` and
        ``k <= K_t``.
    :ivar actions: ``(B, N_max)`` long, canonical labels along the order, ``PAD_LABEL`` at
        padding.
    :ivar step_mask: ``(B, N_max)`` bool, ``True`` on the ``N_b`` real steps.
    :ivar step_subset: ``None`` when every step was computed, else the ``(B, N_max)`` bool
        steps selected by :func:`teacher_force`'s ``step_subset``; ``energies`` and
        ``candidate_mask`` then cover only what their residuals need.
    :ivar state_features: ``(B, N_max, hidden)`` or ``None``: at step ``t`` the part of ``f``'s
        first-layer input shared by every candidate, ``W_G S_t + W_U U_{t+1} + b`` (the state
        before step ``t``, its cluster sums ``S_t``, and the points after step ``t``), every
        step; it feeds the per-state log-flow offsets of ``flow="state"``
        (:func:`gfncp_pyro.flows.parent_log_flow_offsets`).
    """

    energies: torch.Tensor
    candidate_mask: torch.Tensor
    actions: torch.Tensor
    step_mask: torch.Tensor
    step_subset: torch.Tensor | None = None
    state_features: torch.Tensor | None = None


class Encodings(NamedTuple):
    """Point encodings ``h`` (Eq. 12) and ``u`` (Eq. 14) in the caller's point order.

    :ivar h: ``(B, N_max, h_dim)``.
    :ivar u: ``(B, N_max, h_dim)``.
    """

    h: torch.Tensor
    u: torch.Tensor


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _shift(values: torch.Tensor) -> torch.Tensor:
    """``out[:, t] = values[:, t - 1]``, zero at ``t = 0`` (steps are dim 1)."""
    return torch.cat([torch.zeros_like(values[:, :1]), values[:, :-1]], 1)


def encode_points(net: EnergyNet, x: torch.Tensor, *, bf16: bool = False) -> Encodings:
    """Validate points and encode each once: ``x (B, N_max, *point_shape) -> Encodings``.

    :param EnergyNet net: the energy network.
    :param torch.Tensor x: ``(B, N_max, *point_shape)``, finite (padding included).
    :param bool bf16: run the encoders under bfloat16 autocast (results in ``x``'s dtype).
    :raises ValueError: on a wrong point shape, an empty set, NaN/inf, or a dtype that differs
        from the network's.
    """
    x, _ = check_points(net, x, single_set=False)
    with _autocast(x.device, bf16):
        h, u = net.encode(x)
    return Encodings(h.to(x.dtype), u.to(x.dtype))


def _encodings(net: EnergyNet, points, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h, u)`` of ``points``: :class:`Encodings` are checked and used as given, a tensor of
    points is encoded (:func:`encode_points`)."""
    if points is None:
        raise ValueError("points are required: pass the points (B, N_max, *point_shape) or their "
                         "Encodings from encode_points")
    if not isinstance(points, Encodings):
        points = encode_points(net, points, bf16=bf16)
    return check_encodings(net, points)


class _Layout(NamedTuple):
    """Where each step's candidates sit along the order (0-based steps ``t``), ``(B, N_max, ...)``.

    ``taken[t, k]``: step ``t`` puts its point in cluster ``k``; ``candidates[t, k]``: ``k`` is
    open or the new cluster at step ``t``; ``last_seen[t, k]``: 1 + the last step ``s < t``
    with ``a_s = k``, or 0 (cluster ``k`` not open yet)."""

    actions: torch.Tensor
    taken: torch.Tensor
    candidates: torch.Tensor
    last_seen: torch.Tensor


def _layout(labels: torch.Tensor, mask: torch.Tensor, orders: torch.Tensor) -> _Layout:
    """The trajectory of ``labels`` along ``orders`` (canonical actions ``a_t``, Eq. 9)."""
    actions = canonicalize(labels.gather(1, orders), mask)
    n_max, device = mask.shape[1], mask.device
    width = int(actions.max()) + 2  # candidates 0..K_max
    taken = nn.functional.one_hot(actions.clamp(min=0), width).bool() & mask.unsqueeze(-1)
    num_open = _shift(actions + 1).cummax(1).values  # K_t
    candidates = (torch.arange(width, device=device) <= num_open.unsqueeze(-1)) & mask.unsqueeze(-1)
    steps = torch.arange(1, n_max + 1, device=device).view(1, -1, 1)
    last_seen = _shift(taken.long() * steps).cummax(1).values
    return _Layout(actions, taken, candidates, last_seen)


def _needed_energies(layout: _Layout, subset: torch.Tensor | None, parent_candidates: bool) -> torch.Tensor:
    """``(B, N_max, K_max + 1)`` bool: the energies to return (all candidates without a step
    subset; else the selected steps' candidates and the parents' taken ones)."""
    if subset is None:
        return layout.candidates
    parent = torch.cat([subset[:, 1:], torch.zeros_like(subset[:, :1])], 1)  # t + 1 selected
    steps_needed = subset | parent if parent_candidates else subset
    return (layout.candidates & steps_needed.unsqueeze(-1)) | (layout.taken & parent.unsqueeze(-1))


ROW_BLOCK = 4096
"""Rows per block of the MLP chains of :func:`teacher_force`: the per-layer temporaries of a block
(``ROW_BLOCK x hidden`` floats, 2 MiB at width 128) stay cache-sized and are reused by the
allocator instead of page-faulting in as fresh multi-hundred-MiB tensors (measured at batch 64,
N = 100: 1.4-1.6 s per trajectory instead of 1.9-3.8 s, forward and backward, one thread)."""


def _in_row_blocks(mlp, rows: torch.Tensor) -> torch.Tensor:
    """``mlp(rows)`` computed on blocks of ``ROW_BLOCK`` rows and concatenated (one call when it
    fits). Only the MLP chain is blocked: the rows are gathered once, since the backward pass of
    a gather per block would allocate a zero gradient of the whole source per block."""
    if rows.shape[0] <= ROW_BLOCK:
        return mlp(rows)
    return torch.cat([mlp(block) for block in rows.split(ROW_BLOCK)])


def _candidate_projections(heads, h: torch.Tensor, layout: _Layout, mask: torch.Tensor, rows_of,
                           bf16: bool) -> torch.Tensor:
    """``W_G g(H_k^{(t)} + h_t)`` for each ``(b, t, k)`` of ``rows_of``, ``(rows, hidden)``.

    The map ``z -> W_G g(z)`` starts with an affine layer ``W_in z + b_in``: it is applied to each
    point once and every row ``W_in (H_k^{(t)} + h_t) + b_in`` is formed from sums of mapped
    points (Eq. 12), so ``g``'s first layer costs ``N`` rows per set, not one per candidate."""
    b, t, k = rows_of
    batch, n_max = mask.shape
    dtype = h.dtype
    w_in, b_in = heads.input_map()
    with _autocast(h.device, bf16):
        mapped = nn.functional.linear(h, w_in).to(dtype)  # W_in h_t, (B, N, width)
    width_in = mapped.shape[-1]
    # sums[b, 1 + s] = W_in H of cluster a_s right after step s; sums[b, 0] = 0.
    actions = layout.actions
    same = (actions.unsqueeze(2) == actions.unsqueeze(1)) & mask.unsqueeze(1)
    same = same & torch.ones(n_max, n_max, dtype=torch.bool, device=h.device).tril()
    sums = torch.cat([mapped.new_zeros(batch, 1, width_in), torch.bmm(same.to(dtype), mapped)], 1)
    point = mapped if b_in is None else mapped + b_in.to(dtype)
    seen = layout.last_seen[b, t, k]
    rows = (sums.reshape(-1, width_in).index_select(0, b * (n_max + 1) + seen)
            + point.reshape(-1, width_in).index_select(0, b * n_max + t))
    with _autocast(h.device, bf16):
        return _in_row_blocks(heads.project_mapped, rows).to(dtype)


def _state_offsets(net: EnergyNet, heads, u: torch.Tensor, layout: _Layout, mask: torch.Tensor,
                   proj_taken: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per step, ``W_G S_t + b_f + W_U U_{t+1}`` ``(B, N_max, hidden)`` (Eqs. 13-15 before the
    candidate's own term) and ``proj_seen`` ``(B, N_max + 1, hidden)``: each cluster's current
    ``W_G g(H_k)`` indexed by ``last_seen`` (row 0: a cluster not open yet, zero)."""
    batch, hidden, dtype = mask.shape[0], proj_taken.shape[-1], proj_taken.dtype
    proj_seen = torch.cat([proj_taken.new_zeros(batch, 1, hidden), proj_taken], 1)
    actions = layout.actions.clamp(min=0).unsqueeze(-1)
    prev_of_taken = layout.last_seen.gather(2, actions)
    delta = proj_taken - proj_seen.gather(1, prev_of_taken.expand(-1, -1, hidden))
    delta = torch.where(mask.unsqueeze(-1), delta, 0.0)
    offset = _shift(delta).cumsum(1)  # W_G S_t, S_t = sum_j g(H_j^{(t)})
    if heads.bias_f is not None:
        offset = offset + heads.bias_f.to(dtype)
    if not net.config.online:  # online mode: U = 0 (App. C in [1])
        u = torch.where(mask.unsqueeze(-1), u, 0.0)
        unassigned = _shift(u.flip(1)).cumsum(1).flip(1)  # U_{t+1}
        with _autocast(u.device, bf16):
            offset = offset + nn.functional.linear(unassigned, heads.weight_u).to(dtype)
    return offset, proj_seen


def _energies(heads, offset: torch.Tensor, proj_seen: torch.Tensor, proj: torch.Tensor, rows, needed: torch.Tensor,
              bf16: bool) -> torch.Tensor:
    """``f`` on ``W_G (S_t - g(H_k) + g(H_k + h_t)) + b_f + W_U U_{t+1}`` for each returned
    ``(b, t, seen)`` row (Eq. 15), scattered to ``(B, N_max, K_max + 1)`` (``+inf`` elsewhere)."""
    b, t, seen = rows
    n_max, hidden = offset.shape[1], proj.shape[-1]
    pre = (offset.reshape(-1, hidden).index_select(0, b * n_max + t)
           - proj_seen.reshape(-1, hidden).index_select(0, b * (n_max + 1) + seen) + proj)
    with _autocast(proj.device, bf16):
        values = _in_row_blocks(heads.energy, pre).to(proj.dtype)
    energies = torch.full(needed.shape, math.inf, dtype=proj.dtype, device=proj.device)
    return energies.masked_scatter(needed, values)


def teacher_force(
    net: EnergyNet,
    points: torch.Tensor | Encodings,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    orders: torch.Tensor | None = None,
    *,
    bf16: bool = False,
    step_subset: torch.Tensor | None = None,
    parent_candidates: bool = False,
) -> StepEnergies:
    """Energies of every step and every candidate along given trajectories, in one pass.

    No Python loop over steps or clusters: cluster sums are gathered from per-cluster running
    sums, ``g`` runs once per evaluated row and ``f`` once per returned energy (Eqs. 12-15 in
    [1]).

    With ``step_subset`` only the energies that the residuals of the selected steps need are
    computed: every candidate of each selected step ``t`` and the taken candidate of step
    ``t - 1`` (the parent's flow, Eq. 24 in [1]), plus every candidate of step ``t - 1`` if
    ``parent_candidates`` (the per-step minimum of ``flow="paper"``). ``g`` still runs on the
    taken candidate of every step, as the cluster sums of later steps need it (``N`` rows per
    set against ``sum_t (K_t + 1)``). Other entries are masked out (``+inf``, mask ``False``)
    and the subset is kept in :attr:`StepEnergies.step_subset`; the losses then return
    unbiased estimates of their sums over steps.

    :param EnergyNet net: the energy network.
    :param points: points ``(B, N_max, *point_shape)`` in the caller's order, or their
        :class:`Encodings` ``(B, N_max, h_dim)`` from :func:`encode_points` (may be expanded
        views, e.g. one set's encodings for many orders).
    :param torch.Tensor labels: ``(B, N_max)`` canonical labels in the caller's point order;
        entries at padding are ignored.
    :param torch.Tensor mask: ``(B, N_max)`` bool, ``True`` on a non-empty prefix of each row
        (default: all ``True``).
    :param torch.Tensor orders: ``(B, N_max)``, row ``b`` starts with a permutation of
        ``0..N_b-1`` (default: identity); step ``t`` assigns point ``orders[b, t]``.
    :param bool bf16: run the network under bfloat16 autocast; sums stay in ``x``'s dtype.
    :param torch.Tensor step_subset: ``(B, N_max)`` bool, steps among ``1..N_b-1`` (e.g. from
        :func:`~gfncp_pyro.data.sets.random_step_subset`); default: every step.
    :param bool parent_candidates: with ``step_subset``, also every candidate of the step
        before each selected one (needed by ``marginal_consistency(..., flow="paper")``).
    :returns: :class:`StepEnergies` with ``energies (B, N_max, K_max + 1)``, ``K_max`` the
        largest number of clusters in the batch.
    :raises ValueError: on bad points, labels, mask, orders or step subset (message says
        which and why).
    """
    h, u = _encodings(net, points, bf16)
    shape, device = tuple(h.shape[:2]), h.device
    labels = check_index_tensor(labels, "labels", shape, device)
    mask = check_mask(mask, shape, device)
    check_canonical(labels, mask)
    orders = check_orders(orders, mask)
    subset = None if step_subset is None else check_step_subset(step_subset, mask)

    # Read everything along the order.
    index = orders.unsqueeze(-1).expand(-1, -1, h.shape[-1])
    h, u = h.gather(1, index), u.gather(1, index)
    layout = _layout(labels, mask, orders)
    needed = _needed_energies(layout, subset, parent_candidates)
    evaluated = needed | layout.taken  # rows through g
    heads = net.fused_heads()
    evaluated_rows = evaluated.nonzero(as_tuple=True)  # row-major
    proj = _candidate_projections(heads, h, layout, mask, evaluated_rows, bf16)

    # W_G g of the taken candidate = cluster a_t's new sum; row_of maps (b, t, k) -> row.
    row_of = (evaluated.reshape(-1).cumsum(0) - 1).reshape(evaluated.shape)
    taken_row = row_of.gather(2, layout.actions.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    proj_taken = torch.where(mask.unsqueeze(-1), proj[taken_row], 0.0)
    offset, proj_seen = _state_offsets(net, heads, u, layout, mask, proj_taken, bf16)

    if subset is None:  # every evaluated row is returned (taken candidates are candidates)
        b, t, k = evaluated_rows
    else:  # keep the rows whose energy is returned
        b, t, k = needed.nonzero(as_tuple=True)
        proj = proj.index_select(0, row_of[b, t, k])
    energies = _energies(heads, offset, proj_seen, proj, (b, t, layout.last_seen[b, t, k]), needed, bf16)
    return StepEnergies(energies, needed, layout.actions, mask, subset, offset)


def partition_energy(
    net: EnergyNet,
    points: torch.Tensor | Encodings,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    bf16: bool = False,
) -> torch.Tensor:
    """Energy ``E[c_{1:N}] = f(sum_k g(H_k), 0)`` of full partitions only, ``(B,)``.

    The negative log of the unnormalised reward (Eq. 22 in [1]); equals the last step's taken
    energy of :func:`teacher_force` at a fraction of the cost (``g`` on the ``K`` clusters, one
    ``f``), e.g. to re-score policy samples for Eq. (27). Arguments as in :func:`teacher_force`.
    """
    h, _ = _encodings(net, points, bf16)
    shape = tuple(h.shape[:2])
    labels = check_index_tensor(labels, "labels", shape, h.device)
    mask = check_mask(mask, shape, h.device)
    check_canonical(labels, mask)
    onehot = nn.functional.one_hot(labels.clamp(min=0), int(labels.max()) + 1).bool()
    onehot = onehot & mask.unsqueeze(-1)  # (B, N, K)
    H = torch.einsum("bnk,bnd->bkd", onehot.to(h.dtype), h)  # Eq. (12)
    b, k = onehot.any(1).nonzero(as_tuple=True)
    with _autocast(h.device, bf16):
        g = forward_layers(net.g, H[b, k]).to(h.dtype)
    G = g.new_zeros(shape[0], g.shape[-1]).index_add(0, b, g)  # Eq. (13)
    with _autocast(h.device, bf16):
        return net.f(G, G.new_zeros(shape[0], h.shape[-1])).to(h.dtype)  # Eq. (15), U = 0


def _safe_energies(step_energies: StepEnergies) -> torch.Tensor:
    """Energies with 0 instead of ``+inf`` off the candidates (safe for any arithmetic)."""
    return torch.where(step_energies.candidate_mask, step_energies.energies, 0.0)


def taken_energies(step_energies: StepEnergies) -> torch.Tensor:
    """``E[t, a_t]`` (``E[c_{1:t+1}]`` in [1]) per step, ``(B, N_max)``; 0 at padding."""
    energy = _safe_energies(step_energies)
    index = step_energies.actions.clamp(min=0).unsqueeze(-1)
    return torch.where(step_energies.step_mask, energy.gather(2, index).squeeze(-1), 0.0)


def _masked_logsumexp(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``logsumexp`` over the last dim restricted to ``mask``; 0 on rows with no entry."""
    any_entry = mask.any(-1, keepdim=True)
    safe = torch.where(mask, values, -math.inf)
    safe = torch.where(any_entry, safe, 0.0)  # a row of -inf would give NaN gradients
    return torch.where(any_entry.squeeze(-1), torch.logsumexp(safe, -1), 0.0)


def step_log_normalizer(step_energies: StepEnergies, energies: torch.Tensor | None = None):
    """``logsumexp_k(-E[t, k])`` over each step's candidates, ``(B, N_max)``; 0 at padding.

    :param torch.Tensor energies: optional replacement energies of the same layout (e.g. the
        shifted energies of the paper's flow); default ``step_energies.energies``.
    """
    energy = _safe_energies(step_energies) if energies is None else energies
    return _masked_logsumexp(-energy, step_energies.candidate_mask)


def step_log_probs(step_energies: StepEnergies) -> torch.Tensor:
    """Per-step policy ``log softmax_k(-E[t, k])`` (Eqs. 10 and 21 in [1]), ``(B, N_max, K+1)``.

    ``-inf`` off the candidates; step 0 has the single candidate 0 with log-probability 0.
    """
    energy = _safe_energies(step_energies)
    log_probs = -energy - step_log_normalizer(step_energies).unsqueeze(-1)
    return torch.where(step_energies.candidate_mask, log_probs, -math.inf)


def trajectory_log_prob(step_energies: StepEnergies) -> torch.Tensor:
    """``log q(c | x, rho) = sum_t log P(a_t | a_{<t})``, ``(B,)`` (Eq. 30 in [1] without 1/N!).

    :raises ValueError: on :class:`StepEnergies` of a step subset (every step is needed).
    """
    check_every_step(step_energies.step_subset, "trajectory_log_prob")
    per_step = taken_energies(step_energies) + step_log_normalizer(step_energies)
    return -per_step.sum(1)


def log_prob(
    net: EnergyNet,
    x: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    orders: torch.Tensor | None = None,
    *,
    bf16: bool = False,
) -> torch.Tensor:
    """Log-probability of each partition along its order (Eq. 30 in [1] without ``1/N!``).

    Arguments as in :func:`teacher_force`. :returns: ``(B,)``.
    """
    return trajectory_log_prob(teacher_force(net, x, labels, mask, orders, bf16=bf16))


def _one_set(net: EnergyNet, x: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or x.ndim != len(net.point_shape) + 1:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be one set (N, *point_shape), got {got}")
    labels = torch.as_tensor(labels, device=x.device)
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(
            f"labels must have shape (N,) = ({x.shape[0]},), got {tuple(labels.shape)}"
        )
    return x.unsqueeze(0), labels.unsqueeze(0)


def log_prob_orders(
    net: EnergyNet,
    x: torch.Tensor,
    labels: torch.Tensor,
    orders: torch.Tensor,
    *,
    chunk_size: int | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """Log-probabilities of ONE partition of ONE set along ``R`` orders, ``(R,)``.

    The points are encoded once; orders are processed in chunks so memory stays bounded.

    :param torch.Tensor x: ``(N, *point_shape)``.
    :param torch.Tensor labels: ``(N,)`` canonical.
    :param torch.Tensor orders: ``(R, N)``, each row a permutation of ``0..N-1``.
    :param int chunk_size: orders per pass (default: as many as keep the largest intermediate
        under :data:`MAX_CHUNK_ELEMENTS` elements).
    """
    x, labels = _one_set(net, x, labels)
    orders = torch.as_tensor(orders, device=x.device)
    if orders.ndim != 2 or orders.shape[1] != x.shape[1] or orders.shape[0] == 0:
        raise ValueError(f"orders must have shape (R, N) with R >= 1, N = {x.shape[1]}; "
                         f"got {tuple(orders.shape)}")
    h, u = encode_points(net, x, bf16=bf16)
    n = x.shape[1]
    if chunk_size is None:
        width = int(labels.max()) + 2
        per_order = n * width * max(net.config.h_dim, net.config.hidden)
        chunk_size = max(1, MAX_CHUNK_ELEMENTS // per_order)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    out = []
    for chunk in orders.split(chunk_size):
        r = chunk.shape[0]
        enc = Encodings(h.expand(r, -1, -1), u.expand(r, -1, -1))
        steps = teacher_force(net, enc, labels.expand(r, -1), None, chunk, bf16=bf16)
        out.append(trajectory_log_prob(steps))
    return torch.cat(out)

"""The clustering policy by teacher forcing: all steps and all candidates in one pass.

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

Teacher forcing evaluates every step at once. Cluster sums before each step are cumulative sums
of one-hot contributions, ``(B, N, K + 1, h_dim)``. Only one cluster changes per step, so the
``N`` cluster sums reached after each step are the taken candidates themselves, and
``S_t = sum_j g(H_j^{(t)})`` is a cumulative sum of per-step changes. ``g`` is evaluated once
per valid candidate and never on padding. Because ``f`` starts with a linear layer and ``g``
ends with one, ``g``'s output is only ever needed through ``f``'s first layer: the two are
fused into one ``hidden x hidden`` map, and ``U`` enters through its projection.

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

from .nn import EnergyNet
from .partitions import canonicalize, check_canonical

__all__ = [
    "StepEnergies",
    "Encodings",
    "SDPPResult",
    "encode_points",
    "teacher_force",
    "partition_energy",
    "taken_energies",
    "step_log_normalizer",
    "step_log_probs",
    "trajectory_log_prob",
    "log_prob",
    "log_prob_orders",
    "sdpp",
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
    """

    energies: torch.Tensor
    candidate_mask: torch.Tensor
    actions: torch.Tensor
    step_mask: torch.Tensor


class Encodings(NamedTuple):
    """Point encodings ``h`` (Eq. 12) and ``u`` (Eq. 14) in the caller's point order.

    :ivar h: ``(B, N_max, h_dim)``.
    :ivar u: ``(B, N_max, h_dim)``.
    """

    h: torch.Tensor
    u: torch.Tensor


class SDPPResult(NamedTuple):
    """Eq. (32) in [1] and what it was computed from.

    :ivar value: scalar, std / mean of ``p(c_rho | x_rho)`` over the orders.
    :ivar log_probs: ``(R,)`` log-probabilities of the partition along each order.
    :ivar orders: ``(R, N)`` the orders.
    """

    value: torch.Tensor
    log_probs: torch.Tensor
    orders: torch.Tensor


class _FusedHeads(NamedTuple):
    """``f``'s first layer folded into ``g``'s last: ``W_G g(z) = A z' + c``."""

    g_trunk: nn.Module  # all of g but its last linear layer
    weight: torch.Tensor  # A = W_G W_last, (f_hidden, g_hidden)
    bias: torch.Tensor  # c = W_G b_last, (f_hidden,)
    weight_u: torch.Tensor  # W_U, (f_hidden, h_dim)
    bias_f: torch.Tensor | None  # bias of f's first layer
    f_tail: nn.Module  # all of f but its first linear layer


def _fused_heads(net: EnergyNet) -> _FusedHeads:
    last, first = net.g[-1], net.f_net[0]
    g_dim = net.config.g_dim
    if not isinstance(last, nn.Linear) or not isinstance(first, nn.Linear):
        raise ValueError(
            "net must be an EnergyNet whose g ends and whose f starts with nn.Linear; got "
            f"{type(last).__name__} and {type(first).__name__}"
        )
    w_g, w_u = first.weight[:, :g_dim], first.weight[:, g_dim:]
    bias = w_g @ last.bias if last.bias is not None else w_g.new_zeros(w_g.shape[0])
    return _FusedHeads(net.g[:-1], w_g @ last.weight, bias, w_u, first.bias, net.f_net[1:])


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _shift(values: torch.Tensor) -> torch.Tensor:
    """``out[:, t] = values[:, t - 1]``, zero at ``t = 0`` (steps are dim 1)."""
    return torch.cat([torch.zeros_like(values[:, :1]), values[:, :-1]], 1)


def _check_index_tensor(value, name: str, shape: tuple[int, ...], device) -> torch.Tensor:
    value = torch.as_tensor(value, device=device)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(value.shape)}, expected (B, N_max) = {shape}")
    return value.long()


def _check_mask(mask, shape: tuple[int, ...], device) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    mask = torch.as_tensor(mask, device=device)
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise ValueError(
            f"mask must be a bool tensor of shape (B, N_max) = {shape}, got dtype {mask.dtype} "
            f"and shape {tuple(mask.shape)}"
        )
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("mask must be True on a prefix of each row (pad sets on the right)")
    if not bool(mask[:, 0].all()):
        raise ValueError("mask has an empty set (a row with no True); every set needs N >= 1")
    return mask


def _check_orders(orders, mask: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)
    if orders is None:
        return positions
    orders = _check_index_tensor(orders, "orders", tuple(mask.shape), mask.device)
    lengths = mask.sum(1, keepdim=True)
    valid = mask & (orders >= 0) & (orders < lengths)
    counts = torch.zeros_like(orders).scatter_add_(1, torch.where(valid, orders, 0), valid.long())
    if not bool(torch.equal(counts, mask.long())):  # each of 0..N_b-1 exactly once
        raise ValueError(
            "orders must hold, in the first N_b entries of row b, a permutation of 0..N_b-1 "
            "(e.g. torch.randperm(N_b)); padded entries are ignored"
        )
    return torch.where(mask, orders, positions)


def encode_points(net: EnergyNet, x: torch.Tensor, *, bf16: bool = False) -> Encodings:
    """Validate points and encode each once: ``x (B, N_max, *point_shape) -> Encodings``.

    :param EnergyNet net: the energy network.
    :param torch.Tensor x: ``(B, N_max, *point_shape)``, finite (padding included).
    :param bool bf16: run the encoders under bfloat16 autocast (results in ``x``'s dtype).
    :raises ValueError: on a wrong point shape, an empty set, NaN/inf, or a dtype that differs
        from the network's.
    """
    net.check_points(x)
    point_shape = net.point_shape
    if x.ndim != len(point_shape) + 2:
        raise ValueError(
            f"x has shape {tuple(x.shape)}; expected a batch (B, N_max, "
            f"{', '.join(map(str, point_shape))}); add a batch dimension with x.unsqueeze(0)"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x has shape {tuple(x.shape)}: the batch and every set need >= 1 point")
    param = next(net.parameters())
    if param.dtype != x.dtype or param.device != x.device:
        raise ValueError(
            f"x is {x.dtype} on {x.device} but net's parameters are {param.dtype} on "
            f"{param.device}; move one of them, e.g. net.to(x.dtype) or x.to(net's dtype)"
        )
    with _autocast(x.device, bf16):
        h, u = net.encode(x)
    return Encodings(h.to(x.dtype), u.to(x.dtype))


def _check_encodings(net: EnergyNet, encodings) -> Encodings:
    h, u = encodings
    h_dim = net.config.h_dim
    for name, value in (("h", h), ("u", u)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"encodings.{name} must be a floating-point tensor")
        if value.ndim != 3 or value.shape[-1] != h_dim or value.shape[:2] != h.shape[:2]:
            raise ValueError(
                f"encodings.{name} has shape {tuple(value.shape)}; expected (B, N_max, {h_dim}) "
                "like encode_points() returns"
            )
    if h.shape[0] == 0 or h.shape[1] == 0:
        raise ValueError(f"encodings have shape {tuple(h.shape)}: need B >= 1 and N_max >= 1")
    param = next(net.parameters())
    if h.dtype != param.dtype or u.dtype != param.dtype or h.device != param.device:
        raise ValueError(
            f"encodings are {h.dtype} on {h.device} but net's parameters are {param.dtype} on "
            f"{param.device}; encode with encode_points(net, x)"
        )
    return Encodings(h, u)


def teacher_force(
    net: EnergyNet,
    x: torch.Tensor | None,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    orders: torch.Tensor | None = None,
    *,
    encodings: Encodings | None = None,
    bf16: bool = False,
) -> StepEnergies:
    """Energies of every step and every candidate along given trajectories, in one pass.

    No Python loop over steps or clusters: cluster sums are prefix sums over steps, ``g`` runs
    once on the valid candidates, ``f`` once on the same rows (Eqs. 12-15 in [1]).

    :param EnergyNet net: the energy network.
    :param torch.Tensor x: points ``(B, N_max, *point_shape)`` in the caller's order (may be
        ``None`` when ``encodings`` are given).
    :param torch.Tensor labels: ``(B, N_max)`` canonical labels in the caller's point order;
        entries at padding are ignored.
    :param torch.Tensor mask: ``(B, N_max)`` bool, ``True`` on a non-empty prefix of each row
        (default: all ``True``).
    :param torch.Tensor orders: ``(B, N_max)``, row ``b`` starts with a permutation of
        ``0..N_b-1`` (default: identity); step ``t`` assigns point ``orders[b, t]``.
    :param Encodings encodings: precomputed :func:`encode_points` ``(B, N_max, h_dim)`` (may be
        expanded views, e.g. one set's encodings for many orders).
    :param bool bf16: run the network under bfloat16 autocast; sums stay in ``x``'s dtype.
    :returns: :class:`StepEnergies` with ``energies (B, N_max, K_max + 1)``, ``K_max`` the
        largest number of clusters in the batch.
    :raises ValueError: on bad points, labels, mask or orders (message says which and why).
    """
    if encodings is None:
        if x is None:
            raise ValueError("x is required unless encodings=Encodings(h, u) are given")
        encodings = encode_points(net, x, bf16=bf16)
    h, u = _check_encodings(net, encodings)
    shape, device, dtype = tuple(h.shape[:2]), h.device, h.dtype
    labels = _check_index_tensor(labels, "labels", shape, device)
    mask = _check_mask(mask, shape, device)
    check_canonical(labels, mask)
    orders = _check_orders(orders, mask)
    batch, n_max = shape

    # Read everything along the order.
    actions = canonicalize(labels.gather(1, orders), mask)
    index = orders.unsqueeze(-1).expand(-1, -1, h.shape[-1])
    h, u = h.gather(1, index), u.gather(1, index)
    width = int(actions.max()) + 2  # candidates 0..K_max
    onehot = nn.functional.one_hot(actions.clamp(min=0), width).bool() & mask.unsqueeze(-1)
    prev_actions = torch.cat([actions.new_full((batch, 1), -1), actions[:, :-1]], 1)
    num_open = prev_actions.cummax(1).values + 1  # K_t
    candidate_mask = (torch.arange(width, device=device) <= num_open.unsqueeze(-1))
    candidate_mask = candidate_mask & mask.unsqueeze(-1)
    b, t, k = candidate_mask.nonzero(as_tuple=True)  # the M valid rows, row-major

    # H_k^{(t)} + h_t for every candidate (H_{K_t} = 0 makes "open" the same formula).
    h_before = (_shift(onehot).unsqueeze(-1).to(dtype) * _shift(h).unsqueeze(2)).cumsum(1)
    heads = _fused_heads(net)
    with _autocast(device, bf16):
        hidden = heads.g_trunk(h_before[b, t, k] + h[b, t])
        proj = nn.functional.linear(hidden, heads.weight, heads.bias).to(dtype)  # W_G g(.)

    # W_G g of the taken candidate = cluster a_t's new sum; row_of maps (b, t, k) -> row.
    row_of = (candidate_mask.reshape(-1).cumsum(0) - 1).reshape(candidate_mask.shape)
    taken_row = row_of.gather(2, actions.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    proj_taken = torch.where(mask.unsqueeze(-1), proj[taken_row], 0.0)
    # last_seen[t, k]: 1 + the last step s < t with a_s = k, or 0 (cluster not open).
    steps = torch.arange(1, n_max + 1, device=device).view(1, -1, 1)
    seen = onehot.long() * steps
    last_seen = _shift(seen).cummax(1).values
    proj_seen = torch.cat([proj_taken.new_zeros(batch, 1, proj.shape[-1]), proj_taken], 1)
    prev_of_taken = last_seen.gather(2, actions.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    delta = proj_taken - proj_seen[torch.arange(batch, device=device).unsqueeze(-1), prev_of_taken]
    delta = torch.where(mask.unsqueeze(-1), delta, 0.0)
    total = _shift(delta).cumsum(1)  # W_G S_t, S_t = sum_j g(H_j^{(t)})
    pre = total[b, t] - proj_seen[b, last_seen[b, t, k]] + proj
    if heads.bias_f is not None:
        pre = pre + heads.bias_f.to(dtype)
    if not net.config.online:  # online mode: U = 0 (App. C in [1])
        u = torch.where(mask.unsqueeze(-1), u, 0.0)
        unassigned = _shift(u.flip(1)).cumsum(1).flip(1)  # U_{t+1}
        with _autocast(device, bf16):
            pre = pre + nn.functional.linear(unassigned, heads.weight_u).to(dtype)[b, t]
    with _autocast(device, bf16):
        values = heads.f_tail(pre).squeeze(-1).to(dtype)
    energies = torch.full(candidate_mask.shape, math.inf, dtype=dtype, device=device)
    energies = energies.masked_scatter(candidate_mask, values)
    return StepEnergies(energies, candidate_mask, actions, mask)


def partition_energy(
    net: EnergyNet,
    x: torch.Tensor | None,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    encodings: Encodings | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """Energy ``E[c_{1:N}] = f(sum_k g(H_k), 0)`` of full partitions only, ``(B,)``.

    The negative log of the unnormalised reward (Eq. 22 in [1]); equals the last step's taken
    energy of :func:`teacher_force` at a fraction of the cost (``g`` on the ``K`` clusters, one
    ``f``), e.g. to re-score policy samples for Eq. (27). Arguments as in :func:`teacher_force`.
    """
    if encodings is None:
        if x is None:
            raise ValueError("x is required unless encodings=Encodings(h, u) are given")
        encodings = encode_points(net, x, bf16=bf16)
    h, _ = _check_encodings(net, encodings)
    shape = tuple(h.shape[:2])
    labels = _check_index_tensor(labels, "labels", shape, h.device)
    mask = _check_mask(mask, shape, h.device)
    check_canonical(labels, mask)
    onehot = nn.functional.one_hot(labels.clamp(min=0), int(labels.max()) + 1).bool()
    onehot = onehot & mask.unsqueeze(-1)  # (B, N, K)
    H = torch.einsum("bnk,bnd->bkd", onehot.to(h.dtype), h)  # Eq. (12)
    b, k = onehot.any(1).nonzero(as_tuple=True)
    with _autocast(h.device, bf16):
        g = net.g(H[b, k]).to(h.dtype)
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
    """``log q(c | x, rho) = sum_t log P(a_t | a_{<t})``, ``(B,)`` (Eq. 30 in [1] without 1/N!)."""
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
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    out = []
    for chunk in orders.split(chunk_size):
        r = chunk.shape[0]
        enc = Encodings(h.expand(r, -1, -1), u.expand(r, -1, -1))
        steps = teacher_force(net, None, labels.expand(r, -1), None, chunk, encodings=enc,
                              bf16=bf16)
        out.append(trajectory_log_prob(steps))
    return torch.cat(out)


def sdpp(
    net: EnergyNet,
    x: torch.Tensor,
    labels: torch.Tensor,
    num_orders: int = 500,
    generator: torch.Generator | int = 0,
    *,
    chunk_size: int | None = None,
    bf16: bool = False,
) -> SDPPResult:
    """SDPP (Eq. 32 in [1]): std / mean of ``p(c_rho | x_rho)`` over random orders ``rho``.

    Computed in log space, so it does not underflow for large ``N``: with ``w = exp(l - max l)``,
    SDPP ``= std(w) / mean(w)`` (population std, ``ddof = 0``).

    :param torch.Tensor x: one set ``(N, *point_shape)``.
    :param torch.Tensor labels: ``(N,)`` canonical labels (the ground truth in [1]).
    :param int num_orders: number of uniformly random orders (500 in [1]).
    :param generator: a ``torch.Generator`` or an integer seed (a CPU generator).
    :returns: :class:`SDPPResult`.
    """
    if isinstance(num_orders, bool) or not isinstance(num_orders, int) or num_orders < 1:
        raise ValueError(f"num_orders must be a positive integer, got {num_orders!r}")
    if not isinstance(generator, torch.Generator):
        if isinstance(generator, bool) or not isinstance(generator, int):
            raise ValueError(
                f"generator must be a torch.Generator or an int seed, got {generator!r}"
            )
        generator = torch.Generator().manual_seed(generator)
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError("x must be one set (N, *point_shape)")
    keys = torch.rand((num_orders, x.shape[0]), generator=generator, device=generator.device)
    orders = keys.argsort(1).to(x.device)
    log_probs = log_prob_orders(net, x, labels, orders, chunk_size=chunk_size, bf16=bf16)
    weights = torch.exp(log_probs - log_probs.max())
    value = weights.std(correction=0) / weights.mean()
    return SDPPResult(value, log_probs, orders)

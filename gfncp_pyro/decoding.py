"""Sequential decoding of the clustering policy: sampling, greedy decoding and beam search.

A set of ``N`` points is clustered along an order ``rho`` (default: the identity). Step ``t``
assigns point ``rho[t]`` to one of the ``K_t`` open clusters or to a new cluster ``K_t``, with
the policy of Eq. (21) in [1] (the same softmax as NCP's Eq. (10))::

    P(a_t = k | a_{<t}) = softmax_k(-E[t, k]),   k = 0, ..., K_t,

where ``E[t, k] = f(G^{(t,k)}, U_{t+1})`` (Eqs. 12-15 in [1]; probability is proportional to
``exp(-E)``). The log-probability of a decoded clustering is ``sum_t log P(a_t | a_{<t})``
(Eq. (30) in [1], without the ``1/N!`` order factor); step 0 contributes 0.

Decoding is sequential over the steps, but each step costs ``O(K d)`` per decoding (times the
layer widths) thanks to an incremental state: the running cluster sums ``H_j``
``(B, S, K_cap, h_dim)``, their cached images under ``g`` and the suffix sums ``U_{t+1}`` of
``u`` over the still-unassigned points. For the ``K_t + 1`` candidates only one cluster sum
changes, so with ``S_g = sum_j g(H_j)``::

    G^{(t,k)} = S_g - g(H_k) + g(H_k + h_t),      k = 0, ..., K_t,

which also covers the new cluster (slot ``K_t`` holds ``H = 0`` and ``g(H) = 0``). Since ``g``
ends and ``f`` starts with a linear layer, ``g(.)`` is only needed through ``f``'s first layer
``W_G``: the state caches ``W_G g(H_j)`` (``hidden`` wide instead of ``g_dim``) and ``g``'s last
layer is folded into ``W_G``, exactly as in teacher forcing (:mod:`gfncp_pyro.policy`). Per
step there is one pass of ``g`` (up to its last layer) over the ``(B, S, K + 1)`` rows
``H_k + h_t`` and one pass of ``f`` (from its first activation) over the candidates; the chosen
row then replaces ``H_k`` and its projection. ``sum_j W_G g(H_j)`` is re-summed from the cached
rows at each step (``O(K)``, no drift from running updates). There is no Python loop over
points or clusters besides the loop over steps, and memory is ``O(B N d + B S K d)``.

**Host synchronisation.** The number of candidates evaluated at a step is a host integer
``W >= max K_t + 1`` (bounding it by the step index alone would make decoding quadratic in
``N``). It grows by one per step without synchronising and is re-read from the device (one
``.item()``-style sync) only when the slack exceeds a few rows: every step on the CPU, where a
sync is free, and every ``max(8, K / 4)`` steps on accelerators. The state tensors grow
geometrically with ``W``. These are the only syncs inside the step loop; they do not change the
results.

**Randomness.** :func:`sample` draws one uniform per step and decoding from ``generator`` (a
:class:`torch.Generator`, an ``int`` seed, or ``None`` for a fresh non-deterministically seeded
generator; torch's global RNG is never used) on the generator's device, then moves them to the
points' device, so a seeded CPU generator gives the same samples on every device up to
floating-point rounding. Choices use the inverse CDF of the step's softmax.

All functions run under :func:`torch.no_grad` (decoding is not differentiated; training
re-scores samples by teacher forcing) and follow the device and dtype of ``x``.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
import numbers

import torch

from .nn import EnergyNet
from .partitions import PAD_LABEL, canonicalize, lengths_to_mask
from .policy import _fused_heads

__all__ = ["sample", "greedy", "beam_search"]

_INITIAL_CAPACITY = 16
"""Cluster slots allocated before the first growth of the decoding state."""


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _prepare(net: EnergyNet, x: torch.Tensor, mask, orders):
    """Validate and batch the inputs.

    :returns: ``(x (B, N, *point_shape), mask (B, N) bool, orders (B, N) long, batched)``
        where ``orders`` is the identity on padded positions.
    """
    net.check_points(x, "x")
    point_ndim = len(net.point_shape)
    if x.ndim not in (point_ndim + 1, point_ndim + 2):
        raise ValueError(
            f"x has shape {tuple(x.shape)}; expected one set (N, *point_shape) or a padded batch "
            f"(B, N_max, *point_shape) with point_shape {net.point_shape}"
        )
    param = next(net.parameters())
    if param.dtype != x.dtype or param.device != x.device:
        raise ValueError(
            f"x has dtype {x.dtype} on {x.device} but the network's parameters have dtype "
            f"{param.dtype} on {param.device}; move one of them, e.g. net.to(x)"
        )
    batched = x.ndim == point_ndim + 2
    if not batched:
        x = x.unsqueeze(0)
    batch, n_max = x.shape[:2]
    if batch == 0 or n_max == 0:
        raise ValueError(f"x has shape {tuple(x.shape)}: there is nothing to cluster (N = 0)")

    if mask is None:
        mask = torch.ones(batch, n_max, dtype=torch.bool, device=x.device)
    else:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ValueError("mask must be a boolean torch.Tensor (True on real points)")
        mask = mask.to(x.device)
        if not batched:
            mask = mask.unsqueeze(0)
        if mask.shape != (batch, n_max):
            raise ValueError(
                f"mask has shape {tuple(mask.shape)}, expected {(batch, n_max) if batched else (n_max,)}"
            )
        lengths = mask.sum(-1)
        if not torch.equal(mask, lengths_to_mask(lengths, n_max)):
            raise ValueError("mask must be True on a prefix of each row (right-padded sets)")
        if bool((lengths == 0).any()):
            raise ValueError("mask has a set with no points (N = 0); every set needs one point")

    positions = torch.arange(n_max, device=x.device).expand(batch, n_max)
    if orders is None:
        return x, mask, positions, batched
    if not isinstance(orders, torch.Tensor) or orders.is_floating_point() or orders.dtype == torch.bool:
        raise ValueError("orders must be an integer torch.Tensor holding a permutation per set")
    orders = orders.to(x.device).long()
    if not batched:
        orders = orders.unsqueeze(0)
    if orders.shape != (batch, n_max):
        raise ValueError(
            f"orders has shape {tuple(orders.shape)}, expected {(batch, n_max) if batched else (n_max,)}"
        )
    lengths = mask.sum(-1, keepdim=True)
    in_range = ((orders >= 0) & (orders < lengths)) | ~mask
    index = torch.where(mask & in_range, orders, torch.zeros_like(orders))
    counts = torch.zeros_like(orders).scatter_add_(1, index, mask.long())
    if not bool(in_range.all()) or not torch.equal(counts, mask.long()):
        raise ValueError(
            "orders must hold, in the first N_b positions of each row, a permutation of "
            "0, ..., N_b - 1 (N_b = number of real points of set b); pass None for the identity"
        )
    return x, mask, torch.where(mask, orders, positions), batched


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _make_generator(generator) -> torch.Generator:
    """The given generator, a CPU generator seeded with an int, or a fresh random one."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        fresh = torch.Generator()
        fresh.seed()
        return fresh
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")


# --------------------------------------------------------------------------------------------
# Incremental state
# --------------------------------------------------------------------------------------------


class _ClusterState:
    """Running cluster sums of ``S`` decodings of each of ``B`` sets (Eqs. 12-13 in [1]).

    ``g`` is only ever read through ``f``'s first linear layer, so the state caches the
    projections ``P_j = W_G g(H_j)`` (``W_G``: the ``G`` columns of that layer) instead of the
    ``g_dim``-wide ``g(H_j)``, and ``g``'s last linear layer is folded into ``W_G``
    (:func:`gfncp_pyro.policy._fused_heads`, shared with teacher forcing).

    :ivar H: cluster sums ``(B, S, K_cap, h_dim)``, zero on unused slots.
    :ivar P: ``W_G g(H)`` ``(B, S, K_cap, hidden)``, zero on unused slots.
    :ivar K: number of open clusters ``(B, S)``.
    :ivar int width: host bound ``>= max K + 1`` on the candidates of the next step.
    """

    def __init__(self, heads, h0: torch.Tensor, num_samples: int, n_max: int):
        batch, h_dim = h0.shape
        self.heads = heads
        self.n_max = n_max
        capacity = min(n_max, _INITIAL_CAPACITY)
        p0 = self._project(h0)
        self.H = h0.new_zeros(batch, num_samples, capacity, h_dim)
        self.P = p0.new_zeros(batch, num_samples, capacity, p0.shape[-1])
        self.H[:, :, 0] = h0.unsqueeze(1)
        self.P[:, :, 0] = p0.unsqueeze(1)
        self.K = torch.ones(batch, num_samples, dtype=torch.long, device=h0.device)
        self.width = 2
        self._synced_width = 2
        self._sync_every_step = h0.device.type == "cpu"

    def _project(self, H: torch.Tensor) -> torch.Tensor:
        """``W_G g(H)``: ``(..., h_dim) -> (..., hidden)``."""
        return torch.nn.functional.linear(self.heads.g_trunk(H), self.heads.weight, self.heads.bias)

    def candidates(self, h_t: torch.Tensor, offset_t: torch.Tensor):
        """Energies of the candidates of one step (Eqs. 12-15 in [1]).

        ``f``'s first layer applied to ``(G^{(t,k)}, U_{t+1})`` is
        ``sum_j P_j - P_k + W_G g(H_k + h_t) + offset_t``.

        :param h_t: ``h`` of the point assigned at this step, ``(B, h_dim)``.
        :param offset_t: ``W_U U_{t+1}`` plus the layer's bias, ``(B, hidden)``.
        :returns: ``E (B, S, W)``, ``valid (B, S, W)`` (``k <= K``), and the candidate rows
            ``H_k + h_t`` ``(B, S, W, h_dim)`` with their projections ``(B, S, W, hidden)``.
        """
        width = self.width
        if width > self.H.shape[2]:
            self._grow(width)
        P = self.P[:, :, :width]
        rows = self.H[:, :, :width] + h_t[:, None, None, :]
        projected = self._project(rows)
        first_layer = P.sum(2, keepdim=True) - P + projected + offset_t[:, None, None, :]
        energy = self.heads.f_tail(first_layer).squeeze(-1)
        valid = torch.arange(width, device=energy.device) <= self.K.unsqueeze(-1)
        return energy, valid, rows, projected

    def commit(self, choice, active, rows, projected, parent=None):
        """Assign the step's point to cluster ``choice`` ``(B, S)`` (``0 <= choice < W``).

        ``K`` only grows where ``active`` ``(B, S)``. Masks are prefixes, so a decoding is
        inactive only after its set has ended; its sums are then no longer read and are
        updated regardless (they stay finite), which saves masking them.

        With ``parent`` ``(B, S)`` (beam search) decoding ``s`` first becomes a copy of decoding
        ``parent[b, s]``; ``rows``, ``projected`` and ``choice`` refer to the parents'
        candidates.
        """
        if parent is not None:
            self.H = _take(self.H, parent)
            self.P = _take(self.P, parent)
            self.K = self.K.gather(1, parent)
            rows = _take(rows, parent)
            projected = _take(projected, parent)
        slot = choice[..., None, None]
        for state, new in ((self.H, rows), (self.P, projected)):
            index = slot.expand(-1, -1, 1, state.shape[-1])
            state.scatter_(2, index, new.gather(2, index))
        self.K = self.K + (active & (choice == self.K)).long()
        self._advance()

    def _advance(self):
        # K grows by at most one per step; re-read the true maximum when the slack is too big.
        self.width = min(self.width + 1, self.n_max)
        slack = 1 if self._sync_every_step else max(8, self._synced_width // 4)
        if self.width - self._synced_width >= slack:
            self.width = int(self.K.max()) + 1
            self._synced_width = self.width

    def _grow(self, width: int):
        capacity = min(self.n_max, max(width, 2 * self.H.shape[2]))
        extra = capacity - self.H.shape[2]
        self.H = torch.cat([self.H, self.H.new_zeros(self.H.shape[:2] + (extra, self.H.shape[3]))], 2)
        self.P = torch.cat([self.P, self.P.new_zeros(self.P.shape[:2] + (extra, self.P.shape[3]))], 2)


def _take(values: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """``values[b, parent[b, s]]`` for ``values (B, S, ...)`` and ``parent (B, S)``."""
    index = parent.reshape(parent.shape + (1,) * (values.ndim - 2)).expand(parent.shape + values.shape[2:])
    return values.gather(1, index)


def _encode_along(net: EnergyNet, heads, x: torch.Tensor, mask: torch.Tensor, orders: torch.Tensor):
    """``h`` of the points along the order and the ``U_{t+1}`` term of ``f``'s first layer.

    :returns: ``h (B, N, h_dim)`` with ``h[:, t] = h(x[rho[t]])``, and ``offset (B, N, hidden)``
        with ``offset[:, t] = W_U U_{t+1} + b`` where ``U_{t+1} = sum_{s > t} u(x[rho[s]])``
        over real points (Eq. 14 in [1]; ``U = 0`` in online mode, App. C).
    """
    h, u = net.encode(x)
    index = orders.unsqueeze(-1).expand(-1, -1, h.shape[-1])
    h = h.gather(1, index)
    u = torch.where(mask.unsqueeze(-1), u.gather(1, index), 0.0)
    if net.config.online:
        u = torch.zeros_like(u)
    suffix = u.flip(1).cumsum(1).flip(1)
    U_next = torch.cat([suffix[:, 1:], torch.zeros_like(suffix[:, :1])], 1)
    return h, torch.nn.functional.linear(U_next, heads.weight_u, heads.bias_f)


def _to_caller_order(actions: torch.Tensor, orders: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Labels ``(B, S, N)`` in the caller's point order, canonical, from actions along ``orders``."""
    index = orders.unsqueeze(1).expand_as(actions)
    labels = torch.full_like(actions, PAD_LABEL).scatter_(2, index, actions)
    return canonicalize(labels, mask.unsqueeze(1).expand_as(labels))


def _decode(net, x, mask, orders, num_samples, temperature, uniforms):
    """Decode ``num_samples`` clusterings per set; argmax when ``uniforms`` is ``None``.

    :param uniforms: ``(B, S, N)`` uniforms on ``(0, 1]`` for inverse-CDF sampling, or ``None``.
    :returns: actions along the orders ``(B, S, N)`` and their log-probabilities ``(B, S)``
        under the policy at ``temperature``.
    """
    batch, n_max = mask.shape
    heads = _fused_heads(net)
    h, offset = _encode_along(net, heads, x, mask, orders)
    state = _ClusterState(heads, h[:, 0], num_samples, n_max)
    actions = torch.full((batch, num_samples, n_max), PAD_LABEL, dtype=torch.long, device=x.device)
    actions[:, :, 0] = 0
    log_prob = h.new_zeros(batch, num_samples)
    for t in range(1, n_max):
        energy, valid, rows, projected = state.candidates(h[:, t], offset[:, t])
        logits = torch.where(valid, energy / -temperature, -math.inf)
        step_log_probs = torch.log_softmax(logits, -1)
        if uniforms is None:
            choice = step_log_probs.argmax(-1)
        else:
            cdf = step_log_probs.exp().cumsum(-1)
            target = uniforms[:, :, t, None] * cdf[..., -1:]
            choice = torch.minimum((cdf < target).sum(-1), state.K)
        active = mask[:, t, None].expand(batch, num_samples)
        chosen = step_log_probs.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
        log_prob = log_prob + torch.where(active, chosen, 0.0)
        state.commit(choice, active, rows, projected)
        actions[:, :, t] = torch.where(active, choice, PAD_LABEL)
    return actions, log_prob


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def sample(
    net: EnergyNet,
    x: torch.Tensor,
    num_samples: int = 1,
    mask: torch.Tensor | None = None,
    orders: torch.Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample clusterings from the policy of Eq. (21) in [1] along the given orders.

    All samples of a set share one encoding of its points and are decoded in parallel.

    :param EnergyNet net: the energy network.
    :param torch.Tensor x: one set ``(N, *point_shape)`` or a padded batch
        ``(B, N_max, *point_shape)``.
    :param int num_samples: samples ``S`` per set.
    :param torch.Tensor mask: optional boolean ``(B, N_max)`` (or ``(N,)``), ``True`` on real
        points (a prefix of each row).
    :param torch.Tensor orders: optional ``(B, N_max)`` (or ``(N,)``): the first ``N_b``
        entries of row ``b`` are a permutation of ``0..N_b-1``, the order in which points are
        assigned (entries past ``N_b`` are ignored). Default: the identity.
    :param float temperature: positive; the step logits ``-E`` are divided by it.
    :param generator: a :class:`torch.Generator` (uniforms are drawn on its device and moved
        to ``x``'s device), an ``int`` seed (a CPU generator), or ``None`` (a fresh generator
        seeded non-deterministically).
    :returns: ``(labels, log_prob)``: canonical labels **in the caller's point order**,
        ``(B, S, N_max)`` with :data:`~gfncp_pyro.partitions.PAD_LABEL` at padding (``(S, N)``
        for one set), and ``log q(c | x, rho)`` ``(B, S)`` (``(S,)``), the log-probability
        along the sample's order (Eq. (30) in [1] without ``1/N!``) **under the tempered
        policy** ``softmax(-E / temperature)`` that was sampled from (at ``temperature = 1``
        the model's policy).
    """
    num_samples = _check_positive_int(num_samples, "num_samples")
    if not isinstance(temperature, numbers.Real) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    x, mask, orders, batched = _prepare(net, x, mask, orders)
    generator = _make_generator(generator)
    uniforms = 1.0 - torch.rand(
        mask.shape[:1] + (num_samples,) + mask.shape[1:], generator=generator,
        dtype=torch.float64, device=generator.device,
    )
    uniforms = uniforms.to(device=x.device, dtype=x.dtype)
    actions, log_prob = _decode(net, x, mask, orders, num_samples, float(temperature), uniforms)
    labels = _to_caller_order(actions, orders, mask)
    return (labels, log_prob) if batched else (labels[0], log_prob[0])


@torch.no_grad()
def greedy(
    net: EnergyNet,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    orders: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding: the most probable assignment at each step (Sec. 5.3 of [1]).

    Deterministic; ties go to the lowest cluster index.

    :param EnergyNet net: the energy network.
    :param torch.Tensor x: ``(N, *point_shape)`` or ``(B, N_max, *point_shape)``.
    :param torch.Tensor mask: optional boolean ``(B, N_max)`` (as in :func:`sample`).
    :param torch.Tensor orders: optional ``(B, N_max)`` (as in :func:`sample`).
    :returns: ``(labels, log_prob)``: canonical labels in the caller's point order
        ``(B, N_max)`` (``(N,)`` for one set) and their log-probability under the policy along
        the order ``(B,)`` (scalar).
    """
    x, mask, orders, batched = _prepare(net, x, mask, orders)
    actions, log_prob = _decode(net, x, mask, orders, 1, 1.0, None)
    labels = _to_caller_order(actions, orders, mask)[:, 0]
    log_prob = log_prob[:, 0]
    return (labels, log_prob) if batched else (labels[0], log_prob[0])


@torch.no_grad()
def beam_search(
    net: EnergyNet,
    x: torch.Tensor,
    beam_width: int = 32,
    top_k: int | None = None,
    order: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable clusterings of one set under the policy, by beam search.

    Keeps the ``beam_width`` most probable prefixes (by ``sum_t log P(a_t | a_{<t})``, Eq. (30)
    in [1]) at every step. Distinct prefixes have distinct children and canonical actions are
    in one-to-one correspondence with partitions, so the beams never hold duplicates. With
    ``beam_width >= Bell(N)`` nothing is pruned and the result is the exact top-``k``.

    :param EnergyNet net: the energy network.
    :param torch.Tensor x: one set ``(N, *point_shape)``.
    :param int beam_width: number of prefixes kept per step.
    :param int top_k: number of clusterings returned (default ``beam_width``); at most
        ``beam_width``. Fewer are returned when the set has fewer partitions.
    :param torch.Tensor order: optional permutation ``(N,)`` of the points (default identity).
    :returns: ``(labels, log_prob)``: canonical labels in the caller's point order ``(M, N)``
        and their log-probabilities ``(M,)``, sorted by decreasing log-probability,
        ``M = min(top_k, Bell(N))``.
    """
    beam_width = _check_positive_int(beam_width, "beam_width")
    top_k = beam_width if top_k is None else _check_positive_int(top_k, "top_k")
    if top_k > beam_width:
        raise ValueError(f"top_k ({top_k}) must not exceed beam_width ({beam_width})")
    net.check_points(x, "x")
    if x.ndim != len(net.point_shape) + 1:
        raise ValueError(
            f"beam_search decodes one set: x must have shape (N, *point_shape) = "
            f"(N, {', '.join(map(str, net.point_shape))}), got {tuple(x.shape)}"
        )
    x, mask, orders, _ = _prepare(net, x, None, order)
    n = mask.shape[1]
    heads = _fused_heads(net)
    h, offset = _encode_along(net, heads, x, mask, orders)
    state = _ClusterState(heads, h[:, 0], beam_width, n)
    actions = torch.full((1, beam_width, n), PAD_LABEL, dtype=torch.long, device=x.device)
    actions[:, :, 0] = 0
    scores = torch.full((1, beam_width), -math.inf, dtype=h.dtype, device=x.device)
    scores[:, 0] = 0.0
    active = torch.ones(1, beam_width, dtype=torch.bool, device=x.device)
    for t in range(1, n):
        energy, valid, rows, projected = state.candidates(h[:, t], offset[:, t])
        logits = torch.where(valid, -energy, -math.inf)
        totals = scores.unsqueeze(-1) + torch.log_softmax(logits, -1)
        scores, flat = totals.reshape(1, -1).topk(beam_width, dim=-1)
        parent = torch.div(flat, energy.shape[-1], rounding_mode="floor")
        choice = flat - parent * energy.shape[-1]
        state.commit(choice, active, rows, projected, parent=parent)
        actions = _take(actions, parent)
        actions[:, :, t] = choice
    found = int(torch.isfinite(scores).sum())
    keep = min(top_k, found)
    labels = _to_caller_order(actions[:, :keep], orders, mask)
    return labels[0], scores[0, :keep]

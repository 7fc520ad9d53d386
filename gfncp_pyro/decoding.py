"""Sequential decoding of the clustering policy: sampling, greedy decoding and beam search.

A set of ``N`` points is clustered along an order ``rho`` (default: the identity). Step ``t``
assigns point ``rho[t]`` to one of the ``K_t`` open clusters or to a new cluster ``K_t``, with
the policy of Eq. (21) in [1] (the same softmax as NCP's Eq. (10))::

    P(a_t = k | a_{<t}) = softmax_k(-E[t, k]),   k = 0, ..., K_t,

where ``E[t, k] = f(G^{(t,k)}, U_{t+1})`` (Eqs. 12-15 in [1]; probability is proportional to
``exp(-E)``). The log-probability of a decoded clustering is ``sum_t log P(a_t | a_{<t})``
(Eq. (30) in [1], without the ``1/N!`` order factor); step 0 contributes 0.

Decoding is sequential over the steps, but each step costs ``O(K d)`` per decoding (times the
layer widths) thanks to an incremental state: the running cluster sums ``H_j``, their cached
images under ``g`` and the suffix sums ``U_{t+1}`` of ``u`` over the still-unassigned points.
For the ``K_t + 1`` candidates only one cluster sum changes, so with ``S_g = sum_j g(H_j)``::

    G^{(t,k)} = S_g - g(H_k) + g(H_k + h_t),      k = 0, ..., K_t,

which also covers the new cluster (slot ``K_t`` holds ``H = 0`` and ``g(H) = 0``). Since ``g``
ends and ``f`` starts with a linear layer, ``g(.)`` is only needed through ``f``'s first layer
``W_G``: the state caches ``W_G g(H_j)`` (``hidden`` wide instead of ``g_dim``) and ``g``'s last
layer is folded into ``W_G``; and since ``g`` starts with an affine layer ``W_in z + b_in``, the
state keeps the sums mapped, ``W_in H_j`` ``(B, S, K_cap, width)``, exactly as in teacher
forcing (:mod:`gfncp_pyro.policy`). Per step there is one pass of ``g`` (from its first
activation to its last layer) over the ``(B, S, K + 1)`` rows ``W_in (H_k + h_t) + b_in`` and
one pass of ``f`` (from its first activation) over the candidates; the chosen cluster's mapped
sum then grows by ``W_in h_t`` and its projection is replaced. ``sum_j W_G g(H_j)`` is
re-summed from the cached rows at each step (``O(K)``, no drift from running updates). There is
no Python loop over points or clusters besides the loop over steps, and memory is
``O(B N d + B S K d)``.

**Host synchronisation.** The number of candidates evaluated at a step is a host integer
``W >= max K_t + 1`` (bounding it by the step index alone would make decoding quadratic in
``N``). It grows by one per step without synchronising and is re-read from the device (one
``.item()``-style sync) only when the slack exceeds a few rows: every step on the CPU, where a
sync is free, and every ``max(8, K / 4)`` steps on accelerators. The state tensors grow
geometrically with ``W``. On the CPU each step also evaluates only its valid candidates
``k <= K`` of each decoding (located with a sync); accelerators evaluate all ``W`` slots. These
are the only syncs inside the step loop; they do not change the results.

**Fused CPU path.** On the CPU, with the default layers (``nn.Linear`` and single-slope
``nn.PReLU``), decoding runs :func:`gfncp_pyro.fused_decoding.decode_fused`: the same floating-point operations on the
same operands, hence the same labels and bit-for-bit the same log-probabilities
(``tests/test_decoding.py``), with about half the tensor operations per step: ``g`` and ``f``
as direct ``addmm`` / in-place ``leaky_relu_`` calls on 2-D views, the state flat over the
decodings with one ``index_add_`` / ``index_copy_`` commit, padding written once at the end,
and, for a single decoding (greedy decoding of one set), the choice and ``K`` on the host.
A step then costs little more than its ten small matrix products (greedy decoding of N = 1,000
points in about 0.09 s on one thread, ``benchmarks/results/decoding.md``). ``torch.compile`` was
not tried: each step has a new width ``K + 1`` (recompilations or dynamic-shape guards), and
what is left per step is mostly the matrix products themselves. Set :data:`FUSED` to ``False`` for the
plain path (which accelerators always take).

**Randomness.** :func:`sample` draws one uniform per step and decoding from ``generator`` (a
:class:`torch.Generator`, an ``int`` seed, or ``None`` for torch's global RNG, which
``pyro.set_rng_seed`` controls) on the generator's device, then moves them to the
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

from ._checks import (
    check_encodings,
    check_mask,
    check_orders,
    check_points,
    check_positive_int,
    make_generator,
)
from .nn import EnergyNet
from .fused_decoding import INITIAL_CAPACITY as _INITIAL_CAPACITY
from .fused_decoding import decode_fused, fused_chains
from .partitions import PAD_LABEL, canonicalize

__all__ = ["sample", "greedy", "beam_search"]



# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _prepare(net: EnergyNet, x: torch.Tensor, mask, orders, encodings=None):
    """Validate and batch the inputs (checks shared with teacher forcing).

    :returns: ``(x (B, N, *point_shape), mask (B, N) bool, orders (B, N) long, encodings,
        batched)`` where ``orders`` is the identity on padded positions and ``encodings`` is
        ``None`` or ``(h, u)``, each ``(B, N, h_dim)``.
    """
    x, batched = check_points(net, x, single_set=True)
    mask = check_mask(mask, tuple(x.shape[:2]), x.device, batched)
    if encodings is not None:
        h, u = encodings
        if not batched and isinstance(h, torch.Tensor) and isinstance(u, torch.Tensor):
            h, u = h.unsqueeze(0), u.unsqueeze(0)
        encodings = check_encodings(net, (h, u), tuple(x.shape[:2]))
    return x, mask, check_orders(orders, mask, batched), encodings, batched


# --------------------------------------------------------------------------------------------
# Incremental state
# --------------------------------------------------------------------------------------------


class _ClusterState:
    """Running cluster sums of ``S`` decodings of each of ``B`` sets (Eqs. 12-13 in [1]).

    ``g`` is only ever read through ``f``'s first linear layer, so the state caches the
    projections ``P_j = W_G g(H_j)`` (``W_G``: the ``G`` columns of that layer) instead of the
    ``g_dim``-wide ``g(H_j)``, with ``g``'s last linear layer folded into ``W_G``; and the
    cluster sums only enter ``g`` through its first, affine layer, so the state keeps them
    mapped, ``Y_j = W_in H_j``, and a candidate's input is ``Y_k + W_in h_t + b_in``
    (:meth:`gfncp_pyro.nn.EnergyNet.fused_heads`, shared with teacher forcing).

    :ivar Y: mapped cluster sums ``W_in H`` ``(B, S, K_cap, width)``, zero on unused slots.
    :ivar P: ``W_G g(H)`` ``(B, S, K_cap, hidden)``, zero on unused slots.
    :ivar K: number of open clusters ``(B, S)``.
    :ivar int width: host bound ``>= max K + 1`` on the candidates of the next step.
    """

    def __init__(self, heads, y0: torch.Tensor, num_samples: int, n_max: int):
        batch, width_in = y0.shape
        self.heads = heads
        self.bias_in = heads.input_map()[1]
        self.n_max = n_max
        capacity = min(n_max, _INITIAL_CAPACITY)
        p0 = heads.project_mapped(self._biased(y0))
        self.Y = y0.new_zeros(batch, num_samples, capacity, width_in)
        self.P = p0.new_zeros(batch, num_samples, capacity, p0.shape[-1])
        self.Y[:, :, 0] = y0.unsqueeze(1)
        self.P[:, :, 0] = p0.unsqueeze(1)
        self.K = torch.ones(batch, num_samples, dtype=torch.long, device=y0.device)
        self.width = 2
        self._synced_width = 2
        self._sync_every_step = y0.device.type == "cpu"

    def _biased(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias_in is None else y + self.bias_in

    def candidates(self, y_t: torch.Tensor, offset_t: torch.Tensor):
        """Energies of the candidates of one step (Eqs. 12-15 in [1]).

        ``f``'s first layer applied to ``(G^{(t,k)}, U_{t+1})`` is
        ``sum_j P_j - P_k + W_G g(H_k + h_t) + offset_t``.

        On the CPU only the valid slots ``k <= K`` are evaluated when some are not (finding them
        syncs, which is free there; about a third fewer rows than ``W`` per decoding when ``K``
        differs across the batch); on accelerators every slot is, without a sync.

        :param y_t: ``W_in h`` of the point assigned at this step, ``(B, width)``.
        :param offset_t: ``W_U U_{t+1}`` plus the layer's bias, ``(B, hidden)``.
        :returns: ``E (B, S, W)`` (arbitrary where not valid), ``valid (B, S, W)``
            (``k <= K``), and the candidates' projections ``W_G g(H_k + h_t)``
            ``(B, S, W, hidden)`` (zero where not valid on the CPU).
        """
        width = self.width
        if width > self.Y.shape[2]:
            self._grow(width)
        valid = torch.arange(width, device=y_t.device) <= self.K.unsqueeze(-1)
        P = self.P[:, :, :width]
        others = P.sum(2, keepdim=True) - P  # sum_{j != k} P_j
        point = self._biased(y_t)
        if not self._sync_every_step or bool(valid.all()):
            projected = self.heads.project_mapped(self.Y[:, :, :width] + point[:, None, None, :])
            energy = self.heads.energy(others + projected + offset_t[:, None, None, :])
            return energy, valid, projected
        index = valid.nonzero(as_tuple=True)
        projected = self.heads.project_mapped(self.Y[:, :, :width][index] + point[index[0]])
        values = self.heads.energy(others[index] + projected + offset_t[index[0]])
        energy = values.new_full(valid.shape, math.inf).index_put_(index, values)
        projected = projected.new_zeros(valid.shape + projected.shape[-1:]).index_put_(
            index, projected)
        return energy, valid, projected

    def commit(self, choice, active, y_t, projected, parent=None):
        """Assign the step's point to cluster ``choice`` ``(B, S)`` (``0 <= choice < W``).

        ``Y_choice`` grows by ``y_t = W_in h_t`` ``(B, width)`` and ``P_choice`` becomes the
        chosen candidate's projection. ``K`` only grows where ``active`` ``(B, S)``. Masks are
        prefixes, so a decoding is inactive only after its set has ended; its sums are then no
        longer read and are updated regardless (they stay finite), which saves masking them.

        With ``parent`` ``(B, S)`` (beam search) decoding ``s`` first becomes a copy of decoding
        ``parent[b, s]``; ``projected`` and ``choice`` refer to the parents' candidates.
        """
        if parent is not None:
            self.Y = _take(self.Y, parent)
            self.P = _take(self.P, parent)
            self.K = self.K.gather(1, parent)
            projected = _take(projected, parent)
        slot = choice[..., None, None]
        index = slot.expand(-1, -1, 1, self.Y.shape[-1])
        self.Y.scatter_(2, index, self.Y.gather(2, index) + y_t[:, None, None, :])
        index = slot.expand(-1, -1, 1, self.P.shape[-1])
        self.P.scatter_(2, index, projected.gather(2, index))
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
        capacity = min(self.n_max, max(width, 2 * self.Y.shape[2]))
        extra = capacity - self.Y.shape[2]
        pad = lambda v: v.new_zeros(v.shape[:2] + (extra, v.shape[3]))  # noqa: E731
        self.Y = torch.cat([self.Y, pad(self.Y)], 2)
        self.P = torch.cat([self.P, pad(self.P)], 2)


def _take(values: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """``values[b, parent[b, s]]`` for ``values (B, S, ...)`` and ``parent (B, S)``."""
    index = parent.reshape(parent.shape + (1,) * (values.ndim - 2)).expand(parent.shape + values.shape[2:])
    return values.gather(1, index)


def _encode_along(net: EnergyNet, heads, x: torch.Tensor, mask: torch.Tensor, orders: torch.Tensor,
                  encodings=None):
    """Mapped ``h`` of the points along the order and the ``U_{t+1}`` term of ``f``'s first layer.

    The points are encoded here unless ``encodings`` ``(h, u)`` are given.

    :returns: ``y (B, N, width)`` with ``y[:, t] = W_in h(x[rho[t]])`` (``g``'s first layer
        without its bias, :meth:`~gfncp_pyro.nn.FusedHeads.input_map`), and
        ``offset (B, N, hidden)`` with ``offset[:, t] = W_U U_{t+1} + b`` where
        ``U_{t+1} = sum_{s > t} u(x[rho[s]])`` over real points (Eq. 14 in [1]; ``U = 0`` in
        online mode, App. C).
    """
    h, u = net.encode(x) if encodings is None else encodings
    index = orders.unsqueeze(-1).expand(-1, -1, h.shape[-1])
    y = torch.nn.functional.linear(h.gather(1, index), heads.input_map()[0])
    u = torch.where(mask.unsqueeze(-1), u.gather(1, index), 0.0)
    if net.config.online:
        u = torch.zeros_like(u)
    suffix = u.flip(1).cumsum(1).flip(1)
    U_next = torch.cat([suffix[:, 1:], torch.zeros_like(suffix[:, :1])], 1)
    return y, torch.nn.functional.linear(U_next, heads.weight_u, heads.bias_f)


def _to_caller_order(actions: torch.Tensor, orders: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Labels ``(B, S, N)`` in the caller's point order, canonical, from actions along ``orders``."""
    index = orders.unsqueeze(1).expand_as(actions)
    labels = torch.full_like(actions, PAD_LABEL).scatter_(2, index, actions)
    return canonicalize(labels, mask.unsqueeze(1).expand_as(labels))


def _decode(net, x, mask, orders, num_samples, temperature, uniforms, encodings=None):
    """Decode ``num_samples`` clusterings per set; argmax when ``uniforms`` is ``None``.

    Runs the fused CPU path (:func:`~gfncp_pyro.fused_decoding.decode_fused`) when :data:`FUSED` is set, ``x`` is on the
    CPU and the network's ``g`` and ``f`` are plain chains of ``nn.Linear`` and single-slope
    ``nn.PReLU`` (the default architecture); otherwise the plain path below. Both give the same
    labels and bit-for-bit the same log-probabilities (``tests/test_decoding.py``).

    :param uniforms: ``(B, S, N)`` uniforms on ``(0, 1]`` for inverse-CDF sampling, or ``None``.
    :returns: actions along the orders ``(B, S, N)`` and their log-probabilities ``(B, S)``
        under the policy at ``temperature``.
    """
    heads = net.fused_heads()
    y, offset = _encode_along(net, heads, x, mask, orders, encodings)
    if FUSED and x.device.type == "cpu":
        chains = fused_chains(heads)
        if chains is not None:
            return decode_fused(heads, chains, y, offset, mask, num_samples, temperature, uniforms)
    batch, n_max = mask.shape
    state = _ClusterState(heads, y[:, 0], num_samples, n_max)
    actions = torch.full((batch, num_samples, n_max), PAD_LABEL, dtype=torch.long, device=x.device)
    actions[:, :, 0] = 0
    log_prob = y.new_zeros(batch, num_samples)
    for t in range(1, n_max):
        energy, valid, projected = state.candidates(y[:, t], offset[:, t])
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
        state.commit(choice, active, y[:, t], projected)
        actions[:, :, t] = torch.where(active, choice, PAD_LABEL)
    return actions, log_prob


FUSED = True
"""Use the fused CPU decoding path where it applies (see :func:`_decode`)."""


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
    *,
    encodings: tuple[torch.Tensor, torch.Tensor] | None = None,
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
        to ``x``'s device), an ``int`` seed (a CPU generator), or ``None`` (torch's global
        RNG, which ``pyro.set_rng_seed`` controls).
    :param encodings: optional precomputed ``(h, u)`` of ``x`` from
        :func:`gfncp_pyro.policy.encode_points` (``(B, N_max, h_dim)`` each, ``(N, h_dim)`` for
        one set), e.g. the training pass's, to skip encoding the points again.
    :returns: ``(labels, log_prob)``: canonical labels **in the caller's point order**,
        ``(B, S, N_max)`` with :data:`~gfncp_pyro.partitions.PAD_LABEL` at padding (``(S, N)``
        for one set), and ``log q(c | x, rho)`` ``(B, S)`` (``(S,)``), the log-probability
        along the sample's order (Eq. (30) in [1] without ``1/N!``) **under the tempered
        policy** ``softmax(-E / temperature)`` that was sampled from (at ``temperature = 1``
        the model's policy).
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    if not isinstance(temperature, numbers.Real) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    x, mask, orders, encodings, batched = _prepare(net, x, mask, orders, encodings)
    generator = make_generator(generator)
    uniforms = 1.0 - torch.rand(
        mask.shape[:1] + (num_samples,) + mask.shape[1:], generator=generator,
        dtype=torch.float64, device=generator.device,
    )
    uniforms = uniforms.to(device=x.device, dtype=x.dtype)
    actions, log_prob = _decode(net, x, mask, orders, num_samples, float(temperature), uniforms,
                                encodings)
    labels = _to_caller_order(actions, orders, mask)
    return (labels, log_prob) if batched else (labels[0], log_prob[0])


@torch.no_grad()
def greedy(
    net: EnergyNet,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    orders: torch.Tensor | None = None,
    *,
    encodings: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding: the most probable assignment at each step (Sec. 5.3 of [1]).

    Deterministic; ties go to the lowest cluster index.

    :param EnergyNet net: the energy network.
    :param torch.Tensor x: ``(N, *point_shape)`` or ``(B, N_max, *point_shape)``.
    :param torch.Tensor mask: optional boolean ``(B, N_max)`` (as in :func:`sample`).
    :param torch.Tensor orders: optional ``(B, N_max)`` (as in :func:`sample`).
    :param encodings: optional precomputed ``(h, u)`` of ``x`` (as in :func:`sample`).
    :returns: ``(labels, log_prob)``: canonical labels in the caller's point order
        ``(B, N_max)`` (``(N,)`` for one set) and their log-probability under the policy along
        the order ``(B,)`` (scalar).
    """
    x, mask, orders, encodings, batched = _prepare(net, x, mask, orders, encodings)
    actions, log_prob = _decode(net, x, mask, orders, 1, 1.0, None, encodings)
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
    beam_width = check_positive_int(beam_width, "beam_width")
    top_k = beam_width if top_k is None else check_positive_int(top_k, "top_k")
    if top_k > beam_width:
        raise ValueError(f"top_k ({top_k}) must not exceed beam_width ({beam_width})")
    net.check_points(x, "x")
    if x.ndim != len(net.point_shape) + 1:
        raise ValueError(
            f"beam_search decodes one set: x must have shape (N, *point_shape) = "
            f"(N, {', '.join(map(str, net.point_shape))}), got {tuple(x.shape)}"
        )
    x, mask, orders, _, _ = _prepare(net, x, None, order)
    n = mask.shape[1]
    heads = net.fused_heads()
    y, offset = _encode_along(net, heads, x, mask, orders)
    state = _ClusterState(heads, y[:, 0], beam_width, n)
    actions = torch.full((1, beam_width, n), PAD_LABEL, dtype=torch.long, device=x.device)
    actions[:, :, 0] = 0
    scores = torch.full((1, beam_width), -math.inf, dtype=y.dtype, device=x.device)
    scores[:, 0] = 0.0
    active = torch.ones(1, beam_width, dtype=torch.bool, device=x.device)
    for t in range(1, n):
        energy, valid, projected = state.candidates(y[:, t], offset[:, t])
        logits = torch.where(valid, -energy, -math.inf)
        totals = scores.unsqueeze(-1) + torch.log_softmax(logits, -1)
        scores, flat = totals.reshape(1, -1).topk(beam_width, dim=-1)
        parent = torch.div(flat, energy.shape[-1], rounding_mode="floor")
        choice = flat - parent * energy.shape[-1]
        state.commit(choice, active, y[:, t], projected, parent=parent)
        actions = _take(actions, parent)
        actions[:, :, t] = choice
    found = int(torch.isfinite(scores).sum())
    keep = min(top_k, found)
    labels = _to_caller_order(actions[:, :keep], orders, mask)
    return labels[0], scores[0, :keep]

"""The fused CPU path of sequential decoding (:mod:`gfncp_pyro.decoding`): the same arithmetic as
the plain path, with fewer tensor operations per step.

``g`` and ``f`` run as direct ``addmm`` / in-place ``leaky_relu_`` calls (:class:`Chain`), the
decoding state is flat over the decodings and each step commits with one ``index_add_`` and one
``index_copy_``. Labels and log-probabilities are bit-for-bit those of the plain path
(``tests/test_decoding.py``). :func:`gfncp_pyro.decoding._decode` chooses the path
(``decoding.FUSED``).
"""

from __future__ import annotations

import math

import torch

from .partitions import PAD_LABEL

__all__ = ["Chain", "fused_chains", "decode_fused"]

INITIAL_CAPACITY = 16
"""Cluster slots allocated before the first growth of the decoding state (both paths)."""


# --------------------------------------------------------------------------------------------
# Fused CPU path: the same arithmetic with fewer tensor operations per step
# --------------------------------------------------------------------------------------------



class Chain:
    """A chain of ``nn.Linear`` and single-slope ``nn.PReLU`` layers as direct kernel calls.

    The weights are read once per decoding (transposed views, slopes as Python floats), so a
    layer costs one ``addmm`` (``mm`` without bias), the call ``nn.Linear`` makes, and an
    in-place ``leaky_relu_``, which computes what ``PReLU`` with one slope computes. Inputs are
    2-D and are overwritten by the activations.
    """

    def __init__(self, ops):
        self.ops = ops

    @classmethod
    def of(cls, layers, last=None):
        """The chain of ``layers`` (an ``nn.Sequential``) followed by the linear map ``last``
        ``(weight, bias)``; ``None`` if a layer is of another kind."""
        ops = []
        for layer in layers:
            if type(layer) is torch.nn.Linear:
                ops.append((layer.weight.detach().t(), None if layer.bias is None else layer.bias.detach()))
            elif type(layer) is torch.nn.PReLU and layer.weight.numel() == 1:
                ops.append(float(layer.weight.detach()))
            else:
                return None
        if last is not None:
            ops.append((last[0].detach().t(), None if last[1] is None else last[1].detach()))
        return cls(ops)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            if type(op) is float:
                torch.nn.functional.leaky_relu_(z, op)
            elif op[1] is None:
                z = torch.mm(z, op[0])
            else:
                z = torch.addmm(op[1], z, op[0])
        return z


def fused_chains(heads):
    """``(g, f)``: ``y -> W_G g(z)`` from ``y = W_in z + b_in`` and ``f``'s tail, as
    :class:`Chain` (``None`` if the network has other layers)."""
    if len(heads.g_trunk) == 0 or not isinstance(heads.g_trunk, torch.nn.Sequential) \
            or not isinstance(heads.f_tail, torch.nn.Sequential):
        return None
    g = Chain.of(heads.g_trunk[1:], last=(heads.weight, heads.bias))
    f = Chain.of(heads.f_tail)
    return None if g is None or f is None else (g, f)


def _fused_energies(chains, Y_w, P_w, point_t, offset_t, K, slots, all_valid):
    """One step's candidate energies of :func:`decode_fused`, ``(B, S, W)`` (``+inf`` at
    invalid slots), the candidates' projections ``W_G g(H_k + h_t)`` and, when only the valid
    candidates were evaluated, the first compact row of each decoding (else ``None``).

    ``Y_w``/``P_w``: the clusters' mapped sums and projections ``(B, S, W, .)``; ``point_t``
    ``(B, width_in)``: ``W_in h_t + b_in``; ``offset_t`` ``(B, hidden)``; ``K`` ``(B, S)``."""
    g, f = chains
    batch, S, width, hidden = P_w.shape
    if all_valid:
        others = P_w.sum(2, keepdim=True) - P_w
        z = Y_w + point_t[:, None, None, :]
        projected = g(z.view(-1, z.shape[-1]))  # (B S W, hidden)
        first = others.add_(projected.view(batch, S, width, hidden)).add_(offset_t[:, None, None, :])
        return f(first.view(-1, hidden)).view(batch, S, width), projected, None
    valid = slots <= K.unsqueeze(-1)
    index = valid.nonzero(as_tuple=True)
    others = P_w.sum(2)[index[:2]] - P_w[index]
    projected = g(Y_w[index] + point_t[index[0]])  # (M, hidden): the valid candidates only
    values = f(others.add_(projected).add_(offset_t[index[0]]))
    energy = values.new_full(valid.shape, math.inf).index_put_(index, values.view(-1))
    sizes = K.view(-1) + 1
    return energy, projected, torch.cumsum(sizes, 0).sub_(sizes)


def _choose(step_log_probs, uniforms_t, K):
    """The greedy choice (``uniforms_t`` ``None``) or the inverse-CDF sample of each decoding
    ``(B, S)`` from its step log-probabilities ``(B, S, W)``, at most ``K`` (the new cluster)."""
    if uniforms_t is None:
        return step_log_probs.argmax(-1)
    cdf = step_log_probs.exp().cumsum(-1)
    target = uniforms_t[..., None] * cdf[..., -1:]
    return torch.minimum((cdf < target).sum(-1), K)


def decode_fused(heads, chains, y, offset, mask, num_samples, temperature, uniforms):
    """:func:`gfncp_pyro.decoding._decode` on the CPU with the same floating-point operations on the same operands
    as the plain path (``decoding._ClusterState``), so the results are identical, but about half
    the tensor operations per step and none of the large temporaries:

    * the layers of ``g`` and ``f`` are direct ``addmm`` / ``leaky_relu_`` calls
      (:class:`Chain`), on 2-D views;
    * ``b_in`` is added to the mapped points once, before the loop; whether every decoding
      is still active at step ``t`` is read once from the mask (masks are prefixes), so the
      masking ops only run at the steps that need them and padding is written at the end;
    * the state is flat over ``(B S)`` decodings; a step's commit is one ``index_add_`` (the
      chosen cluster's mapped sum) and one ``index_copy_`` (its projection), and ``K`` grows
      in place;
    * one sync per step (free on the CPU), ``aminmax`` of ``K``, gives the next step's width
      ``W = max K + 1`` and whether every slot ``k < W`` is valid; when not, only the valid
      candidates are evaluated (as in the plain path) and their projections stay compact
      (no ``(B, S, W, hidden)`` scatter).
    """
    batch, n_max = mask.shape
    S = num_samples
    BS = batch * S
    if BS == 1:
        return _decode_fused_one(heads, chains, y, offset, mask, temperature, uniforms)
    width_in = y.shape[-1]
    bias_in = heads.input_map()[1]
    points = y if bias_in is None else y + bias_in  # W_in h_t + b_in, every step at once
    p0 = heads.project_mapped(points[:, 0])
    hidden = p0.shape[-1]
    capacity = min(n_max, INITIAL_CAPACITY)
    Y = y.new_zeros(batch, S, capacity, width_in)
    P = p0.new_zeros(batch, S, capacity, hidden)
    Y[:, :, 0] = y[:, 0].unsqueeze(1)
    P[:, :, 0] = p0.unsqueeze(1)
    K = torch.ones(batch, S, dtype=torch.long)
    decodings = torch.arange(BS)
    rows_base = decodings * capacity
    slots = torch.arange(n_max)
    actions = torch.empty((batch, S, n_max), dtype=torch.long)
    actions[:, :, 0] = 0
    log_prob = y.new_zeros(batch, S)
    all_active = mask.all(0).tolist()
    width, all_valid = 2, True
    for t in range(1, n_max):
        if width > Y.shape[2]:
            capacity = min(n_max, max(width, 2 * Y.shape[2]))
            extra = capacity - Y.shape[2]
            Y = torch.cat([Y, Y.new_zeros(batch, S, extra, width_in)], 2)
            P = torch.cat([P, P.new_zeros(batch, S, extra, hidden)], 2)
            rows_base = decodings * capacity
        energy, projected, compact = _fused_energies(
            chains, Y[:, :, :width], P[:, :, :width], points[:, t], offset[:, t], K, slots[:width], all_valid)
        # -inf at the invalid slots, whose energy is +inf: no mask needed
        step_log_probs = torch.log_softmax(energy / -temperature, -1)
        choice = _choose(step_log_probs, None if uniforms is None else uniforms[:, :, t], K)
        chosen = step_log_probs.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
        choice_flat = choice.view(-1)
        if all_active[t]:
            log_prob.add_(chosen)
            grows = choice.eq(K)
        else:
            active = mask[:, t, None]
            log_prob.add_(torch.where(active, chosen, 0.0))
            grows = choice.eq(K).logical_and_(active)
        # commit: the chosen cluster's mapped sum grows by W_in h_t, its projection is replaced
        y_t = y[:, t] if S == 1 else y[:, t, None, :].expand(batch, S, width_in).reshape(BS, width_in)
        rows = rows_base + choice_flat
        Y.view(-1, width_in).index_add_(0, rows, y_t)
        picked = choice_flat + decodings * width if compact is None else compact.add_(choice_flat)
        P.view(-1, hidden).index_copy_(0, rows, projected.index_select(0, picked))
        K.add_(grows)
        actions[:, :, t] = choice
        low, high = torch.aminmax(K)
        width, all_valid = int(high) + 1, bool(low == high)
    if not all(all_active):
        actions[:, :, 1:].masked_fill_(~mask[:, None, 1:], PAD_LABEL)
    return actions, log_prob


def _decode_fused_one(heads, chains, y, offset, mask, temperature, uniforms):
    """:func:`decode_fused` for a single decoding (``B = S = 1``: greedy decoding of one set,
    or one sample of it), with the open clusters ``K`` and each choice on the host: one sync per
    step (the choice), the commit by row views (``Y[c] += y_t``, ``P[c] = projected[c]``), the
    per-step views of the inputs taken once (``unbind``), and the steps past the set's end
    skipped. The floating-point operations are still those of the plain path."""
    g, f = chains
    n = int(mask[0].sum())
    n_max = mask.shape[1]
    width_in = y.shape[-1]
    bias_in = heads.input_map()[1]
    points = y[0] if bias_in is None else y[0] + bias_in
    p0 = heads.project_mapped(points[0])
    hidden = p0.shape[-1]
    capacity = min(n_max, INITIAL_CAPACITY)
    Y = y.new_zeros(capacity, width_in)
    P = p0.new_zeros(capacity, hidden)
    Y[0] = y[0, 0]
    P[0] = p0
    ys, steps, offsets = y[0].unbind(0), points.unbind(0), offset[0].unbind(0)
    draws = None if uniforms is None else uniforms[0, 0].unbind(0)
    negate = temperature == 1.0  # x / -1 is exactly -x
    log_prob = y.new_zeros(1, 1)
    choices = [0]
    k = 1
    for t in range(1, n):
        width = k + 1
        if width > Y.shape[0]:
            extra = min(n_max, max(width, 2 * Y.shape[0])) - Y.shape[0]
            Y = torch.cat([Y, Y.new_zeros(extra, width_in)])
            P = torch.cat([P, P.new_zeros(extra, hidden)])
        P_w = P[:width]
        others = P_w.sum(0, keepdim=True) - P_w
        projected = g(Y[:width] + steps[t])
        energy = f(others.add_(projected).add_(offsets[t])).view(-1)
        step_log_probs = torch.log_softmax(energy.neg() if negate else energy / -temperature, 0)
        if draws is None:
            c = int(step_log_probs.argmax())
        else:
            cdf = step_log_probs.exp().cumsum(0)
            c = min(int((cdf < draws[t] * cdf[-1:]).sum()), k)
        log_prob.add_(step_log_probs[c])
        Y[c].add_(ys[t])
        P[c].copy_(projected[c])
        if c == k:
            k += 1
        choices.append(c)
    actions = torch.full((1, 1, n_max), PAD_LABEL, dtype=torch.long)
    actions[0, 0, :n] = torch.tensor(choices, dtype=torch.long)
    return actions, log_prob

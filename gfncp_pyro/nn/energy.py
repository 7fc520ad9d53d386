"""The energy network ``E[c_{1:n}] = f(G, U)`` of Eqs. (12)-(15) in [1].

Sign convention (used throughout the package): probabilities are proportional to ``exp(-E)``
and a log-flow is ``-E``.

The network's forward passes go through :func:`forward_layers`, which computes the MLPs' PReLU
activations with ``leaky_relu``'s kernels on the CPU: the same values, with a backward pass
several times faster than ``aten``'s PReLU backward on the ``(rows, 128)`` activations of
teacher forcing.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn

from ..jsonable import JsonDataclass
from .encoders import IMAGE_SHAPE, ConvEncoder, mlp

__all__ = ["EnergyNetConfig", "EnergyNet", "FusedHeads", "forward_layers"]


class _SharedSlopePReLU(torch.autograd.Function):
    """``PReLU`` with one slope ``a`` as ``leaky_relu(x, a)``; ``dL/da = sum(g * min(x, 0))``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        slope = float(weight)  # a host copy: free on the CPU, the only device this runs on
        ctx.save_for_backward(x, weight)
        ctx.slope = slope
        return nn.functional.leaky_relu(x, slope)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[1]:
            negative = x.clamp(max=0)  # then reused for grad_x: one large allocation, not two
            wide = torch.promote_types(grad.dtype, torch.float32)  # no bf16 accumulation
            grad_weight = torch.dot(grad.reshape(-1).to(wide), negative.reshape(-1).to(wide))
            grad_weight = grad_weight.to(weight.dtype).reshape(weight.shape)
            if ctx.needs_input_grad[0]:
                grad_x = torch.ops.aten.leaky_relu_backward.grad_input(
                    grad, x, ctx.slope, False, grad_input=negative)
        elif ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.leaky_relu_backward(grad, x, ctx.slope, False)
        return grad_x, grad_weight


def forward_layers(layers: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)`` for an ``nn.Sequential``, with single-slope PReLUs on the CPU computed by
    ``leaky_relu`` kernels when a backward pass will follow (same values, faster backward);
    other modules are called as usual.

    :param layers: an ``nn.Sequential`` (e.g. a slice of :func:`~gfncp_pyro.nn.mlp`), or any
        module, which is then simply called.
    :param torch.Tensor x: its input ``(..., in_features)``.
    """
    if not isinstance(layers, nn.Sequential):
        return layers(x)
    for layer in layers:
        if (isinstance(layer, nn.PReLU) and layer.weight.numel() == 1 and x.device.type == "cpu"
                and torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad)):
            x = _SharedSlopePReLU.apply(x, layer.weight)
        else:  # the forward kernels are equally fast
            x = layer(x)
    return x


@dataclass(frozen=True)
class EnergyNetConfig(JsonDataclass):
    """Sizes of the energy network (defaults: the paper's MoG model, DESIGN.md §4).

    :param int x_dim: dimension of a vector point (ignored by the ``"conv"`` encoder, whose
        points are ``(1, 28, 28)`` images).
    :param encoder: ``"mlp"`` for vectors, ``"conv"`` for 28x28 grey images.
    :param int h_dim: width of ``h(x)`` (Eq. 12) and of ``u(x)`` (Eq. 14).
    :param int g_dim: width of ``g(H)`` (Eq. 13).
    :param int hidden: width of hidden layers.
    :param int encoder_layers: linear layers of the MLP encoders ``h`` and ``u``.
    :param int g_layers: linear layers of ``g``.
    :param int f_layers: linear layers of ``f`` (the last has no bias).
    :param bool online: App. C's online mode: ``U = 0``, so the energy ignores unassigned points.
    :param bool flow_head: add the log-flow offset head ``b(A, U)`` (:meth:`EnergyNet.log_flow_offset`)
        used by ``flow="offset"`` (:func:`gfncp_pyro.losses.marginal_consistency`). It never
        changes the policy or the reward, only the state flows. Default ``False`` (the paper's
        network; checkpoints without the field load with it off).
    :param int flow_head_layers: linear layers of that head.
    :param bool state_head: add the per-state log-flow offset head ``beta``
        (:meth:`EnergyNet.state_log_flow_offset`) used by ``flow="state"``; it reads the state's
        features (``f``'s first-layer input shared by a step's candidates), so it depends on the
        state's clusters, and like ``flow_head`` it never changes the policy or the reward.
        Default ``False``.
    """

    x_dim: int = 2
    encoder: Literal["mlp", "conv"] = "mlp"
    h_dim: int = 128
    g_dim: int = 512
    hidden: int = 128
    encoder_layers: int = 5
    g_layers: int = 6
    f_layers: int = 6
    online: bool = False
    flow_head: bool = False
    flow_head_layers: int = 3
    state_head: bool = False

    def __post_init__(self):
        if self.encoder not in ("mlp", "conv"):
            raise ValueError(f"encoder must be 'mlp' or 'conv', got {self.encoder!r}")
        for name in ("x_dim", "h_dim", "g_dim", "hidden", "encoder_layers", "g_layers", "f_layers",
                     "flow_head_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def point_shape(self) -> tuple[int, ...]:
        """Shape of one data point: ``(x_dim,)`` or ``(1, 28, 28)``."""
        return IMAGE_SHAPE if self.encoder == "conv" else (self.x_dim,)


class FusedHeads(NamedTuple):
    """``g`` and ``f`` regrouped around the linear map ``g``'s last layer and ``f``'s first share.

    ``g`` ends and ``f`` starts with a linear layer, so ``g``'s output is only ever needed
    through ``W_G``, the ``G`` columns of ``f``'s first layer:
    ``W_G g(z) = weight @ g_trunk(z) + bias`` and ``f(G, U) = f_tail(W_G G + weight_u @ U +
    bias_f)``. Sums of ``g`` over clusters become sums of these ``hidden``-wide projections.

    The map ``z -> W_G g(z)`` starts with an affine layer (:meth:`input_map`), so for inputs
    that are sums, ``z = H + h``, that layer can be applied to the terms once and the rows
    formed in its output space (:meth:`project_mapped`), saving one matrix product per row.

    :ivar g_trunk: all of ``g`` but its last linear layer (empty for a one-layer ``g``).
    :ivar weight: ``W_G W_last``, ``(hidden, g_width)``, ``g_width`` the input of ``g``'s last
        layer.
    :ivar bias: ``W_G b_last``, ``(hidden,)`` (zeros if that layer has no bias).
    :ivar weight_u: ``W_U``, the ``U`` columns of ``f``'s first layer, ``(hidden, h_dim)``.
    :ivar bias_f: the bias of ``f``'s first layer ``(hidden,)`` or ``None``.
    :ivar f_tail: all of ``f`` but its first linear layer (ends with the energy, width 1).
    """

    g_trunk: nn.Sequential
    weight: torch.Tensor
    bias: torch.Tensor
    weight_u: torch.Tensor
    bias_f: torch.Tensor | None
    f_tail: nn.Sequential

    def input_map(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(W_in, b_in)``: the affine layer that ``z -> W_G g(z)`` starts with (``g``'s first
        layer, or the fused one for a one-layer ``g``), ``W_in (width, h_dim)``."""
        if len(self.g_trunk) > 0:
            return self.g_trunk[0].weight, self.g_trunk[0].bias
        return self.weight, self.bias

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """``W_G g(z)``: ``(..., h_dim) -> (..., hidden)``."""
        return nn.functional.linear(forward_layers(self.g_trunk, z), self.weight, self.bias)

    def project_mapped(self, y: torch.Tensor) -> torch.Tensor:
        """``W_G g(z)`` from ``y = W_in z + b_in`` (:meth:`input_map`): ``(..., width) ->
        (..., hidden)``."""
        if len(self.g_trunk) == 0:
            return y
        rest = forward_layers(self.g_trunk[1:], y)
        return nn.functional.linear(rest, self.weight, self.bias)

    def energy(self, first_layer: torch.Tensor) -> torch.Tensor:
        """``f`` from its first layer's output ``W_G G + W_U U + b``: ``(..., hidden) -> (...)``."""
        return forward_layers(self.f_tail, first_layer).squeeze(-1)


class EnergyNet(nn.Module):
    """Encoders ``h, u``, set function ``g`` and energy head ``f`` (Eqs. 12-15 in [1]).

    The network only provides the four functions; the sums over clusters and unassigned points
    are formed by :mod:`gfncp_pyro.policy` (teacher forcing) and :mod:`gfncp_pyro.decoding`.

    :param EnergyNetConfig config: sizes.
    """

    def __init__(self, config: EnergyNetConfig | None = None):
        super().__init__()
        self.config = config = config or EnergyNetConfig()
        width = config.hidden
        if config.encoder == "conv":
            self.h = ConvEncoder(config.h_dim, width)
            self.u = ConvEncoder(config.h_dim, width)
        else:
            enc = [config.x_dim] + [width] * (config.encoder_layers - 1) + [config.h_dim]
            self.h = mlp(enc)
            self.u = mlp(enc)
        self.g = mlp([config.h_dim] + [width] * (config.g_layers - 1) + [config.g_dim])
        f_sizes = [config.g_dim + config.h_dim] + [width] * (config.f_layers - 1) + [1]
        self.f_net = mlp(f_sizes, last_bias=False)
        if config.flow_head:
            b_sizes = [2 * config.h_dim] + [width] * (config.flow_head_layers - 1) + [1]
            self.b_net = mlp(b_sizes)
        if config.state_head:
            self.beta_net = mlp([width] * config.flow_head_layers + [1])

    @property
    def point_shape(self) -> tuple[int, ...]:
        return self.config.point_shape

    def check_points(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Validate points ``(..., N, *point_shape)``; raise ``ValueError`` on a mismatch.

        Checks the trailing point shape against the network's, that there is a set dimension,
        and that all values are finite.
        """
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        shape = self.point_shape
        if x.ndim < len(shape) + 1 or tuple(x.shape[x.ndim - len(shape):]) != shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}, but this network expects points of shape "
                f"{shape} stacked as (..., N, {', '.join(map(str, shape))})"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        return x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode points: ``(..., N, *point_shape) -> h (..., N, h_dim), u (..., N, h_dim)``."""
        return forward_layers(self.h, x), forward_layers(self.u, x)

    def fused_heads(self) -> FusedHeads:
        """``f``'s first layer folded into ``g``'s last (see :class:`FusedHeads`).

        The products are formed anew on each call, with autograd, so gradients reach the
        original parameters; call once per forward pass.

        :raises ValueError: if ``g`` does not start and end, or ``f`` does not start, with
            ``nn.Linear`` (only possible after replacing those modules).
        """
        last, first = self.g[-1], self.f_net[0]
        if not all(isinstance(m, nn.Linear) for m in (self.g[0], last, first)):
            raise ValueError(
                "fused_heads needs g to start and end and f to start with nn.Linear; got "
                f"{type(self.g[0]).__name__}, {type(last).__name__} and {type(first).__name__}"
            )
        g_dim = self.config.g_dim
        w_g, w_u = first.weight[:, :g_dim], first.weight[:, g_dim:]
        bias = w_g @ last.bias if last.bias is not None else w_g.new_zeros(w_g.shape[0])
        return FusedHeads(self.g[:-1], w_g @ last.weight, bias, w_u, first.bias, self.f_net[1:])

    def log_flow_offset(self, A: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """Label-free log-flow offset ``b(A, U)``: ``A (..., h_dim)`` sums ``u`` over the assigned
        points, ``U (..., h_dim)`` over the unassigned ones (Eq. 14 in [1]); ``-> (...)``.

        With ``flow="offset"`` the state flow is ``log F(s) = -E[s] + b(A_s, U_s)``. Every child
        of a state has the same assigned points, so ``b`` cancels in the policy (Eq. 21) and is
        one constant per set on the terminal states: the reward's normalised form (Eq. 25) is
        unchanged. It carries the per-step log-normaliser scale of the marginals (Eq. 6's
        ``Z_n``) that the energy would otherwise have to represent.

        :raises ValueError: if the network was built without ``flow_head``.
        """
        if not self.config.flow_head:
            raise ValueError("this network has no log-flow offset head; build it with "
                             "EnergyNetConfig(flow_head=True) (flow='offset' does so)")
        lead = torch.broadcast_shapes(A.shape[:-1], U.shape[:-1])
        A = A.expand(*lead, A.shape[-1])
        U = U.expand(*lead, U.shape[-1])
        return forward_layers(self.b_net, torch.cat([A, U], dim=-1)).squeeze(-1)

    def state_log_flow_offset(self, features: torch.Tensor) -> torch.Tensor:
        """Per-state log-flow offset ``beta`` from a state's features ``(..., hidden) -> (...)``.

        ``features`` is the part of ``f``'s first-layer input that a step's candidates share,
        ``W_G sum_k g(H_k) + W_U U + b`` of the state before the step (see
        :func:`gfncp_pyro.flows.parent_log_flow_offsets`). With ``flow="state"`` the children of
        that state get log-flows ``-E[child] + beta``: a softmax over them is unchanged, so
        ``beta`` shapes the state flows of Eq. (23) only.

        :raises ValueError: if the network was built without ``state_head``.
        """
        if not self.config.state_head:
            raise ValueError("this network has no per-state log-flow offset head; build it with "
                             "EnergyNetConfig(state_head=True) (flow='state' does so)")
        return forward_layers(self.beta_net, features).squeeze(-1)

    def f(self, G: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """Energy ``f(G, U)`` (Eq. 15): ``G (..., g_dim), U (..., h_dim) -> (...)``.

        In online mode ``U`` is replaced by zeros (App. C in [1]).
        """
        if self.config.online:
            U = torch.zeros_like(U)
        lead = torch.broadcast_shapes(G.shape[:-1], U.shape[:-1])
        G = G.expand(*lead, G.shape[-1])
        U = U.expand(*lead, U.shape[-1])
        return forward_layers(self.f_net, torch.cat([G, U], dim=-1)).squeeze(-1)

"""The energy network ``E[c_{1:n}] = f(G, U)`` of Eqs. (12)-(15) in [1].

Sign convention (used throughout the package): probabilities are proportional to ``exp(-E)``
and a log-flow is ``-E``.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .encoders import IMAGE_SHAPE, ConvEncoder, mlp

__all__ = ["EnergyNetConfig", "EnergyNet"]


@dataclass(frozen=True)
class EnergyNetConfig:
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

    def __post_init__(self):
        if self.encoder not in ("mlp", "conv"):
            raise ValueError(f"encoder must be 'mlp' or 'conv', got {self.encoder!r}")
        for name in ("x_dim", "h_dim", "g_dim", "hidden", "encoder_layers", "g_layers", "f_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def point_shape(self) -> tuple[int, ...]:
        """Shape of one data point: ``(x_dim,)`` or ``(1, 28, 28)``."""
        return IMAGE_SHAPE if self.encoder == "conv" else (self.x_dim,)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EnergyNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown EnergyNetConfig fields {sorted(unknown)}")
        return cls(**data)


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
        return self.h(x), self.u(x)

    def f(self, G: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """Energy ``f(G, U)`` (Eq. 15): ``G (..., g_dim), U (..., h_dim) -> (...)``.

        In online mode ``U`` is replaced by zeros (App. C in [1]).
        """
        if self.config.online:
            U = torch.zeros_like(U)
        lead = torch.broadcast_shapes(G.shape[:-1], U.shape[:-1])
        G = G.expand(*lead, G.shape[-1])
        U = U.expand(*lead, U.shape[-1])
        return self.f_net(torch.cat([G, U], dim=-1)).squeeze(-1)

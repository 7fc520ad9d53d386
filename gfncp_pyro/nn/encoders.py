"""Point encoders ``h`` and ``u`` (Eqs. 12 and 14 in [1]) and the MLP building block.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["mlp", "ConvEncoder", "IMAGE_SHAPE"]

IMAGE_SHAPE = (1, 28, 28)
"""Point shape handled by :class:`ConvEncoder` (MNIST-style grey images)."""


def mlp(sizes: Sequence[int], last_bias: bool = True) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]`` with PReLU between layers.

    :param sizes: layer widths, input first; ``len(sizes) - 1`` linear layers.
    :param bool last_bias: whether the last linear layer has a bias.
    """
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least an input and an output size, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        is_last = i == len(sizes) - 2
        layers.append(nn.Linear(d_in, d_out, bias=last_bias or not is_last))
        if not is_last:
            layers.append(nn.PReLU())
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """LeNet-style encoder for ``(1, 28, 28)`` images, as in NCP's and GFNCP's MNIST models.

    :param int out_dim: output width.
    :param int hidden: width of the fully connected layer.

    ``forward``: ``(..., 1, 28, 28) -> (..., out_dim)``.
    """

    def __init__(self, out_dim: int, hidden: int = 256):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5),
            nn.MaxPool2d(2),
            nn.PReLU(),
            nn.Conv2d(32, 64, kernel_size=5),
            nn.MaxPool2d(2),
            nn.PReLU(),
        )
        self.head = mlp([64 * 4 * 4, hidden, out_dim])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        lead = images.shape[:-3]
        flat = images.reshape((-1,) + tuple(images.shape[-3:]))
        out = self.head(self.features(flat).flatten(1))
        return out.reshape(lead + (out.shape[-1],))

"""Input validation shared by teacher forcing (:mod:`gfncp_pyro.policy`) and decoding
(:mod:`gfncp_pyro.decoding`): points, masks, orders, integer tensors and generators.

Every check raises ``ValueError`` with a message naming the argument, what was wrong and what
to do. Batched arguments are ``(B, N_max)``; functions that also accept one set ``(N,)`` pass
``batched=False`` and get the argument back with a leading batch dimension of 1.
"""

from __future__ import annotations

import numbers

import torch

from .nn import EnergyNet

__all__ = [
    "check_points",
    "check_index_tensor",
    "check_mask",
    "check_orders",
    "check_positive_int",
    "make_generator",
]


def _expected(shape: tuple[int, ...], batched: bool) -> str:
    return f"(B, N_max) = {shape}" if batched else f"(N,) = ({shape[1]},)"


def check_points(net: EnergyNet, x, *, single_set: bool) -> tuple[torch.Tensor, bool]:
    """Validate points for ``net`` and return them batched.

    :param torch.Tensor x: ``(B, N_max, *point_shape)``, or ``(N, *point_shape)`` when
        ``single_set``; finite, in the dtype and on the device of ``net``'s parameters.
    :param bool single_set: whether one unbatched set is accepted.
    :returns: ``(x (B, N_max, *point_shape), batched)``.
    """
    net.check_points(x, "x")
    point_shape = net.point_shape
    point_ndim = len(point_shape)
    allowed = (point_ndim + 1, point_ndim + 2) if single_set else (point_ndim + 2,)
    if x.ndim not in allowed:
        one_set = "one set (N, *point_shape) or " if single_set else ""
        hint = "" if single_set else "; add a batch dimension with x.unsqueeze(0)"
        raise ValueError(
            f"x has shape {tuple(x.shape)}; expected {one_set}a padded batch "
            f"(B, N_max, *point_shape) with point_shape {point_shape}{hint}"
        )
    batched = x.ndim == point_ndim + 2
    if x.ndim == point_ndim + 1:
        x = x.unsqueeze(0)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"x has shape {tuple(x.shape)}: there is nothing to cluster (B = 0 or N = 0); the "
            "batch and every set need >= 1 point"
        )
    param = next(net.parameters())
    if param.dtype != x.dtype or param.device != x.device:
        raise ValueError(
            f"x has dtype {x.dtype} on {x.device} but the network's parameters have dtype "
            f"{param.dtype} on {param.device}; move one of them, e.g. net.to(x) or "
            "x.to(net's dtype)"
        )
    return x, batched


def check_index_tensor(value, name: str, shape: tuple[int, ...], device,
                       batched: bool = True) -> torch.Tensor:
    """An integer tensor of shape ``(B, N_max)`` (or ``(N,)``), as ``long`` on ``device``."""
    value = torch.as_tensor(value, device=device)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    if not batched and value.ndim == 1:
        value = value.unsqueeze(0)
    if tuple(value.shape) != shape:
        got = tuple(value.shape[1:]) if not batched and value.ndim > 1 else tuple(value.shape)
        raise ValueError(f"{name} has shape {got}, expected {_expected(shape, batched)}")
    return value.long()


def check_mask(mask, shape: tuple[int, ...], device, batched: bool = True) -> torch.Tensor:
    """A boolean ``(B, N_max)`` mask, ``True`` on a non-empty prefix of each row.

    ``None`` means all points are real. With ``batched=False`` the mask of one set is ``(N,)``.
    """
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    mask = torch.as_tensor(mask, device=device)
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a boolean torch.Tensor (True on real points), got dtype {mask.dtype}"
        )
    if not batched and mask.ndim == 1:
        mask = mask.unsqueeze(0)
    if tuple(mask.shape) != shape:
        got = tuple(mask.shape[1:]) if not batched and mask.ndim > 1 else tuple(mask.shape)
        raise ValueError(f"mask has shape {got}, expected {_expected(shape, batched)}")
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("mask must be True on a prefix of each row (pad sets on the right)")
    if not bool(mask[:, 0].all()):
        raise ValueError(
            "mask has a set with no points (a row with no True, N = 0); every set needs N >= 1"
        )
    return mask


def check_orders(orders, mask: torch.Tensor, batched: bool = True) -> torch.Tensor:
    """Orders ``(B, N_max)`` (``None``: the identity) with padded entries replaced by the identity.

    Row ``b`` must start with a permutation of ``0..N_b-1``; entries past ``N_b`` are ignored.
    """
    positions = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)
    if orders is None:
        return positions
    orders = check_index_tensor(orders, "orders", tuple(mask.shape), mask.device, batched)
    lengths = mask.sum(1, keepdim=True)
    valid = mask & (orders >= 0) & (orders < lengths)
    counts = torch.zeros_like(orders).scatter_add_(1, torch.where(valid, orders, 0), valid.long())
    if not bool(torch.equal(counts, mask.long())):  # each of 0..N_b-1 exactly once
        raise ValueError(
            "orders must hold, in the first N_b entries of row b, a permutation of 0..N_b-1 "
            "(N_b = number of real points of set b, e.g. torch.randperm(N_b)); padded entries "
            "are ignored; pass None for the identity"
        )
    return torch.where(mask, orders, positions)


def check_positive_int(value, name: str) -> int:
    """``value`` as an ``int`` if it is a positive integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def make_generator(generator) -> torch.Generator:
    """The given generator, a CPU generator seeded with an ``int``, or (``None``) a fresh one
    seeded non-deterministically; torch's global RNG is never used."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        fresh = torch.Generator()
        fresh.seed()
        return fresh
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")

"""Input validation shared by teacher forcing (:mod:`gfncp_pyro.policy`), decoding
(:mod:`gfncp_pyro.decoding`) and the losses: points, encodings, masks, orders, integer tensors,
set sizes, step subsets and generators.

Every check raises ``ValueError`` with a message naming the argument, what was wrong and what
to do. Batched arguments are ``(B, N_max)``; functions that also accept one set ``(N,)`` pass
``batched=False`` and get the argument back with a leading batch dimension of 1.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only: the checks sit below every other module
    from .nn import EnergyNet

__all__ = [
    "check_points",
    "check_encodings",
    "check_every_step",
    "check_index_tensor",
    "check_int",
    "check_lengths",
    "check_mask",
    "check_orders",
    "check_positive_int",
    "check_step_subset",
    "explicit_generator",
    "finite_float",
    "float_in_range",
    "make_generator",
    "positive_float",
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


def check_encodings(net: EnergyNet, encodings, shape: tuple[int, ...] | None = None):
    """Validate precomputed encodings ``(h, u)``, each ``(B, N_max, h_dim)`` in the dtype and
    on the device of ``net``'s parameters (``shape``: the expected ``(B, N_max)``, if known).

    :returns: ``(h, u)``.
    """
    h, u = encodings
    h_dim = net.config.h_dim
    for name, value in (("h", h), ("u", u)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"encodings.{name} must be a floating-point tensor")
        expected = (shape or tuple(h.shape[:2])) + (h_dim,)
        if value.ndim != 3 or tuple(value.shape) != expected:
            raise ValueError(
                f"encodings.{name} has shape {tuple(value.shape)}; expected (B, N_max, h_dim) = "
                f"{expected} like encode_points() returns"
            )
    if h.shape[0] == 0 or h.shape[1] == 0:
        raise ValueError(f"encodings have shape {tuple(h.shape)}: need B >= 1 and N_max >= 1")
    param = next(net.parameters())
    if h.dtype != param.dtype or u.dtype != param.dtype or h.device != param.device:
        raise ValueError(
            f"encodings are {h.dtype} on {h.device} but net's parameters are {param.dtype} on "
            f"{param.device}; encode with encode_points(net, x)"
        )
    return h, u


def check_index_tensor(value, name: str, shape: tuple[int, ...], device,
                       batched: bool = True) -> torch.Tensor:
    """An integer tensor of shape ``(B, N_max)`` (or ``(N,)``), as ``long`` on ``device``."""
    value = torch.as_tensor(value, device=device)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    got = tuple(value.shape)
    if not batched:
        value = value.unsqueeze(0)
    if tuple(value.shape) != shape:
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
    got = tuple(mask.shape)
    if not batched:
        mask = mask.unsqueeze(0)
    if tuple(mask.shape) != shape:
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


def check_lengths(lengths) -> torch.Tensor:
    """Set sizes: a non-empty 1-D integer tensor ``(B,)`` of values ``>= 1``."""
    lengths = torch.as_tensor(lengths)
    if (lengths.ndim != 1 or lengths.numel() == 0 or lengths.is_floating_point()
            or lengths.is_complex() or lengths.dtype == torch.bool):
        raise ValueError(
            f"lengths must be a non-empty 1-D integer tensor of set sizes (B,), got dtype "
            f"{lengths.dtype} and shape {tuple(lengths.shape)}; e.g. mask.sum(1)"
        )
    if bool((lengths < 1).any()):
        raise ValueError(f"lengths must be >= 1 (every set needs a point), got {lengths.tolist()}")
    return lengths


def check_step_subset(step_subset, mask: torch.Tensor) -> torch.Tensor:
    """A bool ``(B, N_max)`` subset of the steps ``1..N_b-1`` of each set."""
    subset = torch.as_tensor(step_subset, device=mask.device)
    if subset.dtype != torch.bool or subset.shape != mask.shape:
        raise ValueError(
            f"step_subset must be a bool tensor of shape (B, N_max) = {tuple(mask.shape)}, got "
            f"dtype {subset.dtype} and shape {tuple(subset.shape)}; make it with "
            "random_step_subset(mask.sum(1), num_steps)"
        )
    if bool(subset[:, 0].any()) or bool((subset & ~mask).any()):
        raise ValueError(
            "step_subset may only select steps 1..N_b-1 of each set (step 0 has no residual and "
            "padding is no step); make it with random_step_subset(mask.sum(1), num_steps)"
        )
    return subset


def check_every_step(step_subset: torch.Tensor | None, name: str) -> None:
    """Refuse step energies computed on a step subset where ``name`` needs every step."""
    if step_subset is not None:
        raise ValueError(
            f"{name} needs the energies of every step, but these StepEnergies were computed on "
            "a step subset (teacher_force(..., step_subset=...)); call teacher_force without "
            "step_subset"
        )


def check_int(value, name: str, minimum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) and at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)


def check_positive_int(value, name: str) -> int:
    """``value`` as an ``int`` if it is a positive integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def finite_float(value, name: str) -> float:
    """``value`` as a float; ``ValueError`` naming ``name`` unless it is a finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def float_in_range(value, name: str, low: float, high: float, high_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``[low, high)`` if ``high_open``)."""
    value = finite_float(value, name)
    if value < low or value > high or (high_open and value == high):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must lie in [{low}, {high}{bracket}, got {value}")
    return value


def explicit_generator(generator) -> torch.Generator | None:
    """The package's one RNG rule (Pyro's): a ``torch.Generator`` is used as given, an ``int``
    seeds a fresh CPU generator (an explicit, reproducible stream), and ``None`` stays ``None``:
    torch's global RNG, which ``pyro.set_rng_seed(s)`` (or ``torch.manual_seed(s)``) controls."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise ValueError(f"generator must be a torch.Generator, an int seed or None (torch's global RNG), "
                     f"got {generator!r}")


def make_generator(generator) -> torch.Generator:
    """:func:`explicit_generator`, with ``None`` as the global CPU generator object itself
    (``torch.default_generator``), for code that draws with an explicit ``generator=``."""
    explicit = explicit_generator(generator)
    return torch.default_generator if explicit is None else explicit


def positive_float(value, name: str) -> float:
    """``value`` as a float; ``ValueError`` naming ``name`` unless it is finite and > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value

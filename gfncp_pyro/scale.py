"""Input scale: bringing a user's points to the scale a Gaussian-mixture model was trained on.

A model trained on the CRP mixture of Eq. (1) in [1] (cluster means ``mu ~ N(0, sigma_mu^2 I)``,
points ``x ~ N(mu, sigma_x^2 I)``) has only ever seen sets at that scale; the same data times 3
look like many small clusters to it. :func:`estimate_scale` ("``--scale auto``") returns a
factor ``s`` and a centre ``m`` (the coordinate-wise median) so that ``s * (x - m)`` is the data
at the scale the model's own generative model finds most probable:

    s = argmax over a grid of  log p(c_s) + log p(s (x - m) | c_s) + N D log s,

the joint density of the rescaled points (with the Jacobian ``s^(N D)``, so every ``s`` scores
the same data) under the model's CRP prior and Gaussian likelihood, where ``c_s`` is the
network's greedy clustering of ``s (x - m)`` (a stand-in for the MAP partition). The grid is
``s_nn * 2^(k/2)``, ``k = -6..4``, around a first guess ``s_nn`` that matches the median
nearest-neighbour distance of the data with that of sets of the same size drawn from the model
(:func:`nn_scale`); at most ``max_points`` points (a seeded subset) enter the search. Medians
keep a few outliers or duplicates from moving the estimate, and the estimate is equivariant:
``estimate_scale(c * x + b).factor == estimate_scale(x).factor / c``, so rescaled or shifted
data get the same clustering.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .models import CRPMixture

__all__ = ["ScaleEstimate", "nearest_neighbour_distances", "median_nn_distance", "reference_nn_distance",
           "nn_scale", "estimate_scale", "OFF_SCALE"]

OFF_SCALE = 2.0
"""Data whose estimated factor lies outside ``[1 / OFF_SCALE, OFF_SCALE]`` are called off-scale."""

_CHUNK = 1024


class ScaleEstimate(NamedTuple):
    """``factor`` ``s`` and ``centre`` ``m`` (D,) with ``s * (x - m)`` on the model's scale; the
    first guess ``nn_factor`` (:func:`nn_scale`) and the grid searched, with its scores."""

    factor: float
    centre: torch.Tensor
    nn_factor: float
    grid: tuple[float, ...]
    log_joint: tuple[float, ...]

    def off_scale(self) -> bool:
        """Whether data used as given (factor 1) are off the model's scale (outside
        ``[1 / OFF_SCALE, OFF_SCALE]``)."""
        return not 1.0 / OFF_SCALE <= self.factor <= OFF_SCALE


def nearest_neighbour_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every point to its nearest other point.

    :param x: ``(N, D)`` with ``N >= 2``.
    :returns: ``(N,)`` float64; computed in row blocks of 1,024, so memory is ``O(1024 N)``.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"nearest-neighbour distances need points (N, D) with N >= 2, got shape {tuple(x.shape)}")
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for start in range(0, x.shape[0], _CHUNK):
        block = torch.cdist(x[start:start + _CHUNK], x)
        rows = torch.arange(block.shape[0])
        block[rows, rows + start] = math.inf
        out[start:start + _CHUNK] = block.min(1).values
    return out


def median_nn_distance(x: torch.Tensor) -> float:
    """Median over points of the nearest-neighbour distance (``torch.quantile`` at 0.5).

    :raises ValueError: if fewer than 2 points, or if more than half of the points have a
        duplicate (the median is 0: no scale can be read from the data).
    """
    value = float(torch.quantile(nearest_neighbour_distances(x), 0.5))
    if not value > 0.0:
        raise ValueError("more than half of the points coincide with another point, so no scale can be read from "
                         "their nearest-neighbour distances; pass --scale none or a number")
    return value


def reference_nn_distance(mixture: CRPMixture, n: int, draws: int = 16, seed: int = 0) -> float:
    """Median over ``draws`` seeded sets of ``n`` points from ``mixture`` of their median
    nearest-neighbour distance."""
    if n < 2 or draws < 1:
        raise ValueError(f"need n >= 2 points and draws >= 1, got n={n}, draws={draws}")
    generator = torch.Generator().manual_seed(seed)
    batch = mixture.sample_batch(torch.full((draws,), n), generator=generator, dtype=torch.float64)
    values = torch.tensor([float(torch.quantile(nearest_neighbour_distances(batch.x[i]), 0.5))
                           for i in range(draws)], dtype=torch.float64)
    return float(torch.quantile(values, 0.5))


def nn_scale(x: torch.Tensor, mixture: CRPMixture, draws: int = 16, seed: int = 0) -> float:
    """The factor that gives points ``x`` ``(N, D)`` the median nearest-neighbour distance of
    sets of ``N`` points of ``mixture``: ``reference_nn_distance / median_nn_distance(x)``."""
    return reference_nn_distance(mixture, x.shape[0], draws, seed) / median_nn_distance(x)


GRID_EXPONENTS = tuple(k / 2 for k in range(-6, 5))


def estimate_scale(x: torch.Tensor, net, mixture: CRPMixture, max_points: int = 256, seed: int = 0) -> ScaleEstimate:
    """The ``auto`` scale of points ``x`` ``(N, D)`` for ``net``, a model of ``mixture`` (module
    docstring).

    :param net: the :class:`~gfncp_pyro.nn.EnergyNet` that will cluster the points.
    :param int max_points: points used in the search (a seeded random subset beyond that).
    :raises ValueError: for fewer than 2 points, points of another dimension than the model's,
        or data whose nearest-neighbour distances are mostly 0.
    """
    from . import decoding
    from .distributions import ChineseRestaurantProcess

    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2 or x.shape[1] != mixture.dim:
        raise ValueError(f"points must have shape (N, {mixture.dim}), got {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError("estimating the scale needs at least 2 points; pass --scale none or a number")
    centre = x.median(0).values
    if x.shape[0] > max_points:
        keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        x = x[keep.sort().values]
    x = x - centre
    n, d = x.shape
    first = nn_scale(x, mixture, seed=seed)
    crp = ChineseRestaurantProcess(torch.tensor(mixture.alpha, dtype=torch.float64), n)
    dtype = next(net.parameters()).dtype
    grid, scores = [], []
    for exponent in GRID_EXPONENTS:
        factor = first * 2.0 ** exponent
        scaled = factor * x
        with torch.no_grad():
            labels, _ = decoding.greedy(net, scaled.to(dtype))
        log_joint = crp.log_prob(labels) + mixture.likelihood.log_marginal(scaled, labels) + n * d * math.log(factor)
        grid.append(factor)
        scores.append(float(log_joint))
    best = max(range(len(grid)), key=scores.__getitem__)
    return ScaleEstimate(grid[best], centre, first, tuple(grid), tuple(scores))

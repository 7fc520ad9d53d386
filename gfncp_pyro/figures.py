"""Figures of the clustering experiments: SDPP distributions and clusterings of images or points.

:func:`plot_sdpp` draws the histogram and the empirical CDF of SDPP (Eq. 32 in [1]) per model,
as Figs. 1 and 5 in [1]; :func:`plot_top_clusterings` shows the most probable clusterings of
a set of images, one cluster per row, as Fig. 3 in [1] (e.g. the top-3 of
:func:`gfncp_pyro.decoding.beam_search`); :func:`plot_point_clusterings` draws clusterings of
vector points side by side, in a 2-D PCA projection when ``D > 2``. PNGs are written atomically.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas: no pyplot, no
global backend switch, nothing left open.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

__all__ = ["plot_sdpp", "plot_top_clusterings", "plot_point_clusterings", "pca_projection"]

DPI = 120
SDPP_BINS = 30


def _colors(count: int) -> list[tuple[float, float, float]]:
    """``count`` distinct colours: tab10 without its grey, then tab20's lighter shades, then
    repeating."""
    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i != 7]
    palette += [c for i, c in enumerate(colormaps["tab20"].colors[1::2]) if i != 7]
    return [to_rgb(palette[i % len(palette)]) for i in range(count)]


def _match_colors(panels: list[list[np.ndarray]], n: int) -> list[list[int]]:
    """Colour indices of every cluster of every panel: the first panel's clusters take colours
    ``0..K-1``; a later cluster takes the colour of the first-panel cluster it shares most
    images with (greedily, each colour once per panel), or a new colour."""
    def onehot(members: list[np.ndarray]) -> np.ndarray:
        matrix = np.zeros((n, len(members)))
        for k, m in enumerate(members):
            matrix[m, k] = 1.0
        return matrix

    reference = onehot(panels[0])
    colors, fresh = [list(range(len(panels[0])))], len(panels[0])
    for members in panels[1:]:
        overlap = onehot(members).T @ reference  # (K, K_ref) shared images
        assigned: dict[int, int] = {}
        for flat in np.argsort(-overlap, axis=None, kind="stable"):
            k, j = np.unravel_index(flat, overlap.shape)
            if overlap[k, j] > 0 and k not in assigned and j not in assigned.values():
                assigned[int(k)] = int(j)
        row = []
        for k in range(len(members)):
            if k not in assigned:
                assigned[k], fresh = fresh, fresh + 1
            row.append(assigned[k])
        colors.append(row)
    return colors


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    from .outputs import write_atomic_with

    return write_atomic_with(path, FigureCanvasAgg(fig).print_png, "wb")


def _check_sdpp_values(values) -> dict[str, np.ndarray]:
    if not isinstance(values, Mapping) or not values:
        raise ValueError("values must be a non-empty dict {model name: SDPP values}, e.g. "
                         "{'GFNCP': [...], 'NCP': [...]}")
    checked = {}
    for name, series in values.items():
        array = np.asarray(series.detach().cpu().numpy() if isinstance(series, torch.Tensor) else series,
                           dtype=np.float64)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"values[{name!r}] must be a non-empty 1-D sequence of SDPP values, "
                             f"got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"values[{name!r}] contains NaN or infinite values; drop the sets whose "
                             "SDPP could not be computed")
        if (array < 0).any():
            raise ValueError(f"values[{name!r}] contains negative values; SDPP (Eq. 32) is a ratio "
                             "of a standard deviation to a mean and is >= 0")
        checked[str(name)] = array
    return checked


def plot_sdpp(values: Mapping[str, Sequence[float]], path, title: str = "") -> Path:
    """Histogram and empirical CDF of SDPP per model (Figs. 1 and 5 in [1]).

    Left: histograms on shared bins, as the fraction of sets per bin (so models evaluated on
    different numbers of sets compare), transparent bars with outlines. Right: the ECDFs.

    :param values: ``{model name: SDPP values (S,)}`` (sequences, arrays or tensors), e.g.
        ``{"GFNCP": [...], "NCP": [...]}``; each non-empty, finite and ``>= 0``.
    :param path: the ``.png`` to write (parent folders are created).
    :param str title: figure title (default: "SDPP over data orders").
    :returns: ``path`` as a :class:`~pathlib.Path`.
    :raises ValueError: on an empty dict, an empty series, NaN/inf or negative values, or a
        path that is not a ``.png``.
    """
    series = _check_sdpp_values(values)
    everything = np.concatenate(list(series.values()))
    low, high = float(everything.min()), float(everything.max())
    if high - low < 1e-12:
        low, high = max(0.0, low - 0.5), high + 0.5
    edges = np.linspace(low, high, SDPP_BINS + 1)
    fig = Figure(figsize=(10.0, 4.0), dpi=DPI)
    hist_ax, ecdf_ax = fig.subplots(1, 2)
    for (name, array), color in zip(series.items(), _colors(len(series))):
        label = f"{name} (n = {array.size}, median {np.median(array):.3g})"
        weights = np.full(array.size, 1.0 / array.size)
        hist_ax.hist(array, bins=edges, weights=weights, color=color, alpha=0.45, label=label)
        hist_ax.hist(array, bins=edges, weights=weights, color=color, histtype="step", linewidth=1.2)
        xs = np.sort(array)
        ecdf_ax.step(np.concatenate([[low], xs, [high]]), np.concatenate([np.arange(xs.size + 1) / xs.size, [1.0]]),
                     where="post", color=color, linewidth=1.6, label=label)
    hist_ax.set_title("Histogram", fontsize=10)
    ecdf_ax.set_title("Empirical CDF", fontsize=10)
    ecdf_ax.set_ylim(0.0, 1.02)
    for ax, corner in ((hist_ax, "upper right"), (ecdf_ax, "lower right")):
        ax.set_xlabel("SDPP (Eq. 32)")
        ax.set_ylabel("fraction of sets")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc=corner)
    fig.suptitle(title or "SDPP over data orders (lower: more order-consistent)")
    fig.tight_layout()
    return _save(fig, path)


def _check_images(images) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a tensor or ndarray (N, 1, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[1] not in (1, 3) or min(images.shape[2:]) < 1:
        raise ValueError(f"images must have shape (N, 1, H, W) (or (N, 3, H, W) for colour) with N >= 1, "
                         f"got {images.shape}")
    images = images.astype(np.float64)
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    if images.min() < 0.0 or images.max() > 1.0:
        raise ValueError(f"image values must lie in [0, 1], got [{images.min():.3g}, {images.max():.3g}]; "
                         "rescale them, e.g. images / 255")
    return images


def _check_clusterings(clusterings, n: int, log: bool) -> list[tuple[np.ndarray, float]]:
    if not isinstance(clusterings, Sequence) or len(clusterings) == 0:
        raise ValueError("clusterings must be a non-empty list of (labels (N,), probability) pairs, e.g. "
                         "list(zip(*beam_search(net, x, top_k=3)))")
    checked = []
    for i, item in enumerate(clusterings):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"clusterings[{i}] must be a pair (labels (N,), probability), got {type(item).__name__}")
        labels, score = item
        labels = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
        if labels.shape != (n,):
            raise ValueError(f"clusterings[{i}] has labels of shape {labels.shape}; expected ({n},), one label "
                             "per image")
        if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
            raise ValueError(f"clusterings[{i}] labels must be non-negative integers, got dtype {labels.dtype}")
        score = float(score)
        if math.isnan(score) or score == math.inf:
            raise ValueError(f"clusterings[{i}] has probability {score}; expected a finite number")
        if log and score > 1e-6:
            raise ValueError(f"clusterings[{i}] has log-probability {score:.4g} > 0; pass log=False if the "
                             "values are probabilities")
        if not log and not 0.0 <= score <= 1.0 + 1e-6:
            raise ValueError(f"clusterings[{i}] has probability {score:.4g} outside [0, 1]; pass log=True if the "
                             "values are log-probabilities")
        checked.append((labels.astype(np.int64), score))
    return checked


def _mosaic(images: np.ndarray, rows: list[np.ndarray], colors, columns: int, border: int) -> np.ndarray:
    """One RGB canvas: row ``r`` holds images ``rows[r]`` framed in ``colors[r]``."""
    _, channels, height, width = images.shape
    gap = border
    cell_h, cell_w = height + 2 * border + gap, width + 2 * border + gap
    canvas = np.ones((len(rows) * cell_h + gap, columns * cell_w + gap, 3))
    for r, (members, color) in enumerate(zip(rows, colors)):
        for c, index in enumerate(members):
            top, left = gap + r * cell_h, gap + c * cell_w
            canvas[top:top + height + 2 * border, left:left + width + 2 * border] = color
            tile = images[index].transpose(1, 2, 0)
            tile = np.repeat(tile, 3, axis=2) if channels == 1 else tile
            canvas[top + border:top + border + height, left + border:left + border + width] = tile
    return canvas


def plot_top_clusterings(
    images,
    clusterings: Sequence[tuple],
    path,
    title: str = "",
    max_per_cluster: int = 12,
    *,
    log: bool = True,
) -> Path:
    """The most probable clusterings of a set of images side by side (Fig. 3 in [1]).

    One panel per clustering, titled "(a) log q = ..." (or "(a) p = ..." with ``log=False``).
    Each cluster is a row of its images in their original order, framed in the cluster's
    colour and led by a coloured label with its size; at most ``max_per_cluster`` images are
    shown per row, followed by "+n" for the rest. Clusters are listed in the order of their
    first image; a cluster keeps the colour of the first panel's cluster that it shares most
    images with, so colours follow the clusters across panels.

    :param images: ``(N, 1, H, W)`` (or ``(N, 3, H, W)``) tensor or ndarray with values in
        ``[0, 1]``.
    :param clusterings: ``[(labels (N,), score), ...]``: integer labels (any non-negative
        values) and the clustering's log-probability (``log=True``) or probability.
    :param path: the ``.png`` to write (parent folders are created).
    :param str title: figure title.
    :param int max_per_cluster: images shown per cluster.
    :param bool log: whether the scores are log-probabilities.
    :returns: ``path`` as a :class:`~pathlib.Path`.
    :raises ValueError: on images of the wrong shape or range, labels whose length is not
        ``N``, NaN or out-of-range scores, an empty list, or a path that is not a ``.png``.
    """
    images = _check_images(images)
    n, _, height, width = images.shape
    checked = _check_clusterings(clusterings, n, log)
    if isinstance(max_per_cluster, bool) or not isinstance(max_per_cluster, int) or max_per_cluster < 1:
        raise ValueError(f"max_per_cluster must be a positive integer, got {max_per_cluster!r}")
    panels = []
    for labels, score in checked:
        _, first = np.unique(labels, return_index=True)
        firsts = np.sort(first)  # clusters in the order of their first image
        panels.append(([np.flatnonzero(labels == labels[f]) for f in firsts], score))
    color_index = _match_colors([members for members, _ in panels], n)
    palette = _colors(1 + max(max(row) for row in color_index))
    columns = min(max_per_cluster, max(len(m) for members, _ in panels for m in members))
    border = max(1, round(min(height, width) / 14))
    rows = max(len(members) for members, _ in panels)
    cell_w, cell_h = width + 3 * border, height + 3 * border
    # Inches per image cell: about 0.5" for a 28-pixel image, between 0.3" and 0.8".
    scale = min(0.8, max(0.3, 0.5 * max(cell_h, cell_w) / 28)) / max(cell_h, cell_w)
    panel_w = (columns + 1.6) * cell_w * scale  # room for the labels and "+n"
    fig = Figure(figsize=(max(4.0, panel_w * len(panels)), rows * cell_h * scale + 1.2), dpi=DPI)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for p, (ax, (members, score)) in enumerate(zip(axes, panels)):
        colors = [palette[c] for c in color_index[p]]
        shown = [m[:max_per_cluster] for m in members]
        canvas = _mosaic(images, shown, colors, columns, border)
        left = 1.0 * cell_w  # white space on the left for the cluster labels
        padded = np.ones((rows * cell_h + border, int(left) + canvas.shape[1] + int(0.6 * cell_w), 3))
        padded[:canvas.shape[0], int(left):int(left) + canvas.shape[1]] = canvas
        ax.imshow(padded, interpolation="nearest")
        for r, (m, color) in enumerate(zip(members, colors)):
            middle = border + r * cell_h + height / 2 + border
            ax.text(left - border, middle, f"{r + 1} ({len(m)})", color=color, ha="right", va="center",
                    fontsize=8, fontweight="bold")
            if len(m) > max_per_cluster:
                ax.text(left + canvas.shape[1] + border, middle, f"+{len(m) - max_per_cluster}",
                        ha="left", va="center", fontsize=8, color="#333333")
        score_text = f"log q = {score:.3f}" if log else f"p = {score:.3f}"
        ax.set_title(f"({chr(ord('a') + p) if p < 26 else p + 1}) {score_text}, {len(members)} clusters",
                     fontsize=10)
        ax.set_axis_off()
    fig.suptitle(title or "Most probable clusterings", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def pca_projection(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of ``points`` ``(N, D)``.

    :returns: ``(coordinates (N, 2), explained (2,))``: the centred points projected on the two
        leading right singular vectors (signs fixed so that each axis's largest loading is
        positive), and the fraction of the total variance along each.
    """
    centred = points - points.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    axes = axes * np.sign(axes[np.arange(axes.shape[0]), np.abs(axes).argmax(1)])[:, None]
    total = float((singular ** 2).sum())
    explained = (singular[:2] ** 2) / total if total > 0 else np.zeros(axes.shape[0])
    coordinates = centred @ axes.T
    if coordinates.shape[1] < 2:
        coordinates = np.concatenate([coordinates, np.zeros((coordinates.shape[0], 2 - coordinates.shape[1]))], 1)
        explained = np.concatenate([explained, np.zeros(2 - explained.shape[0])])
    return coordinates, explained


def plot_point_clusterings(points, panels: Sequence[tuple], path, title: str = "") -> Path:
    """Clusterings of vector points side by side, one panel each, colours following clusters.

    Points of ``D = 2`` are drawn as they are (axes ``x[0]``, ``x[1]``); ``D = 1`` against the
    point index; ``D > 2`` in the 2-D PCA projection of the points (:func:`pca_projection`),
    axes labelled with the share of variance. A cluster keeps the colour of the first panel's
    cluster it shares most points with.

    :param points: ``(N, D)`` array or tensor, finite.
    :param panels: ``[(labels (N,), title), ...]``, non-empty: e.g. the greedy partition
        written to a file, then the top-k of beam search.
    :param path: the ``.png`` to write.
    :returns: ``path`` as a :class:`~pathlib.Path`.
    """
    points = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] == 0 or not np.isfinite(points).all():
        raise ValueError(f"points must be a finite array (N, D) with N >= 1, got shape {points.shape}")
    n, d = points.shape
    if not isinstance(panels, Sequence) or not panels:
        raise ValueError("panels must be a non-empty list of (labels (N,), title) pairs")
    checked = _check_clusterings([(labels, 0.0) for labels, _ in panels], n, log=True)
    if d == 2:
        xy, axis_names = points, ("x[0]", "x[1]")
    elif d == 1:
        xy, axis_names = np.stack([np.arange(n), points[:, 0]], 1), ("point index", "x[0]")
    else:
        xy, explained = pca_projection(points)
        axis_names = tuple(f"PC{i + 1} ({100 * e:.0f}% of the variance)" for i, e in enumerate(explained))
    members = []
    for labels, _ in checked:
        _, first = np.unique(labels, return_index=True)
        members.append([np.flatnonzero(labels == labels[f]) for f in np.sort(first)])
    color_index = _match_colors(members, n)
    palette = _colors(1 + max(max(row) for row in color_index))
    size = float(np.clip(2000.0 / n, 4.0, 30.0))
    fig = Figure(figsize=(4.4 * len(panels), 4.6), dpi=DPI)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, clusters, colors, (_, panel_title) in zip(axes, members, color_index, panels):
        for cluster, c in zip(clusters, colors):
            ax.scatter(xy[cluster, 0], xy[cluster, 1], s=size, color=palette[c], linewidths=0)
        ax.set_title(f"{panel_title}\n{len(clusters)} clusters", fontsize=9)
        ax.set_xlabel(axis_names[0], fontsize=8)
        ax.set_ylabel(axis_names[1], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
    projection = "" if d <= 2 else f" (D = {d}: 2-D PCA projection)"
    fig.suptitle((title or "Clusterings") + projection, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)

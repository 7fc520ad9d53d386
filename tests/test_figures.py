"""Figures of the image experiments: PNGs that read back, layouts that follow the data, bad
input refused."""

import math

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from gfncp_pyro.figures import _colors, _match_colors, plot_sdpp, plot_top_clusterings


def _read(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image[..., :3]


def _images(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` grey 28x28 images: a bright square at a random place on a dark background."""
    gen = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.rand(n, 1, 28, 28, generator=gen)
    corners = torch.randint(0, 18, (n, 2), generator=gen)
    for i, (r, c) in enumerate(corners.tolist()):
        images[i, 0, r:r + 10, c:c + 10] = 0.9
    return images


def _has_color(image: np.ndarray, color, tol: float = 0.02) -> int:
    return int((np.abs(image - np.asarray(color)).max(-1) < tol).sum())


def test_plot_sdpp_writes_a_readable_png(tmp_path):
    gen = np.random.default_rng(0)
    values = {"GFNCP": gen.gamma(2.0, 0.1, 300), "NCP": torch.tensor(gen.gamma(2.0, 0.6, 200))}
    path = plot_sdpp(values, tmp_path / "sub" / "sdpp.png", title="SDPP")
    assert path == tmp_path / "sub" / "sdpp.png" and path.stat().st_size > 20_000
    image = _read(path)
    assert 400 <= image.shape[0] <= 600 and 1000 <= image.shape[1] <= 1400
    blue, orange = _colors(2)
    assert _has_color(image, blue) > 500 and _has_color(image, orange) > 500  # both ECDF lines
    assert plt.get_fignums() == []


def test_plot_sdpp_single_value_and_one_model(tmp_path):
    image = _read(plot_sdpp({"only": [0.0]}, tmp_path / "one.png"))
    assert image.std() > 0.05


@pytest.mark.parametrize("values, message", [
    ({}, "non-empty dict"),
    ([0.1, 0.2], "non-empty dict"),
    ({"GFNCP": []}, "non-empty 1-D"),
    ({"GFNCP": [[0.1, 0.2]]}, "non-empty 1-D"),
    ({"GFNCP": [0.1, math.nan]}, "NaN"),
    ({"GFNCP": [0.1], "NCP": [math.inf]}, "NaN or infinite"),
    ({"GFNCP": [-0.1]}, ">= 0"),
])
def test_plot_sdpp_rejects_bad_values(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        plot_sdpp(values, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_sdpp_rejects_a_path_that_is_not_png(tmp_path):
    with pytest.raises(ValueError, match="png"):
        plot_sdpp({"GFNCP": [0.1]}, tmp_path / "sdpp.pdf")


def test_plot_top_clusterings_writes_a_readable_png(tmp_path):
    images = _images(30)
    truth = torch.arange(30) % 3
    merged = np.where(truth.numpy() == 2, 0, truth.numpy())
    top = [(truth, -0.5), (merged, -1.25), (np.arange(30) % 5, -3.0)]
    path = plot_top_clusterings(images, top, tmp_path / "top.png", title="top-3")
    assert path.stat().st_size > 10_000
    image = _read(path)
    assert 150 <= image.shape[0] <= 1000 and 1000 <= image.shape[1] <= 5000
    # Cluster frames in the first colours; the 5-cluster panel adds colours 3 and 4.
    colors = _colors(5)
    assert all(_has_color(image, c) > 100 for c in colors)
    assert plt.get_fignums() == []
    # Probabilities instead of log-probabilities, ndarray images.
    image = _read(plot_top_clusterings(images.numpy(), [(truth, 0.7)], tmp_path / "p.png", log=False))
    assert image.shape[1] < 1000  # one panel


def test_plot_top_clusterings_layout_follows_clusters(tmp_path):
    images = _images(40)
    one = _read(plot_top_clusterings(images, [(np.zeros(40, dtype=int), -1.0)], tmp_path / "one.png"))
    four = _read(plot_top_clusterings(images, [(np.arange(40) % 4, -1.0)], tmp_path / "four.png"))
    assert four.shape[0] > one.shape[0] + 100  # one row per cluster
    capped = _read(plot_top_clusterings(images, [(np.zeros(40, dtype=int), -1.0)], tmp_path / "capped.png",
                                        max_per_cluster=4))
    assert capped.shape[1] < one.shape[1]  # at most max_per_cluster images per row


def test_match_colors_follow_the_clusters():
    def members(labels):
        labels = np.asarray(labels)
        return [np.flatnonzero(labels == k) for k in dict.fromkeys(labels.tolist())]

    reference = [0, 0, 1, 1, 2, 2]
    same = [5, 5, 3, 3, 4, 4]  # the same partition, other label values
    split = [0, 0, 1, 2, 3, 3]  # cluster 1 split, a new colour for the smaller part
    merged = [0, 0, 0, 0, 1, 1]
    colors = _match_colors([members(c) for c in (reference, same, split, merged)], 6)
    assert colors[0] == [0, 1, 2] and colors[1] == [0, 1, 2]
    assert colors[2] == [0, 1, 3, 2]
    assert colors[3] == [0, 2]


@pytest.mark.parametrize("images, clusterings, kwargs, message", [
    (_images(5), [(np.zeros(4, dtype=int), -1.0)], {}, r"shape \(4,\); expected \(5,\)"),
    (_images(5), [], {}, "non-empty list"),
    (_images(5), [(np.zeros(5, dtype=int), math.nan)], {}, "nan"),
    (_images(5), [(np.zeros(5, dtype=int), 0.5)], {}, "log-probability 0.5 > 0"),
    (_images(5), [(np.zeros(5, dtype=int), 1.5)], {"log": False}, "outside"),
    (_images(5), [(np.zeros(5), -1.0)], {}, "integers"),
    (_images(5), [np.zeros(5, dtype=int)], {}, "pair"),
    (_images(5)[:, 0], [(np.zeros(5, dtype=int), -1.0)], {}, r"\(N, 1, H, W\)"),
    (2.0 * _images(5), [(np.zeros(5, dtype=int), -1.0)], {}, r"\[0, 1\]"),
    (_images(5) * math.nan, [(np.zeros(5, dtype=int), -1.0)], {}, "NaN"),
    (_images(5), [(np.zeros(5, dtype=int), -1.0)], {"max_per_cluster": 0}, "max_per_cluster"),
])
def test_plot_top_clusterings_rejects_bad_input(tmp_path, images, clusterings, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_top_clusterings(images, clusterings, tmp_path / "bad.png", **kwargs)
    assert not (tmp_path / "bad.png").exists()


def test_pca_projection_matches_scikit_learn():
    from sklearn.decomposition import PCA

    from gfncp_pyro.figures import pca_projection

    points = np.random.default_rng(4).normal(size=(50, 6)) * np.arange(1, 7)
    coordinates, explained = pca_projection(points)
    reference = PCA(2).fit(points)
    assert np.allclose(explained, reference.explained_variance_ratio_, rtol=1e-9, atol=0)
    projected = reference.transform(points)
    for k in range(2):  # the same axes up to their signs
        sign = np.sign(coordinates[:, k] @ projected[:, k])
        assert np.allclose(coordinates[:, k], sign * projected[:, k], atol=1e-9)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_plot_point_clusterings_writes_a_png_for_any_dimension(tmp_path, d):
    from gfncp_pyro.figures import plot_point_clusterings

    points = np.random.default_rng(d).normal(size=(30, d))
    panels = [(np.arange(30) % 3, "greedy (written to --output)"), (np.arange(30) % 2, "beam search #1")]
    path = plot_point_clusterings(points, panels, tmp_path / "c.png", title="test")
    assert path.stat().st_size > 5_000 and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="labels of shape"):
        plot_point_clusterings(points, [(np.arange(29), "x")], tmp_path / "d.png")
    with pytest.raises(ValueError, match="finite"):
        plot_point_clusterings(np.full((3, d), np.nan), [(np.arange(3), "x")], tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()

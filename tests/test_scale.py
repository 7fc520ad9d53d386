"""Input scale (gfncp_pyro.scale): nearest-neighbour distances against a slow loop, the
``auto`` estimate's equivariance, and its value on data drawn from the model itself."""

import math

import pytest
import torch

from gfncp_pyro.distributions import ChineseRestaurantProcess
from gfncp_pyro.pretrained import load_pretrained
from gfncp_pyro.scale import (estimate_scale, median_nn_distance, nearest_neighbour_distances, nn_scale,
                              reference_nn_distance)


def _slow_nn(x):
    n = x.shape[0]
    return [min(math.dist(x[i].tolist(), x[j].tolist()) for j in range(n) if j != i) for i in range(n)]


@pytest.mark.parametrize("n, d", [(2, 1), (9, 2), (40, 5)])
def test_nearest_neighbour_distances_match_a_python_loop(n, d):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    assert nearest_neighbour_distances(x).tolist() == pytest.approx(_slow_nn(x), rel=1e-12, abs=1e-12)


def test_nearest_neighbour_distances_across_row_blocks():
    x = torch.randn(1100, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    full = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1).sqrt()
    full.fill_diagonal_(math.inf)
    assert torch.allclose(nearest_neighbour_distances(x), full.min(1).values, rtol=1e-12, atol=1e-12)


def test_median_nn_refuses_duplicated_points_and_tiny_sets():
    with pytest.raises(ValueError, match="coincide"):
        median_nn_distance(torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]]))
    with pytest.raises(ValueError, match="N >= 2"):
        nearest_neighbour_distances(torch.zeros(1, 2))


@pytest.fixture(scope="module")
def model():
    net, config = load_pretrained("mog2d-small", "gfncp", with_config=True)
    return net, config.mixture()


def test_auto_scale_is_equivariant_and_maximises_the_scored_evidence(model):
    net, mixture = model
    x = mixture.sample_batch(torch.tensor([60]), generator=torch.Generator().manual_seed(1),
                             dtype=torch.float64).x[0]
    base = estimate_scale(x, net, mixture)
    moved = estimate_scale(3.0 * x + torch.tensor([40.0, -7.0], dtype=torch.float64), net, mixture)
    assert moved.factor * 3.0 == pytest.approx(base.factor, rel=1e-9)
    assert moved.nn_factor * 3.0 == pytest.approx(base.nn_factor, rel=1e-9)
    assert torch.allclose(moved.centre, 3.0 * base.centre + torch.tensor([40.0, -7.0], dtype=torch.float64))
    assert base.factor == base.grid[max(range(len(base.grid)), key=base.log_joint.__getitem__)]
    # the score of the chosen factor, recomputed: log CRP + log marginal likelihood + Jacobian
    from gfncp_pyro import decoding

    scaled = base.factor * (x - base.centre)
    labels, _ = decoding.greedy(net, scaled.float())
    crp = ChineseRestaurantProcess(torch.tensor(mixture.alpha, dtype=torch.float64), 60)
    score = float(crp.log_prob(labels) + mixture.likelihood.log_marginal(scaled, labels)) + 120 * math.log(base.factor)
    assert max(base.log_joint) == pytest.approx(score, rel=1e-9)


def test_data_from_the_model_itself_are_on_scale(model):
    net, mixture = model
    for seed in range(3):
        x = mixture.sample_batch(torch.tensor([80]), generator=torch.Generator().manual_seed(10 + seed),
                                 dtype=torch.float64).x[0]
        estimate = estimate_scale(x, net, mixture)
        assert not estimate.off_scale(), estimate.factor
        assert not estimate_scale(x * 5.0, net, mixture).factor > 0.5  # five times too large: detected


def test_nn_scale_is_the_ratio_of_median_nn_distances(model):
    _, mixture = model
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = reference_nn_distance(mixture, 30) / median_nn_distance(x)
    assert nn_scale(x, mixture) == pytest.approx(expected, rel=1e-12)

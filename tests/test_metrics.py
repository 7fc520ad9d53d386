"""gfncp_pyro.metrics: the co-clustering error against a slow loop, and the one-module rule."""

import itertools

import pytest
import torch

from gfncp_pyro import infer, metrics


def test_co_clustering_mae_matches_a_python_loop():
    gen = torch.Generator().manual_seed(0)
    for n in (1, 2, 5):
        a, b = torch.rand(n, n, generator=gen, dtype=torch.float64), torch.rand(n, n, generator=gen, dtype=torch.float64)
        pairs = [(i, j) for i, j in itertools.product(range(n), repeat=2) if i != j]
        slow = sum(abs(float(a[i, j] - b[i, j])) for i, j in pairs) / len(pairs) if pairs else 0.0
        assert metrics.co_clustering_mae(a, b) == pytest.approx(slow, abs=1e-12)


def test_co_clustering_mae_of_samples_against_their_own_matrix_is_zero():
    labels = torch.tensor([[0, 0, 1], [0, 1, 1], [0, 0, 0]])
    matrix = metrics.co_clustering(labels)
    assert metrics.co_clustering_mae(matrix, matrix) == 0.0
    assert metrics.co_clustering_mae(matrix, torch.eye(3)) > 0


def test_co_clustering_mae_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="square and of equal shape"):
        metrics.co_clustering_mae(torch.zeros(3, 3), torch.zeros(2, 2))


def test_the_metrics_live_in_one_module():
    for name in ("total_variation", "co_clustering", "sdpp", "divergences", "entropy", "nmi", "ari"):
        assert getattr(metrics, name).__module__ == "gfncp_pyro.metrics", name
    assert infer.total_variation is metrics.total_variation and infer.co_clustering is metrics.co_clustering
    from gfncp_pyro import policy, tabulate
    assert not hasattr(policy, "sdpp") and not hasattr(tabulate, "divergences")

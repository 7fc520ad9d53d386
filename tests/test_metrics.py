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


def test_summarize_leaves_out_and_counts_non_finite_values():
    import math
    import statistics

    from gfncp_pyro.evaluation import summarize

    clean = summarize([1.0, 2.0, 4.0])
    assert clean == {"mean": statistics.fmean([1, 2, 4]), "std": statistics.stdev([1, 2, 4]), "median": 2.0,
                     "min": 1.0, "max": 4.0, "n": 3}
    mixed = summarize([1.0, math.inf, 2.0, 4.0, math.nan])
    assert {k: mixed[k] for k in clean} == {**clean, "n": 5} and mixed["nonfinite"] == 2
    empty = summarize([math.inf])
    assert math.isnan(empty["mean"]) and empty["nonfinite"] == 1 and empty["n"] == 1

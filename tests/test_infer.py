"""gfncp_pyro.infer: vectorised importance sampling, MH, summaries and fine-tuning."""

import math
from collections import defaultdict

import pyro
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from gfncp_pyro import infer
from gfncp_pyro.distributions import AmortizedPartition
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.guides import GFNCPGuide
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.partitions import enumerate_partitions
from test_guides import collapsed_reference

NET = ref.make_net(0, torch.float64)
MODEL = CRPMixture(alpha=1.0, sigma_mu=4.0, sigma_x=1.0, dim=2)


def data(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return MODEL.sample_batch(torch.tensor([n]), generator=gen, dtype=torch.float64).x[0]


def flat_net():
    """A network whose steps are uniform over the candidates: a broad proposal (weights <= N!)."""
    net = ref.make_net(1, torch.float64)
    with torch.no_grad():
        net.f_net[-1].weight.zero_()
    return net


FLAT = flat_net()


def exact_table(x):
    exact = exact_posterior(x, MODEL.alpha, MODEL.sigma_mu, MODEL.sigma_x)
    return exact, infer.PartitionTable(exact.labels, exact.log_posterior)


canonical_rows = st.integers(1, 6).flatmap(
    lambda n: st.lists(
        st.lists(st.integers(0, 2), min_size=n, max_size=n).map(lambda r: ref.actions_along(r, range(n))),
        min_size=1, max_size=12,
    )
)


@given(rows=canonical_rows, seed=st.integers(0, 1000))
def test_collapsed_log_joint_matches_loops(rows, seed):
    x = data(len(rows[0]), seed)
    labels = torch.tensor(rows)
    values = infer.collapsed_log_joint(MODEL, x, labels)
    assert values.shape == (len(rows),) and values.dtype == torch.float64
    for value, row in zip(values.tolist(), labels):
        assert abs(value - collapsed_reference(x, row)) < 1e-9
    assert infer.collapsed_log_joint(MODEL, x, labels[0]).shape == ()


def test_importance_fields_are_consistent():
    x = data(6, seed=1)
    guide = GFNCPGuide(MODEL, NET)
    result = infer.importance(MODEL, guide, x, 200, generator=3, warn=False)
    assert result.labels.shape == (200, 6)
    q = AmortizedPartition(guide.network, x)
    log_q = q.log_prob(result.labels).detach()  # teacher-forced, independent of the sampling pass
    assert torch.allclose(result.log_weights, result.log_joint - log_q, atol=1e-9)
    assert torch.allclose(result.log_joint, infer.collapsed_log_joint(MODEL, x, result.labels))
    w = result.log_weights.exp()
    assert abs(result.ess.item() - (w.sum() ** 2 / (w**2).sum()).item()) < 1e-9
    assert abs(result.log_evidence.item() - math.log(w.mean().item())) < 1e-9
    again = infer.importance(MODEL, guide, x, 200, generator=3, warn=False)
    assert torch.equal(again.labels, result.labels)


def test_importance_converges_to_the_exact_posterior():
    x = data(5, seed=2)
    exact, table = exact_table(x)
    result = infer.importance(MODEL, GFNCPGuide(MODEL, FLAT), x, 40000, generator=4, warn=False)
    assert abs(result.log_evidence.item() - exact.log_evidence.item()) < 0.05
    estimate = infer.posterior_table(result.labels, result.log_weights)
    assert infer.total_variation(estimate, table) < 0.05
    unweighted = infer.posterior_table(result.labels)  # q itself is far from p: the test has power
    assert infer.total_variation(unweighted, table) > 0.2


def test_independence_mh_targets_the_exact_posterior():
    x = data(5, seed=2)
    _, table = exact_table(x)
    chain = infer.independence_mh(MODEL, GFNCPGuide(MODEL, FLAT), x, 40000, burn_in=100, generator=5)
    assert chain.labels.shape == (40000, 5) and 0 < chain.acceptance_rate < 1
    assert torch.allclose(chain.log_joint, infer.collapsed_log_joint(MODEL, x, chain.labels))
    assert infer.total_variation(infer.posterior_table(chain.labels), table) < 0.05


def test_mh_chain_accepts_by_the_weight_ratio():
    log_w = [0.0, -1.0, 0.5, 0.5, -10.0, 3.0]
    log_u = [0.0, math.log(0.5), math.log(0.99), math.log(0.2), math.log(0.5), math.log(0.9)]
    # t=1: ratio e^-1=0.37 < 0.5 reject; t=2: e^.5 accept; t=3: ratio 1 accept; t=4: reject; t=5 accept
    states, accepted = infer._mh_indices(log_w, log_u)
    assert states == [0, 0, 2, 3, 3, 5] and accepted == 3


@given(rows=canonical_rows, seed=st.integers(0, 2**31 - 1), weighted=st.booleans())
def test_posterior_table_matches_a_dictionary(rows, seed, weighted):
    labels = torch.tensor(rows)
    gen = torch.Generator().manual_seed(seed)
    log_w = 3 * torch.randn(len(rows), generator=gen, dtype=torch.float64) if weighted else None
    table = infer.posterior_table(labels, log_w)
    weights = [1.0] * len(rows) if log_w is None else log_w.exp().tolist()
    expected = defaultdict(float)
    for row, w in zip(rows, weights):
        expected[tuple(row)] += w / sum(weights)
    got = {tuple(r): p for r, p in zip(table.labels.tolist(), table.log_probs.exp().tolist())}
    assert got.keys() == expected.keys()
    tol = 1e-9 if weighted else 1e-6  # equal weights are in the default dtype (float32)
    assert all(abs(got[k] - expected[k]) < tol for k in got)
    assert bool((table.log_probs[:-1] >= table.log_probs[1:]).all())


@given(first=canonical_rows, second=canonical_rows, seed=st.integers(0, 1000))
def test_total_variation_matches_a_dictionary(first, second, seed):
    n = len(first[0])
    second = [row[:n] + [0] * (n - len(row)) for row in second]
    second = [ref.actions_along(row, range(n)) for row in second]
    gen = torch.Generator().manual_seed(seed)
    p = infer.posterior_table(torch.tensor(first), torch.randn(len(first), generator=gen, dtype=torch.float64))
    q = infer.posterior_table(torch.tensor(second), torch.randn(len(second), generator=gen, dtype=torch.float64))
    pd = dict(zip(map(tuple, p.labels.tolist()), p.log_probs.exp().tolist()))
    qd = dict(zip(map(tuple, q.labels.tolist()), q.log_probs.exp().tolist()))
    expected = 0.5 * sum(abs(pd.get(k, 0.0) - qd.get(k, 0.0)) for k in set(pd) | set(qd))
    assert abs(infer.total_variation(p, q) - expected) < 1e-9
    assert abs(infer.total_variation(q, p) - expected) < 1e-9
    assert infer.total_variation(p, p) < 1e-12


@given(rows=canonical_rows, seed=st.integers(0, 1000))
def test_co_clustering_matches_loops(rows, seed):
    labels = torch.tensor(rows)
    log_w = torch.randn(len(rows), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    matrix = infer.co_clustering(labels, log_w)
    w = torch.softmax(log_w, 0).tolist()
    n = labels.shape[1]
    for i in range(n):
        for j in range(n):
            expected = sum(ws for ws, row in zip(w, rows) if row[i] == row[j])
            assert abs(matrix[i, j].item() - expected) < 1e-9
    assert infer.co_clustering(labels).dtype == torch.get_default_dtype()


def test_map_partition_is_the_best_sample():
    x = data(6, seed=3)
    result = infer.importance(MODEL, GFNCPGuide(MODEL, NET), x, 300, generator=6, warn=False)
    labels, log_joint = infer.map_partition(result)
    assert log_joint.item() == result.log_joint.max().item()
    assert abs(infer.collapsed_log_joint(MODEL, x, labels).item() - log_joint.item()) < 1e-9
    exact, _ = exact_table(x)
    best, best_log_post = exact.top(1)
    if abs(log_joint.item() - (best_log_post[0] + exact.log_evidence).item()) < 1e-9:
        assert torch.equal(labels, best[0])


def kl_to_exact(guide, x):
    """KL(p(c | x) || q(c | x)) by enumeration."""
    exact = exact_posterior(x, MODEL.alpha, MODEL.sigma_mu, MODEL.sigma_x)
    with torch.no_grad():
        log_q = AmortizedPartition(guide.network, x).log_prob(enumerate_partitions(x.shape[0]))
    return float((exact.log_posterior.exp() * (exact.log_posterior - log_q)).sum())


@pytest.mark.parametrize("objective", ["rws", "elbo"])
def test_fit_moves_the_guide_towards_the_posterior(objective):
    x = data(5, seed=4)
    guide = GFNCPGuide(MODEL, ref.make_net(2, torch.float64))
    before = kl_to_exact(guide, x)
    history = infer.fit(guide, x, 40, num_particles=16, objective=objective, lr=3e-3, generator=7)
    assert history.shape == (40,) and bool(torch.isfinite(history).all())
    assert kl_to_exact(guide, x) < 0.7 * before
    assert history[-10:].mean() > history[:10].mean()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g, x: infer.importance(MODEL, g, x, 0), "num_samples"),
        (lambda g, x: infer.importance(MODEL, "guide", x, 5), "GFNCPGuide"),
        (lambda g, x: infer.importance(MODEL, g, x[None], 5), r"\(N, 2\)"),
        (lambda g, x: infer.independence_mh(MODEL, g, x, 5, burn_in=-1), "burn_in"),
        (lambda g, x: infer.fit(g, x, 2, objective="kl"), "objective"),
        (lambda g, x: infer.fit(g, x, 2, objective="elbo", num_particles=1), "num_particles"),
        (lambda g, x: infer.fit(g, x, 2, lr=0.0), "lr"),
        (lambda g, x: infer.collapsed_log_joint("model", x, torch.zeros(4, dtype=torch.long)), "CRPMixture"),
        (lambda g, x: infer.collapsed_log_joint(MODEL, x, torch.zeros(3, dtype=torch.long)), "labels"),
        (lambda g, x: infer.collapsed_log_joint(MODEL, x, torch.tensor([1, 0, 0, 0])), "canonical"),
        (lambda g, x: infer.posterior_table(torch.zeros(3)), "integer"),
        (lambda g, x: infer.posterior_table(torch.zeros(3, 2, dtype=torch.long), torch.zeros(2)), "log_weights"),
        (lambda g, x: infer.co_clustering(torch.zeros(2, 3, dtype=torch.long), torch.full((2,), -math.inf)), "-inf"),
        (lambda g, x: infer.total_variation(infer.posterior_table(torch.zeros(1, 2, dtype=torch.long)),
                                            infer.posterior_table(torch.zeros(1, 3, dtype=torch.long))), "points"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(GFNCPGuide(MODEL, NET), data(4))


def test_results_follow_float32():
    net = ref.make_net(0, torch.float32)
    x = data(6, seed=5).float()
    result = infer.importance(MODEL, GFNCPGuide(MODEL, net), x, 50, generator=0, warn=False)
    assert result.log_weights.dtype == torch.float32 and result.ess.dtype == torch.float32
    assert infer.co_clustering(result.labels, result.log_weights).dtype == torch.float32
    pyro.clear_param_store()

"""GFNCPGuide: the network as a Pyro guide for the three variants of the CRP mixture."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import (
    CSIS,
    SVI,
    EmpiricalMarginal,
    Importance,
    Predictive,
    ReweightedWakeSleep,
    Trace_ELBO,
    TraceGraph_ELBO,
)

import reference as ref
from gfncp_pyro import decoding, policy
from gfncp_pyro.guides import GFNCPGuide
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.partitions import is_canonical

VARIANTS = ["dynamic", "padded", "collapsed"]
NET = ref.make_net(0, torch.float64)


@pytest.fixture(autouse=True)
def clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def mixture(variant="dynamic"):
    return CRPMixture(alpha=1.0, sigma_mu=4.0, sigma_x=1.0, dim=2, variant=variant)


def data(n=6, seed=0, dtype=torch.float64):
    batch = mixture().sample_batch(torch.tensor([n]), generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return batch.x[0]


def ewens(labels, alpha):
    sizes = torch.bincount(labels).tolist()
    n = len(labels)
    return len(sizes) * math.log(alpha) + math.lgamma(alpha) - math.lgamma(alpha + n) + sum(math.lgamma(s) for s in sizes)


def collapsed_reference(x, labels, alpha=1.0, sigma_mu=4.0, sigma_x=1.0):
    """log p(c, x) by loops: Ewens times one multivariate normal per cluster and dimension."""
    total = ewens(labels, alpha)
    for k in range(int(labels.max()) + 1):
        block = x[labels == k]
        m = block.shape[0]
        cov = sigma_x**2 * torch.eye(m, dtype=x.dtype) + sigma_mu**2 * torch.ones(m, m, dtype=x.dtype)
        normal = torch.distributions.MultivariateNormal(torch.zeros(m, dtype=x.dtype), cov)
        total += float(normal.log_prob(block.T).sum())
    return total


@pytest.mark.parametrize("variant", VARIANTS)
def test_sites_and_shapes(variant):
    x = data()
    guide = GFNCPGuide(mixture(variant), NET, generator=0)
    trace = poutine.trace(guide).get_trace(x)
    latents = trace.nodes["_RETURN"]["value"]
    c = trace.nodes["c"]["value"]
    assert c.shape == (6,) and bool(is_canonical(c))
    assert torch.equal(latents["c"], c)
    if variant == "collapsed":
        assert "mu" not in trace.nodes and set(latents) == {"c"}
    else:
        mu = trace.nodes["mu"]["value"]
        slots = 6 if variant == "padded" else int(c.max()) + 1
        assert mu.shape == (slots, 2) and torch.equal(latents["mu"], mu)
        assert [frame.name for frame in trace.nodes["mu"]["cond_indep_stack"]] == ["clusters"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("random_order", [False, True])
def test_importance_weight_is_the_collapsed_one(variant, random_order):
    """log p(c, mu, x) - log q(c, mu | x) = log p(c, x) - log q(c | x) for every mu draw."""
    x = data(seed=1)
    model = mixture(variant)
    guide = GFNCPGuide(model, NET, random_order=random_order, generator=1)
    for _ in range(3):
        guide_trace = poutine.trace(guide).get_trace(x)
        c = guide_trace.nodes["c"]["value"]
        order = guide_trace.nodes["c"]["fn"].order
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
        log_weight = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
        with torch.no_grad():
            log_q = policy.log_prob(guide.network, x[None], c[None], orders=order[None])[0]
        expected = collapsed_reference(x, c) - log_q.item()
        assert abs(log_weight.item() - expected) < 1e-9


def test_means_follow_their_exact_posterior():
    x = data(seed=2)
    guide = GFNCPGuide(mixture("padded"), NET, generator=2)
    trace = poutine.trace(guide).get_trace(x)
    c, fn = trace.nodes["c"]["value"], trace.nodes["mu"]["fn"].base_dist
    for k in range(6):
        block = x[c == k]
        n = block.shape[0]
        precision = 1 / 16.0 + n / 1.0  # prior 1 / sigma_mu^2, likelihood n / sigma_x^2
        loc = block.sum(0) / precision if n else torch.zeros(2, dtype=x.dtype)
        assert torch.allclose(fn.loc[k], loc, atol=1e-12)
        assert torch.allclose(fn.scale[k], torch.full((2,), precision**-0.5, dtype=x.dtype), atol=1e-12)


@pytest.mark.parametrize("elbo", [TraceGraph_ELBO, Trace_ELBO])
def test_svi_gradients_reach_the_network(elbo):
    x = data(seed=3)
    guide = GFNCPGuide(mixture(), NET, generator=3)
    before = [p.detach().clone() for p in guide.network.parameters()]
    svi = SVI(mixture(), guide, pyro.optim.Adam({"lr": 1e-2}), elbo())
    assert math.isfinite(svi.step(x))
    names = list(pyro.get_param_store().keys())
    assert len(names) == len(before) and all(name.startswith(guide._pyro_name) for name in names)
    changed = [not torch.equal(b, p) for b, p in zip(before, guide.network.parameters())]
    assert all(changed)
    assert all(torch.equal(a, b) for a, b in zip(NET.parameters(), ref.make_net(0, torch.float64).parameters()))


def test_pyro_reweighted_wake_sleep_trains_the_guide():
    x = data(seed=13)
    guide = GFNCPGuide(mixture(), NET, generator=7)
    before = [p.detach().clone() for p in guide.network.parameters()]
    rws = ReweightedWakeSleep(num_particles=4, vectorize_particles=False, model_has_params=False)
    SVI(mixture(), guide, pyro.optim.Adam({"lr": 1e-2}), rws).step(x)
    assert all(not torch.equal(b, p) for b, p in zip(before, guide.network.parameters()))


def test_two_guides_never_share_parameters():
    x = data(seed=4)
    first, second = GFNCPGuide(mixture(), NET, generator=0), GFNCPGuide(mixture(), NET, generator=1)
    assert first._pyro_name != second._pyro_name
    assert all(a is not b for a, b in zip(first.network.parameters(), second.network.parameters()))
    untouched = [p.detach().clone() for p in second.network.parameters()]
    poutine.trace(second).get_trace(x)  # both registered in the store
    SVI(mixture(), first, pyro.optim.Adam({"lr": 1e-2}), TraceGraph_ELBO()).step(x)
    assert all(torch.equal(a, b) for a, b in zip(untouched, second.network.parameters()))
    assert len(pyro.get_param_store().keys()) == 2 * len(untouched)


def test_a_name_clash_is_caught():
    x = data(seed=5)
    poutine.trace(GFNCPGuide(mixture(), NET, name="guide")).get_trace(x)
    clash = GFNCPGuide(mixture(), ref.make_net(1, torch.float64), name="guide")
    with pytest.raises(ValueError, match="clear_param_store"):
        clash(x)
    pyro.clear_param_store()
    assert clash(x)["c"].shape == (6,)


def test_batched_points_are_refused_loudly():
    x = data(seed=6)
    guide = GFNCPGuide(mixture(), NET)
    with pytest.raises(ValueError, match=r"one set \(N, D\) per call"):
        guide(x.expand(3, 6, 2))
    with pytest.raises(ValueError, match=r"one set \(N, D\) per call"):
        guide(num_points=6, observations={"x": x.expand(3, 6, 2)})
    elbo = TraceGraph_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    with pytest.raises(ValueError, match="vectorised particle plate"):
        elbo.loss(mixture(), guide, x)


def test_observations_take_precedence_and_csis_trains():
    x, other = data(seed=7), data(n=4, seed=8)
    guide = GFNCPGuide(mixture(), NET, generator=4)
    trace = poutine.trace(guide).get_trace(x, observations={"x": other})
    assert trace.nodes["c"]["value"].shape == (4,)
    assert torch.equal(trace.nodes["c"]["fn"].x, other)
    before = [p.detach().clone() for p in guide.network.parameters()]
    csis = CSIS(mixture(), guide, pyro.optim.Adam({"lr": 1e-2}), training_batch_size=2)
    assert math.isfinite(csis.step(torch.zeros(5, 2, dtype=torch.float64)))
    assert any(not torch.equal(b, p) for b, p in zip(before, guide.network.parameters()))
    with pytest.raises(ValueError, match="observed points"):
        guide(num_points=5)


def test_predictive_on_the_padded_model():
    x = data(seed=9, dtype=torch.float32)
    guide = GFNCPGuide(mixture("padded"), ref.make_net(0, torch.float32), generator=5)
    samples = Predictive(mixture("padded"), guide=guide, num_samples=100)(x)
    assert samples["c"].shape == (100, 1, 6)  # left-padded to the model's plate nesting
    assert samples["mu"].shape == (100, 6, 2)
    assert samples["x"].shape == (100, 6, 2)
    assert bool(is_canonical(samples["c"]).all())


def test_pyro_importance_runs_with_the_guide():
    x = data(seed=10)
    guide = GFNCPGuide(mixture(), NET, generator=6)
    posterior = Importance(mixture(), guide, num_samples=50).run(x)
    assert math.isfinite(float(posterior.get_log_normalizer()))
    c = EmpiricalMarginal(posterior, "c").sample((20,))
    assert c.shape == (20, 6) and bool(is_canonical(c).all())


@pytest.mark.parametrize("variant", VARIANTS)
def test_median_is_the_greedy_partition(variant):
    x = data(seed=11)
    guide = GFNCPGuide(mixture(variant), NET)
    point = guide.median(x)
    greedy, _ = decoding.greedy(NET, x)
    assert torch.equal(point["c"], greedy)
    if variant == "collapsed":
        assert set(point) == {"c"}
    else:
        loc, _ = mixture().likelihood.posterior_params(x, greedy, num_clusters=point["mu"].shape[0])
        assert torch.allclose(point["mu"], loc)


def test_float32_points_with_a_float64_network():
    x = data(seed=12, dtype=torch.float32)
    trace = poutine.trace(GFNCPGuide(mixture(), NET, generator=0)).get_trace(x)
    assert trace.nodes["mu"]["value"].dtype == torch.float32
    assert trace.nodes["c"]["fn"].x.dtype == torch.float64


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((lambda x: x, NET), {}, "CRPMixture"),
        ((mixture(), torch.nn.Linear(2, 2)), {}, "EnergyNet"),
        ((CRPMixture(dim=3), NET), {}, "dim=3"),
        ((mixture(), NET), {"name": ""}, "name"),
        ((mixture(), NET), {"generator": 1.5}, "generator"),
    ],
)
def test_bad_construction(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GFNCPGuide(*args, **kwargs)


def test_bad_calls():
    guide = GFNCPGuide(mixture(), NET)
    with pytest.raises(ValueError, match="num_points=4"):
        guide(data(), num_points=4)
    with pytest.raises(ValueError, match="dict"):
        guide(data(), observations=[1])

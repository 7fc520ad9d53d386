"""GFNCPGuide inside pyro.infer (issue 11): vectorised particles, CSIS, Predictive on every
variant, the model-spec check, the ESS warning, CRP precision, gradients under SVI.

What tests/test_guides.py already covers (sites, shapes of one trace, sequential SVI, CSIS
``step``, Predictive on the padded model without replication, Importance) is not repeated here.
"""

import math
import warnings

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import CSIS, SVI, EmpiricalMarginal, Importance, Predictive, Trace_ELBO, TraceGraph_ELBO
from pyro.infer.importance import vectorized_importance_weights

import reference as ref
from gfncp_pyro import (
    ChineseRestaurantProcess,
    CRPMixture,
    GFNCPGuide,
    LowESSWarning,
    ModelMismatchError,
    importance,
    load_pretrained,
    policy,
)
from gfncp_pyro.models import DynamicMeans
from gfncp_pyro.partitions import is_canonical

NET = ref.make_net(0, torch.float64)
P = 6  # particles


@pytest.fixture(autouse=True)
def clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="module")
def shipped():
    return load_pretrained("mog2d-small")


def mixture(variant="padded", **kwargs):
    spec = {"alpha": 1.0, "sigma_mu": 4.0, "sigma_x": 1.0, "dim": 2, **kwargs}
    return CRPMixture(variant=variant, **spec)


def data(n=6, seed=0, dtype=torch.float64, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    return mixture(**kwargs).sample_batch(torch.tensor([n]), generator=generator, dtype=dtype).x[0]


def sequential_log_weight(model, guide, x, latents):
    """log p(c, mu, x) - log q(c, mu | x) of one particle, from one ordinary (sequential) call
    of the model and of the guide, both conditioned on the particle's latents."""
    guide_trace = poutine.trace(poutine.condition(guide, data=latents)).get_trace(x)
    model_trace = poutine.trace(poutine.condition(model, data=latents)).get_trace(x)
    return float((model_trace.log_prob_sum() - guide_trace.log_prob_sum()).detach()), guide_trace


def particle_latents(trace, variant, p):
    latents = {"c": trace.nodes["c"]["value"].reshape(P, -1)[p]}
    if variant == "padded":
        latents["mu"] = trace.nodes["mu"]["value"][p]
    return latents


# ------------------------------------------------------------------ vectorised particles
@pytest.mark.parametrize("variant", ["padded", "collapsed"])
@pytest.mark.parametrize("random_order", [False, True])
def test_vectorised_importance_weights_equal_sequential_calls(variant, random_order):
    """P partitions decoded in one pass under the particle plate: each one's log q and log
    weight equal those of an ordinary guide call on the same latents (float64, 1e-9)."""
    x, model = data(seed=1), mixture(variant)
    guide = GFNCPGuide(model, NET, random_order=random_order, generator=1)
    pyro.set_rng_seed(1)
    nesting = 1 if variant == "padded" else 0  # the collapsed model has no plates
    log_w, _, guide_trace = vectorized_importance_weights(model, guide, x, num_samples=P, max_plate_nesting=nesting)
    log_w = log_w.detach()
    guide_trace.compute_log_prob()
    site = guide_trace.nodes["c"]
    c = site["value"].reshape(P, -1)
    assert site["value"].shape == ((P, 1, 6) if variant == "padded" else (P, 6))
    assert bool(is_canonical(c).all()) and len({tuple(r) for r in c.tolist()}) > 1
    order = site["fn"].order.reshape(P, -1)
    with torch.no_grad():
        reference_log_q = policy.log_prob(NET, x.expand(P, 6, 2), c, orders=order)
    torch.testing.assert_close(site["log_prob"].detach().reshape(P), reference_log_q, rtol=0, atol=1e-9)
    if random_order:
        return  # an ordinary call draws its own order: the weights are compared along the identity
    for p in range(P):
        expected, sequential = sequential_log_weight(model, guide, x, particle_latents(guide_trace, variant, p))
        sequential.compute_log_prob()
        assert abs(float(sequential.nodes["c"]["log_prob"].detach()) - float(reference_log_q[p])) < 1e-9
        assert abs(float(log_w[p]) - expected) < 1e-9


@pytest.mark.parametrize("variant", ["padded", "collapsed"])
@pytest.mark.parametrize("elbo_class", [Trace_ELBO, TraceGraph_ELBO])
def test_vectorised_elbo_is_the_mean_of_sequential_log_weights(variant, elbo_class):
    x, model = data(seed=2), mixture(variant)
    guide = GFNCPGuide(model, NET, generator=2)
    traced = poutine.trace(guide)
    elbo = elbo_class(num_particles=P, vectorize_particles=True, max_plate_nesting=1 if variant == "padded" else 0)
    loss = elbo.loss(model, traced, x)
    weights = [sequential_log_weight(model, guide, x, particle_latents(traced.trace, variant, p))[0]
               for p in range(P)]
    assert abs(loss + sum(weights) / P) < 1e-8


def test_vectorised_svi_step_trains_the_network():
    x, model = data(seed=3), mixture("padded")
    guide = GFNCPGuide(model, NET, generator=3)
    before = [p.detach().clone() for p in guide.network.parameters()]
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    assert math.isfinite(svi.step(x))
    assert all(not torch.equal(b, p) for b, p in zip(before, guide.network.parameters()))
    # the gradient itself: finite, non-zero, and what teacher forcing gives for the same draws
    traced = poutine.trace(guide)
    loss = elbo.differentiable_loss(model, traced, x)
    grads = torch.autograd.grad(loss, list(guide.network.parameters()), allow_unused=True)
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_lazy_log_q_has_the_teacher_forced_gradient():
    """The guide's log q(c | x) comes from the decoding pass; its gradient (computed only in
    the backward pass) is the one of a teacher-forced pass."""
    x = data(seed=4)
    guide = GFNCPGuide(mixture("collapsed"), NET, generator=4)
    trace = poutine.trace(guide).get_trace(x)
    c = trace.nodes["c"]["value"]
    params = list(guide.network.parameters())
    lazy = torch.autograd.grad(trace.nodes["c"]["fn"].log_prob(c), params)
    direct = torch.autograd.grad(policy.log_prob(guide.network, x[None], c[None])[0], params)
    for a, b in zip(lazy, direct):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert sum(float(g.abs().sum()) for g in lazy) > 0


def test_no_grad_calls_leave_the_param_store_empty():
    x = data(seed=5)
    guide = GFNCPGuide(mixture(), NET, generator=5)
    with torch.no_grad():
        Importance(mixture(), guide, num_samples=5).run(x)
    assert not list(pyro.get_param_store().keys())
    guide(x)  # autograd on: registered for SVI
    assert len(list(pyro.get_param_store().keys())) == len(list(NET.parameters()))


# ------------------------------------------------------------------------------- CSIS
def test_csis_with_observations_steps_and_runs():
    x = data(seed=6)
    model = mixture("dynamic")
    guide = GFNCPGuide(model, NET, generator=6)
    before = [p.detach().clone() for p in guide.network.parameters()]
    csis = CSIS(model, guide, pyro.optim.Adam({"lr": 1e-3}), num_inference_samples=20, training_batch_size=3)
    for _ in range(2):
        assert math.isfinite(csis.step(observations={"x": x}))
    assert any(not torch.equal(b, p) for b, p in zip(before, guide.network.parameters()))
    assert math.isfinite(csis.validation_loss(observations={"x": x}))
    posterior = csis.run(observations={"x": x})
    assert len(posterior.log_weights) == 20
    assert math.isfinite(float(posterior.get_log_normalizer()))
    c = EmpiricalMarginal(posterior, "c").sample((10,))
    assert c.shape == (10, 6) and bool(is_canonical(c).all())


# ------------------------------------------------------------------------- Predictive
@pytest.mark.parametrize("variant", ["padded", "collapsed"])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("replicate", [False, True])
def test_predictive_returns_the_documented_shapes(variant, parallel, replicate):
    """models.py's table: padded c (S, 1, N), mu (S, N, D), x (S, N, D); collapsed c (S, N),
    x (S, N, D). x is the observed set, or replicated data with ``replicate=True``."""
    x, model = data(seed=7), mixture(variant)
    guide = GFNCPGuide(model, NET, generator=7)
    pyro.set_rng_seed(7)
    s = 200
    samples = Predictive(model, guide=guide, num_samples=s, parallel=parallel)(x, replicate=replicate)
    expected = {"c": (s, 1, 6), "mu": (s, 6, 2), "x": (s, 6, 2)} if variant == "padded" else \
        {"c": (s, 6), "x": (s, 6, 2)}
    assert {k: tuple(v.shape) for k, v in samples.items()} == expected
    c = samples["c"].reshape(s, 6)
    assert bool(is_canonical(c).all())
    if not replicate:
        assert torch.equal(samples["x"], x.expand(s, 6, 2))
        return
    assert not bool((samples["x"] == x).any())
    if variant == "padded":  # replicated points scatter around their cluster's mean with sigma_x
        means = samples["mu"].gather(1, c.unsqueeze(-1).expand(s, 6, 2))
        assert abs(float((samples["x"] - means).std()) - 1.0) < 0.1
    else:  # points of one cluster share its mean: closer to each other than to other clusters
        same = c[:, :, None] == c[:, None, :]
        gaps = (samples["x"][:, :, None] - samples["x"][:, None, :]).pow(2).sum(-1)
        off_diagonal = ~torch.eye(6, dtype=torch.bool)
        assert float(gaps[same & off_diagonal].mean()) < float(gaps[~same].mean())


def test_predictive_prior_without_points_on_every_variant():
    for variant, shapes in [("padded", {"c": (30, 1, 5), "mu": (30, 5, 2), "x": (30, 5, 2)}),
                            ("collapsed", {"c": (30, 5), "x": (30, 5, 2)})]:
        samples = Predictive(mixture(variant), num_samples=30)(num_points=5)
        assert {k: tuple(v.shape) for k, v in samples.items()} == shapes
    samples = Predictive(mixture("dynamic"), num_samples=30, return_sites=("c", "x"))(num_points=5)
    assert samples["c"].shape == (30, 1, 5) and samples["x"].shape == (30, 5, 2)


def test_dynamic_variant_raises_one_clear_error_naming_padded():
    x, model = data(seed=8), mixture("dynamic")
    guide = GFNCPGuide(model, NET, generator=8)
    pyro.set_rng_seed(8)
    for parallel in (False, True):
        with pytest.raises(ValueError, match="variant='padded'"):
            Predictive(model, guide=guide, num_samples=50, parallel=parallel)(x)
    with pytest.raises(ValueError, match="variant='padded'"):
        Predictive(model, num_samples=50)(num_points=6)
    posterior = Importance(model, guide, num_samples=50).run(x)
    with pytest.raises(ValueError, match="variant='padded'"):
        EmpiricalMarginal(posterior, "mu")
    # the means are plain tensors otherwise; equal shapes still stack
    mu = poutine.trace(guide).get_trace(x).nodes["mu"]["value"]
    assert isinstance(mu, DynamicMeans)
    assert type(mu + 1) is torch.Tensor and type(mu[0]) is torch.Tensor
    assert torch.stack([mu, mu]).shape == (2,) + mu.shape


# --------------------------------------------------------------------- model-spec check
@pytest.mark.parametrize("change", [{"alpha": 2.0}, {"sigma_mu": 10.0}, {"sigma_x": 0.5}])
def test_the_guide_refuses_a_model_with_other_hyper_parameters(shipped, change):
    network, trained, config = shipped
    other = CRPMixture(**{"alpha": trained.alpha, "sigma_mu": trained.sigma_mu, "sigma_x": trained.sigma_x,
                          "dim": trained.dim, **change})
    (name, wanted), = change.items()
    with pytest.raises(ModelMismatchError) as caught:
        GFNCPGuide(other, network)
    message = str(caught.value)
    assert f"{name} {getattr(trained, name)} vs {wanted}" in message
    assert "force=True" in message and "load_pretrained" in message
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ModelMismatchError, match=name):
        GFNCPGuide.from_pretrained("mog2d-small", model=other)
    with pytest.warns(UserWarning, match=f"{name} {getattr(trained, name)} vs {wanted}"):
        guide = GFNCPGuide(other, network, force=True)
    assert guide(data(seed=9, dtype=torch.float32))["c"].shape == (6,)


def test_the_guide_accepts_the_training_model_in_every_variant(shipped):
    network, trained, config = shipped
    assert (trained.alpha, trained.sigma_mu, trained.sigma_x, trained.dim) == \
        (config.model.alpha, config.model.sigma_mu, config.model.sigma_x, config.dim)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for variant in ("dynamic", "padded", "collapsed"):
            GFNCPGuide(trained.with_variant(variant), network)
        assert GFNCPGuide.from_pretrained("mog2d-small", variant="padded").model.variant == "padded"


# -------------------------------------------------------------------------- ESS warning
def test_low_ess_warns_unless_told_not_to():
    """An untrained network proposing partitions of tight, far-apart clusters: the posterior
    sits on one partition, the proposal almost never draws it."""
    model = mixture("collapsed", sigma_mu=30.0, sigma_x=0.05)
    x = data(n=8, seed=10, sigma_mu=30.0, sigma_x=0.05)
    guide = GFNCPGuide(model, NET, generator=10)
    with pytest.warns(LowESSWarning, match=r"under 5% of the 200 samples") as caught:
        result = importance(model, guide, x, 200, generator=0)
    assert float(result.ess) < 0.05 * 200
    assert "gfncp_pyro.infer.fit" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = importance(model, guide, x, 200, generator=0, warn=False)
    torch.testing.assert_close(quiet.log_weights, result.log_weights)


def test_high_ess_does_not_warn(shipped):
    network, model, _ = shipped
    x = model.sample_batch(torch.tensor([4]), generator=torch.Generator().manual_seed(0)).x[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = importance(model, GFNCPGuide(model, network), x, 200, generator=0)
    assert float(result.ess) >= 0.05 * 200


# ------------------------------------------------------------------------ CRP precision
def test_crp_log_prob_keeps_float64_with_a_python_float_alpha():
    alpha, n = 1e4, 20
    labels = torch.tensor([[0] * 5 + [1] * 5 + list(range(2, 12)), list(range(20))])

    def ewens(row):
        sizes = torch.bincount(row).tolist()
        return len(sizes) * math.log(alpha) + math.lgamma(alpha) - math.lgamma(alpha + n) + \
            sum(math.lgamma(s) for s in sizes)

    exact = torch.tensor([ewens(row) for row in labels], dtype=torch.float64)
    log_prob = ChineseRestaurantProcess(alpha, n).log_prob(labels)
    assert log_prob.dtype == torch.float64
    torch.testing.assert_close(log_prob, exact, rtol=0, atol=1e-9)
    # a float32 alpha gives float32 results rounded from float64 work, not float32 cancellation
    # (lgamma(1e4) ~ 8e4 has a float32 spacing of ~8e-3)
    single = ChineseRestaurantProcess(torch.tensor(alpha), n).log_prob(labels)
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), exact, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------- benchmark script
def test_benchmark_script_smoke_run_records_nothing():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    result = root / "benchmarks" / "results" / "pyro_guide.md"
    before = result.read_bytes() if result.exists() else None
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-W", "error", str(root / "benchmarks" / "bench_pyro_guide.py"), "--smoke"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (result.read_bytes() if result.exists() else None) == before, "the smoke run changed the results file"
    lines = done.stdout.splitlines()
    assert lines[0] == "SMOKE RUN (tiny sizes), nothing recorded" and not any("appended to" in text for text in lines)
    for name in ("gfncp_pyro.infer.importance", "pyro.infer.Importance, autograd on",
                 "pyro.infer.Importance, torch.no_grad()"):
        line = next(text for text in lines if text.strip().startswith(name + ":"))
        assert abs(float(line.split("(error ")[1].split()[0])) < 1.0, line
    assert any(text.startswith("one guide call inside a Pyro trace") for text in lines)
    assert any("64 vectorised particles" in text for text in lines)

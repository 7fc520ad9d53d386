"""AmortizedPartition: q(c | x) as a Pyro distribution, against enumeration and slow loops."""

import pyro
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import reference as ref
from gfncp_pyro import policy
from gfncp_pyro.distributions import AmortizedPartition, canonical_partition
from gfncp_pyro.partitions import enumerate_partitions, is_canonical

NET64 = ref.make_net(0, torch.float64)
NET32 = ref.make_net(0, torch.float32)


def points(n, seed=0, dtype=torch.float64, batch=()):
    gen = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(batch + (n, 2), generator=gen, dtype=dtype)


@pytest.mark.parametrize("n", range(1, 8))
@pytest.mark.parametrize("order_kind", ["identity", "given", "random"])
def test_log_prob_of_all_partitions_sums_to_one(n, order_kind):
    x = points(n, seed=n)
    if order_kind == "given":
        d = AmortizedPartition(NET64, x, torch.arange(n).flip(0))
    else:
        d = AmortizedPartition(NET64, x, random_order=order_kind == "random", generator=n)
    log_q = d.log_prob(enumerate_partitions(n))
    assert log_q.shape == (len(enumerate_partitions(n)),)
    assert abs(torch.logsumexp(log_q, 0).item()) < 1e-9


@given(
    labels=st.integers(1, 5).flatmap(lambda n: st.lists(st.integers(0, 3), min_size=n, max_size=n)),
    data=st.data(),
)
def test_log_prob_matches_the_slow_reference(labels, data):
    n = len(labels)
    labels = ref.actions_along(labels, range(n))
    order = data.draw(st.permutations(list(range(n))))
    x = points(n, seed=data.draw(st.integers(0, 1000)))
    d = AmortizedPartition(NET64, x, torch.tensor(order))
    actions, rows = ref.step_energies(NET64, x, labels, order)
    expected = ref.log_prob(actions, rows)
    assert abs(d.log_prob(torch.tensor(labels)).item() - expected) < 1e-9


def test_sampled_log_prob_is_the_teacher_forced_one():
    x = points(7, seed=3)
    d = AmortizedPartition(NET64, x, random_order=True, generator=5)
    samples = d.sample((64,))
    with torch.no_grad():
        from_sampling = d.log_prob(samples)  # reused from the decoding pass
    recomputed = d.log_prob(samples.clone())  # teacher-forced
    assert recomputed.requires_grad and not from_sampling.requires_grad
    assert torch.allclose(from_sampling, recomputed.detach(), atol=1e-9, rtol=0)
    with_grad = d.log_prob(samples)  # grad needed: the cache must not be used
    assert with_grad.requires_grad


def test_gradients_reach_the_network():
    x = points(6, seed=1)
    d = AmortizedPartition(NET64, x)
    NET64.zero_grad()
    d.log_prob(d.sample((5,))).sum().backward()
    grads = [p.grad for p in NET64.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    NET64.zero_grad()


@pytest.mark.parametrize("random_order", [False, True])
def test_samples_pass_a_chi_square_test(random_order):
    n, num = 4, 6000
    x = points(n, seed=11)
    d = AmortizedPartition(NET64, x, random_order=random_order, generator=7)
    support = enumerate_partitions(n)
    expected = num * d.log_prob(support).detach().exp()
    samples = d.sample((num,))
    assert bool(is_canonical(samples).all())
    match = (samples.unsqueeze(1) == support.unsqueeze(0)).all(-1)
    assert bool((match.sum(1) == 1).all())
    observed = match.sum(0).double()
    small = expected < 5  # pool rare partitions into one bin
    f_obs = torch.cat([observed[~small], observed[small].sum().reshape(1)])
    f_exp = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    result = stats.chisquare(f_obs.numpy(), f_exp.numpy())
    assert result.pvalue > 1e-3
    wrong = torch.cat([f_exp[1:], f_exp[:1]])  # the test has power: a permuted law fails
    assert stats.chisquare(f_obs.numpy(), (wrong * f_obs.sum() / wrong.sum()).numpy()).pvalue < 1e-6


def test_random_order_is_drawn_once_and_used_by_log_prob():
    x = points(6, seed=2)
    d = AmortizedPartition(NET64, x, random_order=True, generator=torch.Generator().manual_seed(4))
    order = d.order.clone()
    assert sorted(order.tolist()) == list(range(6)) and order.tolist() != list(range(6))
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    expected = policy.log_prob(NET64, x[None], labels[None], orders=order[None])[0]
    for _ in range(2):
        d.sample((3,))
        assert torch.equal(d.order, order)
        assert abs(d.log_prob(labels).item() - expected.item()) < 1e-12
    other = AmortizedPartition(NET64, x, random_order=True, generator=9)
    assert not torch.equal(other.order, order)


def test_batched_sets_and_orders():
    x = points(5, seed=4, batch=(3,))
    orders = torch.stack([torch.randperm(5, generator=torch.Generator().manual_seed(s)) for s in range(3)])
    d = AmortizedPartition(NET64, x, orders, generator=1)
    assert d.batch_shape == (3,) and d.event_shape == (5,)
    samples = d.sample((4,))
    assert samples.shape == (4, 3, 5)
    log_q = d.log_prob(samples)
    assert log_q.shape == (4, 3)
    for b in range(3):
        single = AmortizedPartition(NET64, x[b], orders[b])
        assert torch.allclose(log_q[:, b], single.log_prob(samples[:, b]), atol=1e-9, rtol=0)
    one = torch.tensor([0, 0, 1, 1, 2])
    assert d.log_prob(one).shape == (3,)


def test_expand_and_pyro_plate():
    x = points(4, seed=5)
    d = AmortizedPartition(NET64, x, random_order=True, generator=3)
    wide = d.expand((2,))
    assert wide.batch_shape == (2,) and torch.equal(wide.order[1], d.order)
    assert wide.sample((3,)).shape == (3, 2, 4)
    assert wide.sample((0,)).shape == (0, 2, 4)

    def model():
        with pyro.plate("sets", 2):
            return pyro.sample("c", AmortizedPartition(NET64, x, generator=0))

    trace = pyro.poutine.trace(model).get_trace()
    trace.compute_log_prob()
    assert trace.nodes["c"]["value"].shape == (2, 4)
    assert trace.nodes["c"]["log_prob"].shape == (2,)


def test_float32_follows_the_network():
    x = points(6, seed=6, dtype=torch.float32)
    d = AmortizedPartition(NET32, x, generator=0)
    samples = d.sample((10,))
    assert samples.dtype == torch.long
    assert d.log_prob(samples).dtype == torch.float32
    assert abs(torch.logsumexp(d.log_prob(enumerate_partitions(6)), 0).item()) < 1e-5


def test_distribution_interface():
    d = AmortizedPartition(NET64, points(3))
    assert d.has_rsample is False and d.has_enumerate_support is False
    assert d.arg_constraints == {} and d.support is canonical_partition
    assert d.event_shape == (3,) and d.batch_shape == ()
    assert bool(d.support.check(d.sample((20,))).all())
    with pytest.raises(NotImplementedError):
        d.rsample()


def test_non_canonical_labels_are_caught():
    d = AmortizedPartition(NET64, points(3))
    with pytest.raises(ValueError, match="canonical"):
        d.log_prob(torch.tensor([1, 0, 0]))
    with pytest.raises(ValueError, match="canonical"):
        d.log_prob(torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        d.log_prob(torch.tensor([0, 0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=torch.zeros(3, 5, dtype=torch.float64)), "point"),
        (dict(x=torch.zeros(3, 2, dtype=torch.float32)), "dtype|float"),
        (dict(x=torch.zeros(0, 2, dtype=torch.float64)), "N >= 1"),
        (dict(order=torch.tensor([0, 0, 1])), "permutation"),
        (dict(order=torch.tensor([0, 1])), "order"),
        (dict(order=torch.tensor([0.0, 1.0, 2.0])), "integer"),
        (dict(order=torch.arange(3), random_order=True), "not both"),
        (dict(generator="seed"), "generator"),
        (dict(network=torch.nn.Linear(2, 2)), "EnergyNet"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(network=NET64, x=torch.zeros(3, 2, dtype=torch.float64))
    args.update(kwargs)
    network, x = args.pop("network"), args.pop("x")
    with pytest.raises(ValueError, match=match):
        AmortizedPartition(network, x, **args)


def test_repr_and_num_points():
    d = AmortizedPartition(NET64, points(4, batch=(2,)))
    assert d.num_points == 4
    assert "num_points: 4" in repr(d) and "(2,)" in repr(d)
    assert bool(torch.isfinite(d.log_prob(torch.zeros(4, dtype=torch.long))).all())


def test_pyro_provenance_keeps_gradients_and_is_passed_on():
    """TraceGraph_ELBO scores values wrapped in ProvenanceTensor; gradients must still flow."""
    from pyro.ops.provenance import detach_provenance, get_provenance, track_provenance

    d = AmortizedPartition(NET64, points(5, seed=8))
    labels = d.sample((3,))
    log_q = d.log_prob(track_provenance(labels, frozenset({"c"})))
    assert get_provenance(log_q) == frozenset({"c"})
    grads = torch.autograd.grad(detach_provenance(log_q).sum(), list(NET64.parameters()), allow_unused=True)
    assert all(g is not None for g in grads)
    assert torch.allclose(detach_provenance(log_q), d.log_prob(labels.clone()), atol=1e-12)

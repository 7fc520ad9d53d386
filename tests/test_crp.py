"""The Chinese Restaurant Process distribution against independent slow computations."""

import math
from collections import Counter

import pyro
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pyro import poutine
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from scipy.stats import chisquare

from gfncp_pyro.distributions import (
    ChineseRestaurantProcess,
    canonical_partition,
    sample_crp_labels,
)
from gfncp_pyro.distributions.crp import _pointer_roots
from gfncp_pyro.partitions import (
    PAD_LABEL,
    bell_number,
    canonicalize,
    enumerate_partitions,
    is_canonical,
)

GOF_THRESHOLD = 1e-3  # seeds are fixed; a wrong sampler gives p-values near 0 (see the control)


def sequential_log_prob(labels, alpha):
    """log p(c) as the product of the CRP's sequential conditionals, one customer at a time."""
    sizes = Counter()
    total = 0.0
    for i, label in enumerate(labels):
        if label not in sizes:
            total += math.log(alpha / (alpha + i))
        else:
            total += math.log(sizes[label] / (alpha + i))
        sizes[label] += 1
    return total


def counts_by_partition(samples, n):
    """Counts of each enumerated partition (in enumeration order) among the sample rows."""
    index = {tuple(row): k for k, row in enumerate(enumerate_partitions(n).tolist())}
    counts = torch.zeros(len(index), dtype=torch.long)
    rows, row_counts = torch.unique(samples, dim=0, return_counts=True)
    for row, count in zip(rows.tolist(), row_counts.tolist()):
        counts[index[tuple(row)]] += count  # KeyError if a sample is not a canonical partition
    return counts


def gof_pvalue(probs, counts):
    """Chi-square p-value of ``counts`` under ``probs``: the smaller of Pyro's and SciPy's.

    Pyro 1.9.2's ``chi2sf`` loses all precision for large statistics (it returns 1.0 for
    chi^2 = 500 with 51 degrees of freedom), so on its own a grossly wrong sampler would pass;
    SciPy's Pearson test covers that range.
    """
    expected = probs * counts.sum()
    scipy_p = chisquare(counts.double().numpy(), expected.numpy()).pvalue
    return min(multinomial_goodness_of_fit(probs, counts), float(scipy_p))


def enumeration_probs(alpha, n):
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n)
    return crp.log_prob(enumerate_partitions(n)).exp()


def stirling_first_kind(n):
    """Unsigned Stirling numbers of the first kind |s(n, k)|, k = 0..n, as exact integers."""
    row = [1]
    for m in range(n):
        padded = row + [0]
        row = [m * padded[k] + (padded[k - 1] if k >= 1 else 0) for k in range(m + 2)]
    return row


# ------------------------------------------------------------------------------- log_prob
@pytest.mark.parametrize("n", range(1, 9))
@pytest.mark.parametrize("alpha", [0.3, 1.0, 6.0])
def test_log_prob_sums_to_one_over_the_support(n, alpha):
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n)
    support = crp.enumerate_support()
    assert support.shape == (bell_number(n), n)
    assert abs(torch.logsumexp(crp.log_prob(support), 0).item()) < 1e-9


@pytest.mark.parametrize("alpha", [0.3, 2.0])
def test_log_prob_equals_sequential_conditionals_on_every_partition(alpha):
    labels = enumerate_partitions(6)
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), 6)
    expected = [sequential_log_prob(row, alpha) for row in labels.tolist()]
    expected = torch.tensor(expected, dtype=torch.float64)
    assert torch.allclose(crp.log_prob(labels), expected, atol=1e-9, rtol=0)


@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=40),
    st.floats(0.05, 50.0),
)
def test_log_prob_equals_sequential_conditionals_on_random_partitions(raw, alpha):
    labels = canonicalize(torch.tensor(raw))
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), len(raw))
    assert abs(crp.log_prob(labels).item() - sequential_log_prob(labels.tolist(), alpha)) < 1e-9


@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=30).flatmap(
        lambda raw: st.tuples(st.just(raw), st.permutations(range(len(raw))))
    ),
    st.floats(0.1, 20.0),
)
def test_log_prob_is_exchangeable(raw_and_perm, alpha):
    raw, perm = raw_and_perm
    labels = canonicalize(torch.tensor(raw))
    permuted = canonicalize(labels[torch.tensor(perm)])
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), len(raw))
    assert abs(crp.log_prob(permuted).item() - crp.log_prob(labels).item()) < 1e-10


def test_log_prob_follows_the_dtype_and_has_the_right_gradient():
    labels = enumerate_partitions(5)
    lp32 = ChineseRestaurantProcess(torch.tensor(1.7), 5).log_prob(labels)
    lp64 = ChineseRestaurantProcess(torch.tensor(1.7, dtype=torch.float64), 5).log_prob(labels)
    assert lp32.dtype == torch.float32 and lp64.dtype == torch.float64
    assert torch.allclose(lp32.double(), lp64, atol=1e-5, rtol=0)
    alpha = torch.tensor([0.4, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a: ChineseRestaurantProcess(a, 5).log_prob(labels.unsqueeze(1)), (alpha,)
    )


# --------------------------------------------------------------------------------- samples
@pytest.mark.parametrize("n", [4, 5])
@pytest.mark.parametrize("alpha", [0.5, 2.5])
def test_sample_fits_log_prob(n, alpha):
    pyro.set_rng_seed(n)
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n)
    samples = crp.sample((20_000,))
    counts = counts_by_partition(samples, n)
    assert gof_pvalue(enumeration_probs(alpha, n), counts) > GOF_THRESHOLD


def test_goodness_of_fit_rejects_a_wrong_alpha():
    """Control: the chi-square test above has power against a nearby wrong distribution."""
    pyro.set_rng_seed(0)
    samples = ChineseRestaurantProcess(torch.tensor(0.5), 5).sample((20_000,))
    assert gof_pvalue(enumeration_probs(0.7, 5), counts_by_partition(samples, 5)) < 1e-6


def test_sample_crp_labels_fits_log_prob_on_a_mixed_batch():
    lengths_alphas = [(4, 0.5), (1, 1.0), (5, 3.0), (3, 1.2), (0, 2.0), (5, 0.8)]
    reps = 12_000
    lengths = torch.tensor([n for n, _ in lengths_alphas]).repeat(reps)
    alpha = torch.tensor([a for _, a in lengths_alphas], dtype=torch.float64).repeat(reps)
    labels = sample_crp_labels(alpha, lengths, generator=torch.Generator().manual_seed(0))
    assert labels.shape == (len(lengths), 5) and labels.dtype == torch.long
    position = torch.arange(5)
    assert torch.equal(labels == PAD_LABEL, position >= lengths.unsqueeze(-1))
    for group, (n, a) in enumerate(lengths_alphas):
        if n == 0:
            continue
        rows = labels[group :: len(lengths_alphas), :n]
        assert gof_pvalue(enumeration_probs(a, n), counts_by_partition(rows, n)) > GOF_THRESHOLD


@given(
    st.lists(st.integers(0, 70), min_size=1, max_size=6),
    st.floats(0.01, 100.0),
    st.integers(0, 2**31 - 1),
    st.sampled_from([torch.float32, torch.float64]),
)
def test_sample_crp_labels_gives_padded_canonical_labels(lengths, alpha, seed, dtype):
    lengths = torch.tensor(lengths)
    alpha = torch.full(lengths.shape, alpha, dtype=dtype)
    labels = sample_crp_labels(alpha, lengths, generator=torch.Generator().manual_seed(seed))
    mask = torch.arange(labels.shape[-1]) < lengths.unsqueeze(-1)
    assert labels.shape == (len(lengths), int(lengths.max()))
    assert bool(is_canonical(labels, mask).all())
    assert bool((labels[~mask] == PAD_LABEL).all())


def follow_pointers(pointer):
    roots = []
    for i in range(len(pointer)):
        while pointer[i] != i:
            i = pointer[i]
        roots.append(i)
    return roots


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 9, 17, 33])
def test_pointer_jumping_reaches_the_root_of_the_longest_chain(n):
    chain = (torch.arange(n) - 1).clamp(min=0).unsqueeze(0)  # i -> i - 1: N - 1 links
    assert _pointer_roots(chain).tolist() == [[0] * n]


@given(st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_pointer_jumping_matches_following_pointers(n, seed):
    gen = torch.Generator().manual_seed(seed)
    position = torch.arange(n)
    earlier = torch.floor(torch.rand(3, n, generator=gen, dtype=torch.float64) * position).long()
    pointer = torch.where(torch.rand(3, n, generator=gen) < 0.2, position, earlier)
    pointer[:, 0] = 0
    assert _pointer_roots(pointer).tolist() == [follow_pointers(row) for row in pointer.tolist()]


def test_randomness_comes_from_the_generator_or_pyros_seed():
    alpha, lengths = torch.tensor(1.5), torch.tensor([30, 20, 30])
    draws = [sample_crp_labels(alpha, lengths, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*draws)
    crp = ChineseRestaurantProcess(torch.tensor([1.0, 4.0]), 40)
    assert torch.equal(
        crp.sample((3,), generator=torch.Generator().manual_seed(3)),
        crp.sample((3,), generator=torch.Generator().manual_seed(3)),
    )
    pyro.set_rng_seed(11)
    first = crp.sample((3,))
    pyro.set_rng_seed(11)
    assert torch.equal(first, crp.sample((3,)))


# ------------------------------------------------------------------- number of clusters K
@pytest.mark.parametrize("alpha", [0.3, 1.0, 6.0])
def test_expected_num_clusters(alpha):
    n_values = list(range(1, 9))
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), 8)
    closed_form = sum(alpha / (alpha + i) for i in range(8))
    assert abs(crp.expected_num_clusters.item() - closed_form) < 1e-12
    for n in n_values:
        labels = enumerate_partitions(n)
        k = (labels.max(-1).values + 1).double()
        exact = (enumeration_probs(alpha, n) * k).sum().item()
        crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n)
        assert abs(crp.expected_num_clusters.item() - exact) < 1e-9


def test_expected_num_clusters_matches_monte_carlo():
    alpha, n, m = 2.0, 50, 4000
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n)
    samples = crp.sample((m,), generator=torch.Generator().manual_seed(5))
    k = (samples.max(-1).values + 1).double()
    # K is a sum of independent Bernoulli(alpha / (alpha + i)): its exact variance.
    variance = sum(alpha / (alpha + i) * i / (alpha + i) for i in range(n))
    assert abs(k.mean().item() - crp.expected_num_clusters.item()) < 4 * math.sqrt(variance / m)
    assert abs(k.var().item() / variance - 1) < 0.15


@pytest.mark.parametrize("n", [1, 4, 8])
@pytest.mark.parametrize("alpha", [0.3, 6.0])
def test_num_clusters_log_prob_matches_enumeration(n, alpha):
    labels = enumerate_partitions(n)
    k = labels.max(-1).values + 1
    probs = enumeration_probs(alpha, n)
    exact = torch.zeros(n + 2, dtype=torch.float64).index_add_(0, k, probs)
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n)
    got = crp.num_clusters_log_prob(torch.arange(n + 2)).exp()
    assert torch.allclose(got, exact, atol=1e-12, rtol=0)


def test_num_clusters_log_prob_matches_exact_stirling_numbers():
    n, alpha = 30, 1.7
    stirling = stirling_first_kind(n)
    rising = math.lgamma(alpha + n) - math.lgamma(alpha)
    expected = [math.log(stirling[k]) + k * math.log(alpha) - rising for k in range(1, n + 1)]
    crp = ChineseRestaurantProcess(torch.tensor([[alpha]], dtype=torch.float64), n)
    got = crp.num_clusters_log_prob(torch.arange(1, n + 1))
    assert got.shape == (1, n)
    assert torch.allclose(got[0], torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=0)
    big = ChineseRestaurantProcess(torch.tensor([0.5, 6.0], dtype=torch.float64), 300)
    total = torch.logsumexp(big.num_clusters_log_prob(torch.arange(302).unsqueeze(-1)), 0)
    assert torch.allclose(total, torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0)
    assert big.num_clusters_log_prob(0).isneginf().all()
    assert big.num_clusters_log_prob(301).isneginf().all()


# ------------------------------------------------------------------------- shapes and Pyro
def test_batch_shapes():
    alpha = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64)
    crp = ChineseRestaurantProcess(alpha, 4)
    assert crp.batch_shape == (3,) and crp.event_shape == (4,)
    assert crp.support is canonical_partition and crp.support.event_dim == 1
    samples = crp.sample((5,))
    assert samples.shape == (5, 3, 4) and crp.log_prob(samples).shape == (5, 3)
    assert crp.sample().shape == (3, 4) and crp.sample((0,)).shape == (0, 3, 4)
    assert crp.log_prob(torch.tensor([0, 1, 0, 2])).shape == (3,)
    assert crp.log_prob(enumerate_partitions(4)[:7].unsqueeze(1)).shape == (7, 3)
    expanded = crp.expand((2, 3))
    assert expanded.batch_shape == (2, 3) and expanded.sample((6,)).shape == (6, 2, 3, 4)
    assert torch.equal(expanded.expected_num_clusters, crp.expected_num_clusters.expand(2, 3))
    full, compact = crp.enumerate_support(), crp.enumerate_support(expand=False)
    assert full.shape == (15, 3, 4) and compact.shape == (15, 1, 4)
    log_probs = crp.log_prob(compact)
    assert log_probs.shape == (15, 3)
    assert torch.allclose(log_probs.exp().sum(0), torch.ones(3, dtype=torch.float64), atol=1e-12)
    for b, a in enumerate(alpha.tolist()):
        assert torch.allclose(log_probs[:, b].exp(), enumeration_probs(a, 4), atol=1e-12, rtol=0)


def test_pyro_trace_log_prob_sum():
    alpha = torch.tensor(1.3, dtype=torch.float64)

    def model():
        c = pyro.sample("c", ChineseRestaurantProcess(alpha, 6))
        with pyro.plate("sets", 4):
            batch = pyro.sample("batch", ChineseRestaurantProcess(alpha, 3))
        return c, batch

    trace = poutine.trace(model).get_trace()
    c, batch = trace.nodes["c"]["value"], trace.nodes["batch"]["value"]
    assert c.shape == (6,) and batch.shape == (4, 3)
    expected = sum(sequential_log_prob(row, 1.3) for row in [c.tolist()] + batch.tolist())
    assert abs(trace.log_prob_sum().item() - expected) < 1e-9


def test_pyro_parallel_enumeration():
    @pyro.infer.config_enumerate
    def model():
        return pyro.sample("c", ChineseRestaurantProcess(torch.tensor(0.8, dtype=torch.float64), 4))

    trace = poutine.trace(poutine.enum(model, first_available_dim=-1)).get_trace()
    trace.compute_log_prob()
    value, log_prob = trace.nodes["c"]["value"], trace.nodes["c"]["log_prob"]
    assert value.shape == (15, 4) and log_prob.shape == (15,)
    assert abs(torch.logsumexp(log_prob, 0).item()) < 1e-12


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("bad", [[1, 0, 0], [0, 2, 1], [0, 0, -1], [0.0, 0.5, 1.0]])
def test_non_canonical_values_raise(bad):
    crp = ChineseRestaurantProcess(torch.tensor(1.0), 3, validate_args=True)
    with pytest.raises(ValueError, match="canonical"):
        crp.log_prob(torch.tensor(bad))
    with pyro.validation_enabled(True), pytest.raises(ValueError, match="canonical"):
        ChineseRestaurantProcess(torch.tensor(1.0), 3).log_prob(torch.tensor(bad))


def test_validation_off_and_integral_floats():
    crp = ChineseRestaurantProcess(torch.tensor(1.0), 3, validate_args=False)
    assert torch.isfinite(crp.log_prob(torch.tensor([0, 2, 1])))  # meaningless, but no check
    checked = ChineseRestaurantProcess(torch.tensor(1.0), 3, validate_args=True)
    as_float = checked.log_prob(torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(as_float, checked.log_prob(torch.tensor([0, 1, 0])))
    assert not canonical_partition.check(torch.tensor([0.0, float("nan"), 1.0]))


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf"), [1.0, -2.0]])
def test_bad_alpha_raises(alpha):
    with pytest.raises(ValueError, match="alpha"):
        ChineseRestaurantProcess(torch.tensor(alpha), 4, validate_args=True)
    with pytest.raises(ValueError, match="alpha"):
        sample_crp_labels(torch.tensor(alpha), torch.tensor([3, 2]))


@pytest.mark.parametrize("num_points", [0, -3, 2.5, True, "4", None])
def test_bad_num_points_raises_even_without_validation(num_points):
    with pytest.raises(ValueError, match="num_points"):
        ChineseRestaurantProcess(torch.tensor(1.0), num_points, validate_args=False)


def test_other_bad_inputs_raise():
    crp = ChineseRestaurantProcess(torch.tensor([1.0, 2.0]), 4, validate_args=False)
    with pytest.raises(ValueError, match="value"):
        crp.log_prob(torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="alpha"):
        ChineseRestaurantProcess("1.0", 4)
    with pytest.raises(ValueError, match="n <= 12"):
        ChineseRestaurantProcess(torch.tensor(1.0), 13).enumerate_support()
    with pytest.raises(ValueError, match="lengths"):
        sample_crp_labels(torch.tensor(1.0), torch.tensor([3.0, 2.0]))
    with pytest.raises(ValueError, match="lengths"):
        sample_crp_labels(torch.tensor(1.0), torch.tensor([3, -1]))
    with pytest.raises(ValueError, match="broadcast"):
        sample_crp_labels(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3, 1]))
    with pytest.raises(ValueError, match="k must"):
        crp.num_clusters_log_prob(torch.tensor(1.5))

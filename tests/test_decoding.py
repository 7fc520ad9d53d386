"""Sequential decoding against a from-scratch reference of the policy (Eqs. 12-15, 21, 30)."""

import copy
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2

from gfncp_pyro import decoding, fused_decoding, policy
from gfncp_pyro.decoding import beam_search, greedy, sample
from gfncp_pyro.nn import EnergyNet, EnergyNetConfig
from gfncp_pyro.partitions import PAD_LABEL, bell_number, canonicalize, enumerate_partitions, is_canonical

SMALL = dict(h_dim=6, g_dim=10, hidden=12, encoder_layers=2, g_layers=2, f_layers=3)


def make_net(seed=0, dtype=torch.float64, online=False, sharpen=3.0, **config):
    """A small random network; scaling all weights by ``sharpen`` makes the policy peaked."""
    torch.manual_seed(seed)
    net = EnergyNet(EnergyNetConfig(online=online, **{**SMALL, **config}))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(sharpen)
    return net.to(dtype)


def points(n, seed, dtype=torch.float64, batch=None):
    gen = torch.Generator().manual_seed(seed)
    shape = (n, 2) if batch is None else (batch, n, 2)
    return torch.randn(shape, generator=gen, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Slow reference: the contract's energies recomputed from scratch with Python loops.
# ---------------------------------------------------------------------------------------------


def ref_step_energies(net, x, order, prefix):
    """E[t, k] for k = 0..K_t at step t = len(prefix), every sum formed from scratch."""
    t = len(prefix)
    h = [net.h(x[i]) for i in range(x.shape[0])]
    u = [net.u(x[i]) for i in range(x.shape[0])]
    num_open = max(prefix) + 1 if prefix else 0
    H = []
    for j in range(num_open):
        total = torch.zeros_like(h[0])
        for s in range(t):
            if prefix[s] == j:
                total = total + h[order[s]]
        H.append(total)
    U = torch.zeros_like(u[0])
    for s in range(t + 1, len(order)):
        U = U + u[order[s]]
    energies = []
    for k in range(num_open + 1):
        G = torch.zeros(net.config.g_dim, dtype=x.dtype)
        for j in range(num_open):
            G = G + (net.g(H[j] + h[order[t]]) if j == k else net.g(H[j]))
        if k == num_open:
            G = G + net.g(h[order[t]])
        energies.append(net.f(G, U))
    return torch.stack(energies)


def ref_log_prob(net, x, labels, order=None, temperature=1.0):
    """log q(c | x, rho) = sum_{t >= 1} log softmax(-E[t] / T)[a_t] with a = canon(labels[rho])."""
    n = x.shape[0]
    order = list(range(n)) if order is None else [int(i) for i in order]
    actions = canonicalize(torch.as_tensor(labels)[order]).tolist()
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for t in range(1, n):
            energies = ref_step_energies(net, x, order, actions[:t])
            total = total + torch.log_softmax(-energies.double() / temperature, 0)[actions[t]]
    return total


def ref_greedy(net, x, order=None):
    """The argmax path of the reference policy, as labels in the caller's order."""
    n = x.shape[0]
    order = list(range(n)) if order is None else [int(i) for i in order]
    actions = [0]
    with torch.no_grad():
        for t in range(1, n):
            actions.append(int(torch.argmin(ref_step_energies(net, x, order, actions))))
    labels = torch.empty(n, dtype=torch.long)
    labels[order] = torch.tensor(actions)
    return canonicalize(labels)


def ref_distribution(net, x, order=None, temperature=1.0):
    """All Bell(N) partitions (caller's order) with their reference log-probabilities."""
    labels = enumerate_partitions(x.shape[0])
    log_probs = torch.stack([ref_log_prob(net, x, row, order, temperature) for row in labels])
    return labels, log_probs


def pearson_p_value(probs, counts, min_expected=5.0):
    """Pearson's chi-square p-value; categories expected fewer than 5 times are pooled."""
    expected = probs * counts.sum()
    small = expected < min_expected
    observed = counts
    if bool(small.any()):
        expected = torch.cat([expected[~small], expected[small].sum().reshape(1)])
        observed = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    statistic = ((observed - expected) ** 2 / expected).sum().item()
    return chi2.sf(statistic, expected.numel() - 1)


def partition_index(labels, n):
    """Row index of each canonical label vector in ``enumerate_partitions(n)`` (lexicographic)."""
    table = {tuple(row): i for i, row in enumerate(enumerate_partitions(n).tolist())}
    return torch.tensor([table[tuple(row)] for row in labels.tolist()])


# ---------------------------------------------------------------------------------------------
# The reference itself
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 5])
def test_reference_policy_is_normalised(n):
    net = make_net(1)
    x = points(n, 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    _, log_probs = ref_distribution(net, x, order)
    assert abs(torch.logsumexp(log_probs, 0).item()) < 1e-12


# ---------------------------------------------------------------------------------------------
# Labels are canonical in the caller's order; log-probs equal the reference
# ---------------------------------------------------------------------------------------------


@given(
    seed=st.integers(0, 10_000),
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    shuffle=st.booleans(),
    online=st.booleans(),
)
def test_padded_batches_match_reference(seed, lengths, shuffle, online):
    net = make_net(seed % 7, online=online)
    gen = torch.Generator().manual_seed(seed)
    n_max = max(lengths)
    x = torch.randn(len(lengths), n_max, 2, generator=gen, dtype=torch.float64)
    mask = torch.arange(n_max) < torch.tensor(lengths).unsqueeze(-1)
    x = torch.where(mask.unsqueeze(-1), x, torch.zeros_like(x))
    orders = torch.arange(n_max).repeat(len(lengths), 1)
    if shuffle:
        for b, n in enumerate(lengths):
            orders[b, :n] = torch.randperm(n, generator=gen)
    labels, log_prob = sample(net, x, num_samples=3, mask=mask, orders=orders, generator=gen)
    best, best_log_prob = greedy(net, x, mask=mask, orders=orders)
    assert labels.shape == (len(lengths), 3, n_max) and log_prob.shape == (len(lengths), 3)
    assert best.shape == (len(lengths), n_max) and best_log_prob.shape == (len(lengths),)
    assert bool(is_canonical(labels, mask.unsqueeze(1).expand_as(labels)).all())
    assert bool(is_canonical(best, mask).all())
    assert bool((labels[~mask.unsqueeze(1).expand_as(labels)] == PAD_LABEL).all())
    assert bool((best[~mask] == PAD_LABEL).all())
    for b, n in enumerate(lengths):
        order = orders[b, :n]
        for s in range(3):
            expected = ref_log_prob(net, x[b, :n], labels[b, s, :n], order)
            assert abs(log_prob[b, s].item() - expected.item()) < 1e-9
        assert torch.equal(best[b, :n], ref_greedy(net, x[b, :n], order))
        assert abs(best_log_prob[b].item() - ref_log_prob(net, x[b, :n], best[b, :n], order).item()) < 1e-9


@pytest.mark.parametrize("shuffle", [False, True])
def test_float32_log_prob_matches_float64_reference(shuffle):
    net32 = make_net(3, dtype=torch.float32, sharpen=2.0)
    net64 = copy.deepcopy(net32).double()
    n = 8
    x = points(n, 3, dtype=torch.float32)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(3)) if shuffle else None
    labels, log_prob = sample(net32, x, num_samples=4, orders=order, generator=3)
    best, best_log_prob = greedy(net32, x, orders=order)
    assert labels.dtype == torch.long and log_prob.dtype == torch.float32
    assert labels.shape == (4, n) and log_prob.shape == (4,)
    assert best.shape == (n,) and best_log_prob.shape == ()
    assert bool(is_canonical(labels).all()) and bool(is_canonical(best))
    for s in range(4):
        expected = ref_log_prob(net64, x.double(), labels[s], order)
        assert abs(log_prob[s].item() - expected.item()) < 1e-5
    assert abs(best_log_prob.item() - ref_log_prob(net64, x.double(), best, order).item()) < 1e-5
    assert torch.equal(best, ref_greedy(net64, x.double(), order))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
@pytest.mark.parametrize("online", [False, True])
def test_log_prob_matches_teacher_forcing(dtype, tol, online):
    """Samples of padded sets along random orders, re-scored by teacher forcing."""
    # float32 rounding errors scale with |E|: a milder net keeps the tolerance meaningful.
    net = make_net(15, dtype=dtype, online=online, sharpen=3.0 if dtype == torch.float64 else 2.0)
    gen = torch.Generator().manual_seed(15)
    lengths = torch.tensor([9, 4, 1, 7])
    n_max, num_samples = int(lengths.max()), 5
    mask = torch.arange(n_max) < lengths.unsqueeze(-1)
    x = torch.where(mask.unsqueeze(-1), torch.randn(4, n_max, 2, generator=gen, dtype=dtype), 0.0)
    orders = torch.stack(
        [torch.cat([torch.randperm(int(n), generator=gen), torch.arange(int(n), n_max)]) for n in lengths]
    )
    labels, log_prob = sample(net, x, num_samples, mask=mask, orders=orders, generator=gen)
    best, best_log_prob = greedy(net, x, mask=mask, orders=orders)

    def rescore(batch_labels, repeats):
        """Teacher-forced log-probabilities and the tolerance they deserve: rounding errors of a
        log-probability grow with the energies' size and with the number of steps summed."""
        spread = lambda t: t.repeat_interleave(repeats, 0)  # noqa: E731
        steps = policy.teacher_force(net, spread(x), batch_labels, spread(mask), spread(orders))
        energies = steps.energies[steps.candidate_mask].abs().max().item()
        return policy.trajectory_log_prob(steps), tol * n_max * max(1.0, energies)

    teacher, scale = rescore(labels.reshape(-1, n_max), num_samples)
    assert (log_prob - teacher.reshape(4, num_samples)).abs().max().item() < scale
    teacher, scale = rescore(best, 1)
    assert (best_log_prob - teacher).abs().max().item() < scale


def test_tempered_log_prob_is_that_of_the_tempered_policy():
    net = make_net(4)
    x = points(6, 4)
    labels, log_prob = sample(net, x, num_samples=5, temperature=2.5, generator=4)
    for s in range(5):
        expected = ref_log_prob(net, x, labels[s], temperature=2.5)
        assert abs(log_prob[s].item() - expected.item()) < 1e-9
        assert abs(log_prob[s].item() - ref_log_prob(net, x, labels[s]).item()) > 1e-6


def test_state_growth_and_lazy_width_sync(monkeypatch):
    """Tiny initial capacity (forces growth) and accelerator-style lazy syncs change nothing."""
    net = make_net(5, sharpen=4.0)
    x = points(24, 5, batch=2)
    reference = sample(net, x, num_samples=3, generator=5)
    monkeypatch.setattr(decoding, "_INITIAL_CAPACITY", 1)
    monkeypatch.setattr(decoding, "FUSED", False)  # the lazy syncs live in the plain path's state
    init = decoding._ClusterState.__init__

    def lazy_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._sync_every_step = False

    monkeypatch.setattr(decoding._ClusterState, "__init__", lazy_init)
    grown = sample(net, x, num_samples=3, generator=5)
    assert torch.equal(grown[0], reference[0])
    assert torch.allclose(grown[1], reference[1], atol=1e-12, rtol=0)
    assert int(reference[0].max()) + 1 >= 3  # several clusters, so the state really grew
    for s in range(3):
        assert abs(grown[1][0, s].item() - ref_log_prob(net, x[0], grown[0][0, s]).item()) < 1e-9


def test_conv_encoder_images():
    net = make_net(6, encoder="conv", sharpen=1.0)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    best, best_log_prob = greedy(net, x)
    assert torch.equal(best, ref_greedy(net, x))
    assert abs(best_log_prob.item() - ref_log_prob(net, x, best).item()) < 1e-9


def test_samples_of_one_set_share_one_encoding(monkeypatch):
    net = make_net(7)
    calls = []
    encode = net.encode

    def counting_encode(x):
        calls.append(tuple(x.shape))
        return encode(x)

    monkeypatch.setattr(net, "encode", counting_encode)
    sample(net, points(5, 7, batch=2), num_samples=50, generator=7)
    assert calls == [(2, 5, 2)]


def test_seeded_sampling_is_reproducible_and_greedy_deterministic():
    net = make_net(8)
    x = points(10, 8)
    a = sample(net, x, num_samples=6, generator=torch.Generator().manual_seed(1))
    b = sample(net, x, num_samples=6, generator=1)
    c = sample(net, x, num_samples=6, generator=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert all(torch.equal(greedy(net, x)[0], greedy(net, x)[0]) for _ in range(3))


def test_no_autograd_graph():
    net = make_net(9)
    x = points(5, 9).requires_grad_()
    for out in (*sample(net, x, generator=0), *greedy(net, x), *beam_search(net, x, beam_width=4)):
        assert not out.requires_grad


# ---------------------------------------------------------------------------------------------
# Sampled frequencies, greedy and beam search against enumeration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sample_frequencies_match_policy(temperature):
    n, num_samples = 5, 20_000
    net = make_net(10)
    x = points(n, 10)
    order = torch.tensor([3, 0, 4, 1, 2])
    labels, log_probs = ref_distribution(net, x, order, temperature)
    probs = log_probs.exp()
    assert abs(probs.sum().item() - 1) < 1e-12 and probs.max() > 3 / bell_number(n)
    drawn, drawn_log_prob = sample(net, x, num_samples, orders=order, temperature=temperature, generator=10)
    index = partition_index(drawn, n)
    counts = torch.bincount(index, minlength=labels.shape[0]).double()
    assert pearson_p_value(probs, counts) > 1e-3
    assert torch.allclose(drawn_log_prob, log_probs[index], atol=1e-9, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_beam_search_is_exact_with_a_wide_beam(n):
    net = make_net(20 + n)
    x = points(n, 20 + n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    labels, log_probs = ref_distribution(net, x, order)
    top_k = min(10, bell_number(n))
    expected, index = torch.sort(log_probs, descending=True)
    found, found_log_prob = beam_search(net, x, beam_width=bell_number(n), top_k=top_k, order=order)
    assert found.shape == (top_k, n)
    assert torch.equal(found, labels[index[:top_k]])
    assert torch.allclose(found_log_prob, expected[:top_k], atol=1e-9, rtol=0)
    assert torch.equal(greedy(net, x, orders=order)[0], ref_greedy(net, x, order))


def test_beam_search_all_partitions_and_narrow_beam():
    n = 5
    net = make_net(30)
    x = points(n, 30)
    every, every_log_prob = beam_search(net, x, beam_width=60)
    assert every.shape == (bell_number(n), n)  # fewer than the beam: all 52, each once
    assert len({tuple(row) for row in every.tolist()}) == bell_number(n)
    assert abs(torch.logsumexp(every_log_prob, 0).item()) < 1e-12
    narrow, narrow_log_prob = beam_search(net, x, beam_width=4, top_k=3)
    assert narrow.shape == (3, n) and bool(is_canonical(narrow).all())
    assert bool((narrow_log_prob[:-1] >= narrow_log_prob[1:]).all())
    assert len({tuple(row) for row in narrow.tolist()}) == 3
    for row, value in zip(narrow, narrow_log_prob):
        assert abs(value.item() - ref_log_prob(net, x, row).item()) < 1e-9


def test_single_point():
    net = make_net(11)
    x = points(1, 11)
    labels, log_prob = sample(net, x, num_samples=3, generator=0)
    assert labels.tolist() == [[0]] * 3 and log_prob.tolist() == [0.0] * 3
    best, best_log_prob = greedy(net, x)
    assert best.tolist() == [0] and best_log_prob.item() == 0.0
    found, found_log_prob = beam_search(net, x, beam_width=3)
    assert found.tolist() == [[0]] and found_log_prob.tolist() == [0.0]


def test_greedy_on_a_large_set():
    net = make_net(12, sharpen=1.0)
    x = points(3000, 12)
    labels, log_prob = greedy(net, x)
    assert labels.shape == (3000,) and bool(is_canonical(labels)) and math.isfinite(log_prob.item())


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda net, x: greedy(net, x[:0]), "N = 0"),
        (lambda net, x: greedy(net, x[:, :0]), "N = 0"),
        (lambda net, x: greedy(net, x.new_zeros(2, 4, 3)), "shape"),
        (lambda net, x: greedy(net, x.new_zeros(1, 2, 4, 2)), "shape"),
        (lambda net, x: greedy(net, torch.where(x > 1, math.nan, x)), "NaN"),
        (lambda net, x: greedy(net, torch.where(x > 1, math.inf, x)), "NaN or infinite"),
        (lambda net, x: greedy(net, x.float()), "dtype"),
        (lambda net, x: greedy(net, x.long()), "floating-point"),
        (lambda net, x: greedy(net, x, orders=torch.tensor([[0, 1, 1, 2]] * 2)), "permutation"),
        (lambda net, x: greedy(net, x, orders=torch.tensor([[0, 1, 2, 4]] * 2)), "permutation"),
        (lambda net, x: greedy(net, x, orders=torch.tensor([0, 1, 2, 3])), "orders has shape"),
        (lambda net, x: greedy(net, x, orders=torch.zeros(2, 4)), "integer"),
        (lambda net, x: greedy(net, x, mask=torch.tensor([[1, 0, 1, 1]] * 2).bool()), "prefix"),
        (lambda net, x: greedy(net, x, mask=torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]).bool()), "N = 0"),
        (lambda net, x: greedy(net, x, mask=torch.ones(2, 4)), "boolean"),
        (lambda net, x: greedy(net, x, mask=torch.ones(2, 3, dtype=torch.bool)), "mask has shape"),
        (lambda net, x: sample(net, x, num_samples=0), "num_samples"),
        (lambda net, x: sample(net, x, temperature=0.0), "temperature"),
        (lambda net, x: sample(net, x, temperature=math.inf), "temperature"),
        (lambda net, x: sample(net, x, generator="seed"), "generator"),
        (lambda net, x: beam_search(net, x, beam_width=2), "one set"),
        (lambda net, x: beam_search(net, x[0], beam_width=2, top_k=3), "top_k"),
        (lambda net, x: beam_search(net, x[0], beam_width=0), "beam_width"),
        (lambda net, x: beam_search(net, x[0], order=torch.tensor([1, 1, 0, 2])), "permutation"),
    ],
)
def test_bad_inputs(call, match):
    net = make_net(13)
    x = points(4, 13, batch=2)
    with pytest.raises(ValueError, match=match):
        call(net, x)


def test_padded_order_entries_are_ignored():
    net = make_net(14)
    x = points(4, 14, batch=2)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    orders = torch.tensor([[2, 0, 3, 1], [1, 0, 99, -5]])
    clean = torch.tensor([[2, 0, 3, 1], [1, 0, 2, 3]])
    decoded = greedy(net, x, mask=mask, orders=orders)[0]
    assert torch.equal(decoded, greedy(net, x, mask=mask, orders=clean)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_follows_device_and_matches_cpu():
    net = make_net(16)
    x = points(12, 16, batch=3)
    mask = torch.arange(12) < torch.tensor([[12], [7], [3]])
    cpu = sample(net, x, num_samples=4, mask=mask, generator=16)
    gpu = sample(net.cuda(), x.cuda(), num_samples=4, mask=mask.cuda(), generator=16)
    assert gpu[0].device.type == "cuda" and gpu[1].device.type == "cuda"
    assert torch.equal(gpu[0].cpu(), cpu[0])
    assert torch.allclose(gpu[1].cpu(), cpu[1], atol=1e-9, rtol=0)
    assert torch.equal(greedy(net, x.cuda(), mask=mask.cuda())[0].cpu(), greedy(net.cpu(), x, mask=mask)[0])


def test_precomputed_encodings_skip_encoding_and_change_nothing(monkeypatch):
    net = make_net(17)
    x = points(6, 17, batch=3)
    mask = torch.arange(6) < torch.tensor([[6], [4], [1]])
    encodings = policy.encode_points(net, x)
    expected = sample(net, x, num_samples=4, mask=mask, generator=17)
    expected_greedy = greedy(net, x, mask=mask)
    one_set = sample(net, x[0], num_samples=2, generator=18)
    monkeypatch.setattr(net, "encode", lambda _: pytest.fail("the points were encoded again"))
    got = sample(net, x, num_samples=4, mask=mask, generator=17, encodings=encodings)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    got = greedy(net, x, mask=mask, encodings=encodings)
    assert torch.equal(got[0], expected_greedy[0]) and torch.equal(got[1], expected_greedy[1])
    single = (encodings.h[0], encodings.u[0])  # encoded within the batch: rounding may differ
    got = sample(net, x[0], num_samples=2, generator=18, encodings=single)
    assert torch.equal(got[0], one_set[0])
    assert torch.allclose(got[1], one_set[1], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="encodings.h has shape"):
        sample(net, x, encodings=(encodings.h[:, :5], encodings.u))
    with pytest.raises(ValueError, match="encodings are"):
        greedy(net, x, encodings=(encodings.h.float(), encodings.u.float()))


# ---------------------------------------------------------------------------------------------
# The fused CPU path against the plain path: identical labels and log-probabilities
# ---------------------------------------------------------------------------------------------


def _both_paths(monkeypatch, call):
    monkeypatch.setattr(decoding, "FUSED", True)
    fused = call()
    monkeypatch.setattr(decoding, "FUSED", False)
    plain = call()
    monkeypatch.setattr(decoding, "FUSED", True)
    return fused, plain


def _assert_identical(fused, plain):
    assert torch.equal(fused[0], plain[0])
    assert fused[1].dtype == plain[1].dtype and torch.equal(fused[1], plain[1])  # bit for bit


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("config", [{}, dict(online=True), dict(sharpen=1.0)])
def test_fused_path_matches_plain_path(monkeypatch, dtype, config):
    """Padded batches of different lengths, several samples per set (so decodings differ in K
    and only the valid candidates are evaluated), a temperature, greedy: the same labels and
    bit-identical log-probabilities."""
    net = make_net(21, dtype=dtype, **config)
    x = points(30, 21, dtype=dtype, batch=3)
    mask = torch.arange(30) < torch.tensor([[30], [17], [2]])
    orders = torch.stack([torch.randperm(30, generator=torch.Generator().manual_seed(b)) for b in range(3)])
    orders = torch.where(mask, orders, torch.arange(30))
    orders[1, :17] = torch.randperm(17, generator=torch.Generator().manual_seed(5))
    orders[2, :2] = torch.tensor([1, 0])
    for call in (
        lambda: sample(net, x, num_samples=7, mask=mask, orders=orders, generator=3),
        lambda: sample(net, x, num_samples=5, mask=mask, temperature=0.6, generator=4),
        lambda: sample(net, x[0], num_samples=1, generator=5),
        lambda: sample(net, x[0], num_samples=1, temperature=0.6, generator=6),
        lambda: greedy(net, x, mask=mask, orders=orders),
        lambda: greedy(net, x[1]),
        # one decoding of a padded set (the host-side single-decoding loop), and of one point
        lambda: greedy(net, x[1:2], mask=mask[1:2], orders=orders[1:2]),
        lambda: sample(net, x[2:3], num_samples=1, mask=mask[2:3], generator=7),
        lambda: greedy(net, x[0, :1]),
    ):
        _assert_identical(*_both_paths(monkeypatch, call))


def test_fused_path_matches_plain_path_on_the_default_network(monkeypatch):
    """The default architecture in float32 (the benchmarked case), with state growth."""
    torch.manual_seed(7)
    net = EnergyNet(EnergyNetConfig())
    x = 4 * points(200, 22, dtype=torch.float32, batch=2)
    assert fused_decoding.fused_chains(net.fused_heads()) is not None
    for capacity in (decoding._INITIAL_CAPACITY, 1):
        monkeypatch.setattr(decoding, "_INITIAL_CAPACITY", capacity)
        fused, plain = _both_paths(monkeypatch, lambda: greedy(net, x))
        _assert_identical(fused, plain)
        _assert_identical(*_both_paths(monkeypatch, lambda: sample(net, x[:, :60], num_samples=16, generator=6)))
    assert int(fused[0].max()) + 1 > 1


def test_fused_path_falls_back_for_other_layers(monkeypatch):
    """A network whose ``f`` has another activation runs the plain path, same results."""
    net = make_net(23, f_layers=3)
    net.f_net[1] = torch.nn.Tanh()
    assert fused_decoding.fused_chains(net.fused_heads()) is None
    x = points(9, 23)
    _assert_identical(*_both_paths(monkeypatch, lambda: sample(net, x, num_samples=4, generator=1)))
    labels, log_prob = greedy(net, x)
    assert abs(log_prob.item() - ref_log_prob(net, x, labels).item()) < 1e-9

"""Instance-discrimination and class-based set samplers against exact laws and slow checks."""

import itertools
from collections import Counter

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chisquare

from gfncp_pyro.data.augment import EmbeddingAugment, ImageAugment
from gfncp_pyro.data.image_sets import _rank_in_cluster, class_sets, instance_sets
from gfncp_pyro.distributions import ChineseRestaurantProcess
from gfncp_pyro.partitions import PAD_LABEL, enumerate_partitions, is_canonical, lengths_to_mask

GOF_THRESHOLD = 1e-3  # seeds are fixed; a wrong law gives p-values near 0


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def image_pool(size, seed=0):
    return torch.rand(size, 1, 6, 5, generator=gen(seed))


def check_layout(batch, lengths, point_shape):
    """Shapes, prefix mask, canonical labels, zero padding, -1 sources at padding."""
    b, n = lengths.shape[0], int(lengths.max())
    assert batch.x.shape == (b, n) + tuple(point_shape)
    assert torch.equal(batch.mask, lengths_to_mask(lengths, n))
    assert batch.labels.dtype == torch.long and batch.source.dtype == torch.long
    assert bool(is_canonical(batch.labels, batch.mask).all())
    assert bool((batch.labels[~batch.mask] == PAD_LABEL).all())
    assert bool((batch.source[~batch.mask] == -1).all())
    assert bool((batch.x[~batch.mask] == 0).all())


def test_rank_in_cluster_matches_loop():
    labels = torch.tensor([[0, 1, 0, 2, 1, 0, -1, -1], [0, 0, 0, 1, 2, 1, 3, 0]])
    rank = _rank_in_cluster(labels)
    for b in range(2):
        seen = Counter()
        for i, label in enumerate(labels[b].tolist()):
            if label >= 0:
                assert int(rank[b, i]) == seen[label]
                seen[label] += 1


# ----------------------------------------------------------------------------- instance_sets

@given(seed=st.integers(0, 10**6), alpha=st.floats(0.2, 8.0),
       lengths=st.lists(st.integers(1, 30), min_size=1, max_size=6))
def test_instance_sets_structure(seed, alpha, lengths):
    lengths = torch.tensor(lengths)
    pool = image_pool(60)
    batch = instance_sets(pool, lengths, alpha, gen(seed), augment=ImageAugment())
    check_layout(batch, lengths, pool.shape[1:])
    for b in range(lengths.shape[0]):
        labels = batch.labels[b, : lengths[b]].tolist()
        source = batch.source[b, : lengths[b]].tolist()
        anchor = {}
        for i, (label, s) in enumerate(zip(labels, source)):
            if label not in anchor:  # first point of the cluster: the original anchor
                anchor[label] = s
                assert torch.equal(batch.x[b, i], pool[s])
            assert s == anchor[label]  # one anchor per cluster
        assert len(set(anchor.values())) == len(anchor)  # distinct anchors


def test_instance_sets_without_augment_copies_anchors():
    lengths = torch.tensor([40, 3, 25])
    pool = torch.randn(30, 4, generator=gen(1), dtype=torch.float64)
    batch = instance_sets(pool, lengths, 2.0, gen(2))
    check_layout(batch, lengths, (4,))
    assert batch.x.dtype == torch.float64
    assert torch.equal(batch.x[batch.mask], pool[batch.source[batch.mask]])


def test_instance_sets_augment_only_later_points():
    lengths = torch.tensor([200, 150])
    pool = torch.randn(50, 8, generator=gen(1)) + 3.0
    batch = instance_sets(pool, lengths, 1.0, gen(3), augment=EmbeddingAugment())
    first = batch.mask & (_rank_in_cluster(batch.labels) == 0)
    later = batch.mask & ~first
    originals = pool[batch.source.clamp(min=0)]
    assert torch.equal(batch.x[first], originals[first])
    assert bool((batch.x[later] != originals[later]).any(dim=-1).all())


def test_instance_sets_deterministic():
    lengths, pool = torch.tensor([20, 30]), image_pool(40)
    a = instance_sets(pool, lengths, 1.0, gen(7), augment=ImageAugment())
    b = instance_sets(pool, lengths, 1.0, gen(7), augment=ImageAugment())
    c = instance_sets(pool, lengths, 1.0, gen(8), augment=ImageAugment())
    assert all(u is v or torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a.labels, c.labels) or not torch.equal(a.x, c.x)


@pytest.mark.parametrize("n, alpha", [(6, 1.5), (4, 0.5)])
def test_instance_sets_num_clusters_follow_crp(n, alpha):
    sets = 4000
    lengths = torch.tensor([n] * sets + [n + 3] * (sets // 4))  # mixed sizes in one batch
    batch = instance_sets(torch.zeros(20, 1), lengths, alpha, gen(n))
    k = batch.labels[:sets].max(dim=1).values + 1
    observed = torch.bincount(k, minlength=n + 1)[1:].double()
    expected = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n).num_clusters_log_prob(
        torch.arange(1, n + 1)).exp() * sets
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > GOF_THRESHOLD


def test_instance_sets_pool_too_small():
    with pytest.raises(ValueError, match="pool .* holds only 3"):
        instance_sets(torch.zeros(3, 2), torch.tensor([50]), 50.0, gen())


def test_instance_sets_reject_bad_input():
    with pytest.raises(ValueError, match="ImageAugment needs image points"):
        instance_sets(torch.zeros(10, 4), torch.tensor([5]), 1.0, gen(), augment=ImageAugment())
    with pytest.raises(ValueError, match="EmbeddingAugment needs vector points"):
        instance_sets(image_pool(10), torch.tensor([5]), 1.0, gen(), augment=EmbeddingAugment())
    with pytest.raises(ValueError, match="floating-point pool"):
        instance_sets(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.tensor([5]), 1.0, gen())
    with pytest.raises(ValueError, match="alpha"):
        instance_sets(torch.zeros(10, 2), torch.tensor([5]), -1.0, gen())
    with pytest.raises(ValueError, match="alpha of shape"):
        instance_sets(torch.zeros(10, 2), torch.tensor([5, 6]), torch.ones(3), gen())
    with pytest.raises(ValueError, match="lengths"):
        instance_sets(torch.zeros(10, 2), torch.tensor([0, 3]), 1.0, gen())


# ----------------------------------------------------------------------------- class_sets

CLASS_IDS = torch.tensor([3, 17, 42, 1000, 5])  # non-contiguous ids
CLASS_COUNTS = torch.tensor([12, 4, 30, 7, 20])


def labelled_pool(seed=0):
    labels = torch.repeat_interleave(CLASS_IDS, CLASS_COUNTS)
    labels = labels[torch.randperm(labels.shape[0], generator=gen(seed))]
    return torch.randn(labels.shape[0], 3, generator=gen(seed + 1)), labels


@given(seed=st.integers(0, 10**6), alpha=st.floats(0.2, 3.0),
       lengths=st.lists(st.integers(1, 40), min_size=1, max_size=6))
def test_class_sets_structure(seed, alpha, lengths):
    lengths = torch.tensor(lengths)
    points, labels = labelled_pool()
    batch = class_sets(points, labels, lengths, alpha, gen(seed), max_tries=1000)
    check_layout(batch, lengths, (3,))
    count_of = dict(zip(CLASS_IDS.tolist(), CLASS_COUNTS.tolist()))
    for b in range(lengths.shape[0]):
        source = batch.source[b, : lengths[b]].tolist()
        assert len(set(source)) == len(source)  # distinct pool points
        assert torch.equal(batch.x[b, : lengths[b]], points[source])  # originals
        cluster_class = {}
        for label, s in zip(batch.labels[b, : lengths[b]].tolist(), source):
            assert cluster_class.setdefault(label, int(labels[s])) == int(labels[s])
        assert len(set(cluster_class.values())) == len(cluster_class)  # clusters <-> classes
        sizes = Counter(batch.labels[b, : lengths[b]].tolist())
        assert all(sizes[k] <= count_of[c] for k, c in cluster_class.items())


def test_class_sets_law_is_crp_conditioned_on_feasibility():
    """Exact law: p(c) proportional to CRP(c) * P(K random distinct classes fit c)."""
    n, alpha, sets = 4, 1.0, 20000
    counts = [1, 2, 3]
    labels = torch.repeat_interleave(torch.tensor([10, 20, 30]), torch.tensor(counts))
    partitions = enumerate_partitions(n)
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n).log_prob(partitions).exp()
    weight = []
    for c in partitions.tolist():
        sizes = [c.count(k) for k in range(max(c) + 1)]
        orders = list(itertools.permutations(range(3), len(sizes)))
        weight.append(sum(all(s <= counts[j] for s, j in zip(sizes, o)) for o in orders) / max(len(orders), 1))
    target = crp * torch.tensor(weight, dtype=torch.float64)
    target = target / target.sum()
    batch = class_sets(torch.zeros(6, 1), labels, torch.full((sets,), n), alpha, gen(11))
    index = {tuple(c): i for i, c in enumerate(partitions.tolist())}
    observed = torch.bincount(torch.tensor([index[tuple(c)] for c in batch.labels.tolist()]),
                              minlength=len(index)).double()
    support = target > 0
    assert observed[~support].sum() == 0
    assert chisquare(observed[support].numpy(), (target[support] * sets).numpy()).pvalue > GOF_THRESHOLD


def test_class_sets_points_uniform_without_replacement_within_class():
    sets, pool = 6000, 10
    labels = torch.full((pool,), 7)
    points = torch.arange(pool, dtype=torch.float64).unsqueeze(1)
    batch = class_sets(points, labels, torch.full((sets,), 3), 1.0, gen(12))
    assert bool((batch.labels == 0).all())  # one class: one cluster
    source = batch.source
    assert bool((source.sort(dim=1).values.diff(dim=1) > 0).all())  # without replacement
    for column in range(3):  # each position uniform over the pool
        observed = torch.bincount(source[:, column], minlength=pool).double()
        assert chisquare(observed.numpy(), [sets / pool] * pool).pvalue > GOF_THRESHOLD


def test_class_sets_with_augment_changes_every_point():
    points, labels = labelled_pool()
    batch = class_sets(points, labels, torch.tensor([20, 10]), 1.0, gen(1), augment=EmbeddingAugment())
    original = points[batch.source.clamp(min=0)]
    assert bool((batch.x[batch.mask] != original[batch.mask]).any(dim=-1).all())


def test_class_sets_infeasible():
    labels = torch.tensor([4, 4, 4, 9, 9, 9])
    with pytest.raises(ValueError, match="pool of 6"):
        class_sets(torch.zeros(6, 2), labels, torch.tensor([10]), 1.0, gen())
    labels = torch.tensor([4] * 5 + [9] * 5)  # 2 classes; alpha=100 opens > 2 clusters almost surely
    with pytest.raises(ValueError, match="pool is too small .* at this alpha"):
        class_sets(torch.zeros(10, 2), labels, torch.tensor([6, 6]), 100.0, gen(), max_tries=5)


def test_class_sets_reject_bad_labels():
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        class_sets(torch.zeros(6, 2), torch.zeros(6), torch.tensor([3]), 1.0, gen())
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        class_sets(torch.zeros(6, 2), torch.zeros(5, dtype=torch.long), torch.tensor([3]), 1.0, gen())
    with pytest.raises(ValueError, match="non-negative"):
        class_sets(torch.zeros(2, 2), torch.tensor([0, -1]), torch.tensor([1]), 1.0, gen())
    with pytest.raises(ValueError, match="max_tries"):
        class_sets(torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([1]), 1.0, gen(), max_tries=0)


def test_class_sets_deterministic_and_device_argument():
    points, labels = labelled_pool()
    a = class_sets(points, labels, torch.tensor([15, 9]), 1.0, gen(4), device="cpu")
    b = class_sets(points, labels, torch.tensor([15, 9]), 1.0, 4)
    assert all(u is v or torch.equal(u, v) for u, v in zip(a, b))

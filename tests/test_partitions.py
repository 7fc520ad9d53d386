"""Tests of canonical labels, enumeration, Bell numbers and the uniform partition sampler."""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from gfncp_pyro.partitions import (
    PAD_LABEL,
    bell_number,
    blocks_to_labels,
    canonicalize,
    check_canonical,
    cluster_sizes,
    enumerate_partitions,
    is_canonical,
    labels_to_blocks,
    lengths_to_mask,
    num_clusters,
    sample_uniform_partitions,
)

# OEIS A000110
BELL = [1, 1, 2, 5, 15, 52, 203, 877, 4140, 21147, 115975, 678570, 4213597]


def slow_canonicalize(row):
    seen = {}
    return [seen.setdefault(v, len(seen)) for v in row]


def slow_partitions(n):
    """All set partitions by recursive insertion (independent of restricted growth strings)."""
    if n == 0:
        return [[]]
    out = []
    for part in slow_partitions(n - 1):
        for k in range(len(part) + 1):
            blocks = [list(b) for b in part]
            if k == len(part):
                blocks.append([n - 1])
            else:
                blocks[k].append(n - 1)
            out.append(blocks)
    return out


@pytest.mark.parametrize("n", range(13))
def test_bell_numbers(n):
    assert bell_number(n) == BELL[n]


def test_bell_number_recurrence_large():
    # B_{n+1} = sum_k C(n, k) B_k
    for n in range(20, 25):
        assert bell_number(n + 1) == sum(math.comb(n, k) * bell_number(k) for k in range(n + 1))


def test_bell_number_rejects_bad_input():
    for bad in (-1, 2.5, "3", True):
        with pytest.raises(ValueError, match="n must be a non-negative integer"):
            bell_number(bad)


@pytest.mark.parametrize("n", range(0, 9))
def test_enumeration_unique_canonical_lexicographic(n):
    labels = enumerate_partitions(n)
    assert labels.shape == (BELL[n], n)
    assert labels.dtype == torch.long
    assert bool(is_canonical(labels).all())
    rows = [tuple(r) for r in labels.tolist()]
    assert len(set(rows)) == BELL[n]
    assert rows == sorted(rows)
    expected = {tuple(blocks_to_labels(b, n).tolist()) for b in slow_partitions(n)}
    assert set(rows) == expected


def test_enumeration_n12_int8():
    labels = enumerate_partitions(12, dtype=torch.int8)
    assert labels.shape == (BELL[12], 12)
    assert labels.dtype == torch.int8
    assert bool(is_canonical(labels[::9973]).all())


def test_enumeration_refuses_large_n():
    with pytest.raises(ValueError, match="limit is n <= 12"):
        enumerate_partitions(13)


label_rows = st.lists(st.integers(-5, 5), min_size=1, max_size=12)


@given(st.lists(label_rows, min_size=1, max_size=4).filter(lambda r: len({len(x) for x in r}) == 1))
def test_canonicalize_matches_slow(rows):
    labels = torch.tensor(rows)
    out = canonicalize(labels)
    assert out.tolist() == [slow_canonicalize(r) for r in rows]
    assert bool(is_canonical(out).all())
    # idempotent
    assert torch.equal(canonicalize(out), out)


@given(label_rows, st.integers(0, 12))
def test_canonicalize_with_mask(row, length):
    length = min(length, len(row))
    labels = torch.tensor([row])
    mask = lengths_to_mask(torch.tensor([length]), len(row))
    out = canonicalize(labels, mask)[0].tolist()
    assert out[:length] == slow_canonicalize(row[:length])
    assert out[length:] == [PAD_LABEL] * (len(row) - length)


def test_canonicalize_batch_dims_and_large_values():
    labels = torch.tensor([[[10**12, -(10**12), 10**12]], [[7, 7, 7]]])
    assert canonicalize(labels).tolist() == [[[0, 1, 0]], [[0, 0, 0]]]


@given(label_rows)
def test_is_canonical_matches_slow(row):
    expected = slow_canonicalize(row) == row
    assert bool(is_canonical(torch.tensor(row))) == expected


def test_is_canonical_ignores_padding():
    labels = torch.tensor([[0, 1, PAD_LABEL], [0, 2, PAD_LABEL]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    assert is_canonical(labels, mask).tolist() == [True, False]


def test_check_canonical_message():
    with pytest.raises(ValueError, match="not canonical.*canonicalize"):
        check_canonical(torch.tensor([[0, 2, 1]]))
    with pytest.raises(ValueError, match="integer tensor"):
        canonicalize(torch.tensor([0.0, 1.0]))


def test_num_clusters_sizes_blocks():
    labels = torch.tensor([[0, 1, 0, 2, 1], [0, 0, 1, PAD_LABEL, PAD_LABEL]])
    mask = lengths_to_mask(torch.tensor([5, 3]), 5)
    assert num_clusters(labels, mask).tolist() == [3, 2]
    assert cluster_sizes(labels, mask=mask).tolist() == [[2, 2, 1], [2, 1, 0]]
    assert labels_to_blocks([3, 3, 1, 0, 1]) == [[0, 1], [2, 4], [3]]
    assert blocks_to_labels([[3], [0, 2], [1]]).tolist() == [0, 1, 0, 2]
    with pytest.raises(ValueError, match="partition"):
        blocks_to_labels([[0, 1], [1]])


@pytest.mark.parametrize("n", [3, 4, 5])
def test_uniform_sampler_is_uniform(n):
    """Chi-square test: every one of the Bell(n) partitions is equally likely."""
    generator = torch.Generator().manual_seed(n)
    num = 200 * BELL[n]
    samples = sample_uniform_partitions(n, num, generator=generator)
    assert bool(is_canonical(samples).all())
    all_parts = enumerate_partitions(n)
    index = {tuple(r): i for i, r in enumerate(all_parts.tolist())}
    counts = torch.zeros(BELL[n])
    for r in samples.tolist():
        counts[index[tuple(r)]] += 1
    pvalue = stats.chisquare(counts.numpy()).pvalue
    assert pvalue > 1e-3, counts


def test_uniform_sampler_k_distribution_large_n():
    """For n = 30 the number of blocks follows S(n, k) / Bell(n) (Stirling numbers, 2nd kind)."""
    n = 30
    # Stirling numbers of the second kind by recurrence (exact integers).
    s = [[0] * (n + 1) for _ in range(n + 1)]
    s[0][0] = 1
    for i in range(1, n + 1):
        for k in range(1, i + 1):
            s[i][k] = k * s[i - 1][k] + s[i - 1][k - 1]
    expected_mean = sum(k * s[n][k] for k in range(n + 1)) / bell_number(n)
    samples = sample_uniform_partitions(n, 20000, generator=torch.Generator().manual_seed(1))
    k = num_clusters(samples).double()
    se = k.std() / math.sqrt(k.numel())
    assert abs(k.mean().item() - expected_mean) < 4 * se.item()


def test_uniform_sampler_mixed_lengths_and_seed():
    lengths = torch.tensor([5, 0, 1, 12])
    a = sample_uniform_partitions(lengths, generator=torch.Generator().manual_seed(3))
    b = sample_uniform_partitions(lengths, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    mask = lengths_to_mask(lengths)
    assert bool(is_canonical(a, mask).all())
    assert bool((a[~mask] == PAD_LABEL).all())
    assert a[2, 0] == 0
    with pytest.raises(ValueError, match="num_samples"):
        sample_uniform_partitions(3)
    with pytest.raises(ValueError, match="non-negative"):
        sample_uniform_partitions(torch.tensor([-1]))


def test_enumeration_against_itertools_small():
    # every labelling in range(n)^n canonicalised gives exactly the enumerated set
    n = 5
    all_labellings = torch.tensor(list(itertools.product(range(n), repeat=n)))
    uniq = torch.unique(canonicalize(all_labellings), dim=0)
    assert torch.equal(uniq, enumerate_partitions(n))

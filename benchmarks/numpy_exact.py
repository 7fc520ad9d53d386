"""A plain numpy implementation of the exact maths, the yardstick of ``bench_exact.py``.

The same algorithms as :mod:`gfncp_pyro.exact` and :mod:`gfncp_pyro.subset_dp`, written the
straightforward numpy way (isotropic Gaussian clusters only), with the same outputs:

* :func:`subset_table`: block scores ``T[S] = log alpha + lgamma(|S|) + log p(x_S)`` of all
  ``2^N`` subsets, statistics by doubling over the bits (Welford increments);
* :func:`enumerate_posterior`: all Bell(N) partitions (int64 labels, lexicographic order,
  built level by level), their log joint by table look-ups of the block bitmasks, normalised;
* :func:`dp_posterior`: the subset DP ``Z(S) = sum_R T[{l} u R] Z(S minus {l} minus R)`` over the
  ``3^(N-1-l)`` pairs of every level (ternary digits), plus the co-clustering matrix.

Not used by the package; ``tests/test_exact.py`` checks it against the package to 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, logsumexp


def subset_table(x: np.ndarray, alpha: float, sigma_mu: float, sigma_x: float) -> np.ndarray:
    """``T`` ``(2^N,)`` for the isotropic Normal-Normal clusters, ``T[0] = 0``."""
    n, d = x.shape
    counts, means, scatter = np.zeros(1), np.zeros((1, d)), np.zeros(1)
    for i in range(n):
        grown = counts + 1
        delta = x[i] - means
        counts = np.concatenate([counts, grown])
        means = np.concatenate([means, means + delta / grown[:, None]])
        scatter = np.concatenate([scatter, scatter + (counts[: grown.size] / grown) * (delta**2).sum(1)])
    vx, vm = sigma_x**2, sigma_mu**2
    with np.errstate(divide="ignore"):
        log_p = (-0.5 * counts * d * (math.log(2 * math.pi) + math.log(vx)) - 0.5 * d * np.log1p(counts * vm / vx)
                 - scatter / (2 * vx) - counts * (means**2).sum(1) / (2 * (vx + counts * vm)))
        table = log_p + math.log(alpha) + gammaln(np.maximum(counts, 1))
    table[0] = 0.0
    return table


def enumerate_labels(n: int) -> np.ndarray:
    """All Bell(n) restricted growth strings ``(B_n, n)`` int64, lexicographic order (built in
    int8 level by level, converted once)."""
    labels = np.zeros((1, 1), dtype=np.int8)
    k_open = np.ones(1, dtype=np.int8)
    for _ in range(1, n):
        counts = k_open.astype(np.int64) + 1
        parent = np.repeat(np.arange(labels.shape[0]), counts)
        child = (np.arange(parent.size) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int8)
        labels = np.concatenate([labels[parent], child[:, None]], axis=1)
        k_open = np.maximum(k_open[parent], child + 1)
    return labels.astype(np.int64)


def enumerate_posterior(x, alpha, sigma_mu, sigma_x, chunk: int = 1 << 16):
    """``(labels (B_N, N) int64, log_posterior (B_N,), log_evidence)`` by enumeration."""
    n = x.shape[0]
    table = subset_table(x, alpha, sigma_mu, sigma_x)
    labels = enumerate_labels(n)
    bits = np.tile((1 << np.arange(n)).astype(np.float64), chunk)
    log_joint = np.empty(labels.shape[0])
    for start in range(0, labels.shape[0], chunk):
        part = labels[start : start + chunk]
        rows = part.shape[0]
        flat = (np.arange(rows)[:, None] * n + part).ravel()  # (row, block) cell of each point
        masks = np.bincount(flat, weights=bits[: rows * n], minlength=rows * n).astype(np.int64)
        log_joint[start : start + rows] = table[masks.reshape(rows, n)].sum(1)
    log_joint += math.lgamma(alpha) - math.lgamma(alpha + n)
    log_evidence = logsumexp(log_joint)
    return labels, log_joint - log_evidence, log_evidence


def _pairs(m: int, offset: int):
    s_prime, r = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    for j in range(m):
        bit = 1 << (offset + j)
        s_prime = np.concatenate([s_prime, s_prime + bit, s_prime + bit])
        r = np.concatenate([r, r, r + bit])
    return s_prime, r


def dp_posterior(x, alpha, sigma_mu, sigma_x):
    """``(log_evidence, coclustering (N, N))`` by the subset DP."""
    n = x.shape[0]
    table = subset_table(x, alpha, sigma_mu, sigma_x)
    log_z = np.full(1 << n, -np.inf)
    log_z[0] = 0.0
    for low in range(n - 1, -1, -1):
        m = n - 1 - low
        low_bit = 1 << low
        s_prime, r = _pairs(m, low + 1)
        values = table[r | low_bit] + log_z[s_prime ^ r]
        group = s_prime >> (low + 1)
        shift = np.full(1 << m, -np.inf)
        np.maximum.at(shift, group, values)
        acc = np.bincount(group, weights=np.exp(values - shift[group]), minlength=1 << m)
        log_z[(np.arange(1 << m) << (low + 1)) | low_bit] = np.log(acc) + shift
    full = (1 << n) - 1
    subsets = np.arange(1 << n)
    prob = np.exp(table + log_z[full ^ subsets] - log_z[full])
    prob[0] = 0.0
    member = ((subsets[:, None] >> np.arange(n)) & 1).astype(np.float64)
    cocluster = member.T @ (prob[:, None] * member)
    return log_z[full] + math.lgamma(alpha) - math.lgamma(alpha + n), cocluster

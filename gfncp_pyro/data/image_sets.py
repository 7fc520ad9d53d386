"""Batches of labelled sets drawn from a pool of images or embeddings (Sec. 5.1, App. A.1 in [1]).

Two generators, both fully vectorised over sets and points (the only loop is the rejection
loop of :func:`class_sets`, over tries):

- :func:`instance_sets`, training sets by instance discrimination (Sec. 4.3 in [1]): a CRP
  partition per set; each cluster is one random anchor of the pool and augmentations of it.
  The pool's class labels are never used.
- :func:`class_sets`, sets of original, distinct pool points with one class per cluster (the
  test sets of App. A.1 in [1]; with ``augment`` also supervised training sets).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import torch

from .._checks import check_lengths, check_positive_int, make_generator, positive_float
from ..batch import SetBatch
from ..distributions.crp import sample_crp_labels
from ..partitions import PAD_LABEL
from .augment import EmbeddingAugment, ImageAugment, _describe, augment_embeddings, augment_images

__all__ = ["instance_sets", "class_sets"]


def _check_points(points, augment) -> torch.Tensor:
    if not isinstance(points, torch.Tensor) or not points.is_floating_point() or points.ndim < 2:
        raise ValueError(
            f"points must be a floating-point pool tensor (P, *point_shape), got {_describe(points)}; "
            "convert uint8 images with points.float() / 255"
        )
    if points.shape[0] == 0:
        raise ValueError("points must hold at least one pool point, got an empty pool")
    if isinstance(augment, ImageAugment) and points.ndim != 4:
        raise ValueError(
            f"an ImageAugment needs image points (P, C, H, W), got points of shape {tuple(points.shape)}; "
            "use EmbeddingAugment for vectors"
        )
    if isinstance(augment, EmbeddingAugment) and points.ndim != 2:
        raise ValueError(
            f"an EmbeddingAugment needs vector points (P, d), got points of shape {tuple(points.shape)}; "
            "use ImageAugment for images"
        )
    if augment is not None and not isinstance(augment, (ImageAugment, EmbeddingAugment)):
        raise ValueError(f"augment must be an ImageAugment, an EmbeddingAugment or None, got {augment!r}")
    return points


def _setup(points, lengths, alpha, generator, augment, device):
    """Validated ``(points, lengths (B,) and alpha (B,) float64 on the CPU, CPU generator,
    device)``."""
    points = _check_points(points, augment)
    lengths = check_lengths(lengths).to("cpu", torch.long)
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.detach().to("cpu", torch.float64)
    else:
        alpha = torch.tensor(positive_float(alpha, "alpha (the CRP concentration)"), dtype=torch.float64)
    try:
        alpha = torch.broadcast_to(alpha, lengths.shape)
    except RuntimeError:
        raise ValueError(
            f"alpha of shape {tuple(alpha.shape)} does not broadcast to lengths' shape "
            f"{tuple(lengths.shape)}; pass one alpha per set or a scalar"
        ) from None
    generator = make_generator(generator)
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")
    device = points.device if device is None else torch.device(device)
    return points, lengths, alpha, generator, device


def _rank_in_cluster(labels: torch.Tensor) -> torch.Tensor:
    """``(B, N)``: how many earlier points of the same set share each point's cluster (0 for the
    first point of a cluster); arbitrary at padding (``labels < 0``)."""
    n = labels.shape[1]
    key = torch.where(labels < 0, n, labels)
    ordered, perm = torch.sort(key, dim=1, stable=True)
    first = torch.searchsorted(ordered, ordered)
    rank_sorted = torch.arange(n).expand_as(ordered) - first
    return torch.empty_like(rank_sorted).scatter_(1, perm, rank_sorted)


def _assemble(points, source, mask, augmented, augment, generator, device) -> torch.Tensor:
    """Gather the pool points ``source`` into a zero-padded ``(B, N_max, *point_shape)`` tensor
    on ``device``, augmenting the points flagged in ``augmented`` ``(B, N_max)``."""
    flat = points[source[mask].to(points.device)].to(device)
    if augment is not None:
        index = augmented[mask].nonzero().squeeze(-1).to(device)
        if index.numel():
            chosen = flat.index_select(0, index)
            if isinstance(augment, ImageAugment):
                chosen = augment_images(chosen, augment, generator)
            else:
                chosen = augment_embeddings(chosen, augment, generator)
            flat = flat.index_copy(0, index, chosen)
    x = torch.zeros(mask.shape + points.shape[1:], dtype=points.dtype, device=device)
    x[mask.to(device)] = flat
    return x


def instance_sets(points, lengths, alpha, generator, augment=None, device=None) -> SetBatch:
    """Training sets by instance discrimination (App. A.1 in [1], steps 1-4).

    For each set ``b``: canonical labels of ``N_b`` points from CRP(``alpha``) with ``K_b``
    clusters; ``K_b`` anchors drawn uniformly without replacement from the pool (random keys,
    top-``K``); the first point of cluster ``k`` is anchor ``k`` itself and every later point of
    the cluster an independent augmentation of it. The pool's labels are not used.

    :param torch.Tensor points: pool ``(P, *point_shape)``, floating point (images ``(P, C, H, W)``
        in ``[0, 1]`` when ``augment`` is an :class:`ImageAugment`, vectors ``(P, d)`` for an
        :class:`EmbeddingAugment`).
    :param torch.Tensor lengths: set sizes ``(B,)``, each ``>= 1``.
    :param alpha: CRP concentration, a positive number or a tensor broadcastable to ``(B,)``.
    :param generator: a CPU ``torch.Generator`` or an int seed; all randomness comes from it.
    :param augment: an :class:`ImageAugment`, an :class:`EmbeddingAugment`, or ``None`` (the
        other points of a cluster are exact copies of its anchor).
    :param device: device of the returned tensors (default: the pool's).
    :returns: a :class:`SetBatch`.
    :raises ValueError: on malformed input, or if a set draws more clusters than the pool has
        points.
    """
    points, lengths, alpha, generator, device = _setup(points, lengths, alpha, generator, augment, device)
    labels = sample_crp_labels(alpha, lengths, generator)
    mask = labels >= 0
    clusters = labels.max(dim=1).values + 1
    pool = points.shape[0]
    if int(clusters.max()) > pool:
        raise ValueError(
            f"a set drew {int(clusters.max())} clusters but the pool (points) holds only {pool} "
            "anchors; pass a larger pool, smaller lengths or a smaller alpha"
        )
    keys = torch.rand((lengths.shape[0], pool), generator=generator, dtype=torch.float64)
    anchors = keys.topk(int(clusters.max()), dim=1).indices
    source = torch.where(mask, anchors.gather(1, labels.clamp(min=0)), -1)
    augmented = mask & (_rank_in_cluster(labels) > 0)
    x = _assemble(points, source, mask, augmented, augment, generator, device)
    return SetBatch(x, labels.to(device), mask.to(device), source=source.to(device))


def _check_pool_labels(labels, pool: int) -> torch.Tensor:
    if (not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex()
            or labels.dtype == torch.bool or labels.shape != (pool,)):
        raise ValueError(f"labels must be an integer tensor of class ids (P,) = ({pool},), got {_describe(labels)}")
    labels = labels.to("cpu", torch.long)
    if bool((labels < 0).any()):
        raise ValueError(f"labels must be non-negative class ids, got minimum {int(labels.min())}")
    return labels


def _feasible_partitions(lengths, alpha, counts, generator, max_tries):
    """Rejection sampling of ``(partition (B, N_max), classes (B, min(N_max, C)))``: a CRP
    partition and ``K`` distinct uniform class indices per set, redrawn for the failing sets
    until every cluster fits its class; ``None`` for the classes if some set never succeeded."""
    batch, n_max, num_classes = lengths.shape[0], int(lengths.max()), counts.shape[0]
    partition = torch.full((batch, n_max), PAD_LABEL, dtype=torch.long)
    classes = torch.zeros((batch, min(n_max, num_classes)), dtype=torch.long)
    pending = torch.arange(batch)
    for _ in range(max_tries):
        drawn = sample_crp_labels(alpha[pending], lengths[pending], generator)
        width = drawn.shape[1]
        sizes = torch.zeros((pending.shape[0], width + 1), dtype=torch.long)
        sizes.scatter_add_(1, torch.where(drawn < 0, width, drawn), torch.ones_like(drawn))
        columns = min(width, num_classes)
        keys = torch.rand((pending.shape[0], num_classes), generator=generator, dtype=torch.float64)
        chosen = torch.argsort(keys, dim=1)[:, :columns]
        fits = (drawn.max(dim=1).values < num_classes) & (sizes[:, :columns] <= counts[chosen]).all(dim=1)
        partition[pending[fits], :width] = drawn[fits]
        classes[pending[fits], :columns] = chosen[fits]
        pending = pending[~fits]
        if not pending.numel():
            return partition, classes
    return partition, None


def class_sets(points, labels, lengths, alpha, generator, augment=None, device=None, max_tries=100) -> SetBatch:
    """Sets of original, distinct pool points, one class per cluster (App. A.1 in [1], test sets).

    For each set: a CRP(``alpha``) partition with ``K`` clusters and ``K`` distinct classes drawn
    uniformly, cluster ``k`` taking class ``k``; a set whose partition does not fit (``K`` larger
    than the number of classes, or a cluster larger than its class) is redrawn, partition and
    classes, up to ``max_tries`` times. The partition's law is therefore the CRP *conditioned on
    feasibility* (exactly the CRP when every draw fits, e.g. for classes larger than ``N``).
    Within a class, points are drawn uniformly without replacement (per set: random keys over
    the pool, sorted by class then key, cluster ``k``'s ``r``-th point takes the ``r``-th entry of
    its class), so all points of a set are distinct pool points.

    :param torch.Tensor points: pool ``(P, *point_shape)``, floating point.
    :param torch.Tensor labels: class ids ``(P,)``, non-negative integers (need not be contiguous).
    :param torch.Tensor lengths: set sizes ``(B,)``, each ``>= 1``.
    :param alpha: CRP concentration, a positive number or a tensor broadcastable to ``(B,)``.
    :param generator: a CPU ``torch.Generator`` or an int seed; all randomness comes from it.
    :param augment: ``None`` (test sets), or an :class:`ImageAugment` / :class:`EmbeddingAugment`
        applied independently to every point (supervised training sets).
    :param device: device of the returned tensors (default: the pool's).
    :param int max_tries: rounds of redrawing before giving up.
    :returns: a :class:`SetBatch` (``source`` gives each point's pool index, hence its class).
    :raises ValueError: on malformed input, or when some set found no feasible draw in
        ``max_tries`` rounds (the pool is too small for sets of this size at this ``alpha``).
    """
    points, lengths, alpha, generator, device = _setup(points, lengths, alpha, generator, augment, device)
    max_tries = check_positive_int(max_tries, "max_tries")
    pool = points.shape[0]
    class_of_point = _check_pool_labels(labels, pool)
    _, class_index, counts = torch.unique(class_of_point, return_inverse=True, return_counts=True)
    if int(lengths.max()) > pool:
        raise ValueError(
            f"a set of {int(lengths.max())} distinct points cannot come from a pool of {pool}; "
            "pass smaller lengths or a larger pool"
        )
    partition, classes = _feasible_partitions(lengths, alpha, counts, generator, max_tries)
    if classes is None:
        raise ValueError(
            f"after max_tries={max_tries} draws some sets of size <= {int(lengths.max())} still had "
            f"more clusters than the pool's {counts.shape[0]} classes or a cluster larger than its "
            f"class (largest class: {int(counts.max())} points): the pool is too small for sets of "
            "this size at this alpha; pass smaller lengths, a larger alpha when clusters outgrow "
            "their classes (a smaller one when sets open more clusters than there are classes), "
            "or a larger max_tries"
        )
    mask = partition >= 0
    keys = torch.rand((lengths.shape[0], pool), generator=generator, dtype=torch.float64)
    shuffled = torch.argsort(keys, dim=1)
    by_class = shuffled.gather(1, torch.argsort(class_index[shuffled], dim=1, stable=True))
    class_start = torch.cumsum(counts, 0) - counts
    cluster_class = classes.gather(1, partition.clamp(min=0))
    position = class_start[cluster_class] + _rank_in_cluster(partition)
    source = torch.where(mask, by_class.gather(1, position.clamp(max=pool - 1)), -1)
    x = _assemble(points, source, mask, mask, augment, generator, device)
    return SetBatch(x, partition.to(device), mask.to(device), source=source.to(device))

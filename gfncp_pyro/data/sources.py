"""Where training and test sets come from: the Pyro model, image pools or embedding pools.

A *set source* turns set sizes into a batch of sets with their partitions (App. A.1 in [1]):

- :class:`MixtureSource`: the CRP Gaussian mixture of Eq. (1) (optionally with exactly ``K``
  clusters, Table 2);
- :class:`InstanceSource`: instance discrimination (Sec. 4.3): each cluster is one random
  anchor of the pool plus augmentations of it, no labels used;
- :class:`ClassSource`: real, distinct points of distinct classes (test sets, and supervised
  training with optional augmentations).

:func:`training_source` and :func:`evaluation_source` build them from a :class:`~gfncp_pyro.config.TrainConfig`
(its kind of data, :mod:`gfncp_pyro.data.kinds`, decides);
a data file is read from the path the caller put in ``config.data.path`` and split by
``config.data.split`` (:func:`split_pool`): training sets only ever see the training part.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..batch import SetBatch
from ..partitions import canonicalize
from .image_sets import class_sets, instance_sets
from .pools import LabeledPool, class_split, index_split, parse_range

if TYPE_CHECKING:  # pragma: no cover
    from ..config import TrainConfig
    from ..models import CRPMixture

__all__ = ["MixtureSource", "InstanceSource", "ClassSource", "split_pool", "load_pool",
           "training_source", "evaluation_source"]


def _fixed_k_labels(lengths: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Partitions with exactly ``k`` clusters: uniform labels in ``0..k-1``, redrawn for the sets
    with an empty cluster (each set has >= k points), then canonicalised."""
    n_max = int(lengths.max())
    mask = torch.arange(n_max) < lengths.unsqueeze(-1)
    labels = torch.randint(0, k, (lengths.shape[0], n_max), generator=generator)
    while True:
        sizes = torch.zeros(lengths.shape[0], k, dtype=torch.long).scatter_add_(1, labels.clamp(min=0), mask.long())
        bad = (sizes == 0).any(-1)
        if not bool(bad.any()):
            return canonicalize(labels, mask)
        labels[bad] = torch.randint(0, k, (int(bad.sum()), n_max), generator=generator)


class MixtureSource:
    """Sets from the CRP Gaussian mixture of Eq. (1) in [1] (the Pyro model's exact sampler).

    :param CRPMixture mixture: the model.
    :param fixed_k: if set, exactly this many clusters (uniform labels; Table 2 in [1]).
    """

    def __init__(self, mixture: CRPMixture, fixed_k: int | None = None):
        self.mixture = mixture
        self.fixed_k = fixed_k

    def draw(self, lengths: torch.Tensor, generator: torch.Generator, device, dtype=torch.float32) -> SetBatch:
        data = self.mixture.sample_batch(lengths, generator=generator, dtype=torch.float64)
        labels, x = data.labels, data.x
        if self.fixed_k is not None:
            labels = _fixed_k_labels(lengths, self.fixed_k, generator)
            noise = self.mixture.sigma_x * torch.randn(x.shape, generator=generator, dtype=torch.float64)
            means = data.means.gather(1, labels.clamp(min=0).unsqueeze(-1).expand_as(x))
            x = torch.where(data.mask.unsqueeze(-1), means + noise, 0.0)
        return SetBatch(x.to(device=device, dtype=dtype), labels.to(device), data.mask.to(device))


class InstanceSource:
    """Training sets by instance discrimination (Sec. 4.3, App. A.1 in [1]) from a pool's points
    (its labels are never read).

    :param LabeledPool pool: the training pool.
    :param float alpha: CRP concentration of the partitions.
    :param augment: an ``ImageAugment`` or ``EmbeddingAugment`` (``None``: exact copies).
    """

    def __init__(self, pool: LabeledPool, alpha: float, augment=None):
        self.pool, self.alpha, self.augment = pool, alpha, augment

    def draw(self, lengths: torch.Tensor, generator: torch.Generator, device, dtype=torch.float32) -> SetBatch:
        sets = instance_sets(self.pool.points, lengths, self.alpha, generator, augment=self.augment, device=device)
        return SetBatch(sets.x.to(dtype), sets.labels, sets.mask)


class ClassSource:
    """Sets of real, distinct points of distinct classes (App. A.1 in [1]: test sets; with
    ``augment``, supervised training sets).

    :param LabeledPool pool: the pool (test or training part).
    :param float alpha: CRP concentration (conditioned on the pool's class sizes, see
        :func:`~gfncp_pyro.data.image_sets.class_sets`).
    :param augment: optional augmentations of every point.
    """

    def __init__(self, pool: LabeledPool, alpha: float, augment=None):
        self.pool, self.alpha, self.augment = pool, alpha, augment

    def draw(self, lengths: torch.Tensor, generator: torch.Generator, device, dtype=torch.float32) -> SetBatch:
        sets = class_sets(self.pool.points, self.pool.labels, lengths, self.alpha, generator, augment=self.augment,
                          device=device)
        return SetBatch(sets.x.to(dtype), sets.labels, sets.mask)


def split_pool(pool: LabeledPool, split: str) -> tuple[LabeledPool, LabeledPool]:
    """``(training part, held-out part)`` of a pool.

    :param str split: ``"index:A:B"`` (points ``A..B-1`` train, the rest test, e.g. MNIST
        ``"index:0:5000"``), ``"classes:K"`` (the ``K`` smallest class ids train, the others
        test: unseen classes), ``"classes:half"``, or ``"all"`` (the whole pool for both, for a
        pool that is only trained or only tested on).
    """
    kind, _, rest = split.partition(":")
    if kind == "all" and not rest:
        return pool, pool
    if kind == "index":
        start, stop = parse_range(rest)
        return index_split(pool, start, stop)
    if kind == "classes":
        if rest == "half":
            if len(pool.classes) < 2:
                raise ValueError(f"split 'classes:half' needs at least 2 classes, the pool has {len(pool.classes)}")
            return class_split(pool, len(pool.classes) // 2)
        if rest.isdigit():
            return class_split(pool, int(rest))
    raise ValueError(f"split must be 'all', 'index:A:B', 'classes:K' or 'classes:half', got {split!r}")


def load_pool(config: "TrainConfig") -> LabeledPool:
    """Read ``config.data.path`` as the pool of ``config``'s kind of data (images: an IDX
    directory or ``.npz``; embeddings: ``.npy``/``.npz``/safetensors)."""
    if not hasattr(config.data, "load_pool"):
        raise ValueError(f"{config.data.name!r} data are drawn from the model and have no pool to load")
    return config.data.load_pool()


def training_source(config: "TrainConfig", pool: LabeledPool | None = None, device=None):
    """The source of training (and validation) sets of ``config`` (its
    :class:`~gfncp_pyro.data.kinds.DataKind` decides); ``pool``: an already loaded pool to use
    instead of reading ``config.data.path`` (split by ``config.data.split`` all the same); ``device``:
    where the training pool's points are kept, so sets are gathered and augmented there (on a
    GPU, data generation never leaves the device)."""
    return config.data.training_source(config, pool, device)


def evaluation_source(config: "TrainConfig", pool: LabeledPool | None = None, alpha: float | None = None):
    """The source of test sets of ``config`` (held-out part of the split, real points of
    distinct classes; for Gaussian mixtures the model itself). ``alpha`` overrides the CRP
    concentration of the test partitions."""
    return config.data.evaluation_source(config, pool, alpha)

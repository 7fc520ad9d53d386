"""Kinds of data as objects: each owns its fields, checks, encoder, point pool, and training and test sources.

``TrainConfig.data`` is one of these frozen dataclasses: :class:`MixtureData` (sets drawn from the
Pyro model itself), :class:`ImageData` or :class:`EmbeddingData` (real points read from the path
the caller gives). Code that depends on the kind of data asks the object instead of comparing
strings. A new kind of data (say, text embeddings with their own augmentation) is one subclass
of :class:`DataKind` registered in :data:`DATA_KINDS` under its ``name``, the string stored in
saved configs (``{"kind": name, ...fields}``).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ..jsonable import JsonDataclass
from .augment import EmbeddingAugment, ImageAugment
from .embeddings import load_embeddings
from .images import load_images
from .pools import LabeledPool
from .sources import ClassSource, InstanceSource, MixtureSource, split_pool

if TYPE_CHECKING:  # pragma: no cover
    from ..config import TrainConfig

__all__ = ["DataKind", "MixtureData", "ImageData", "EmbeddingData", "DATA_KINDS", "data_kind", "data_kind_class",
           "data_kind_from_dict"]


class DataKind(JsonDataclass):
    """What one kind of data decides. Subclasses are frozen dataclasses whose fields say where
    the data come from and how training sets are drawn.

    :cvar name: the kind's name in saved configs (``{"kind": name, ...}``) and in ``--data``
        messages.
    :cvar encoder: the point encoder the network needs (``EnergyNetConfig.encoder``).
    :cvar is_mixture: the points are drawn from the CRP mixture of Eq. (1) in [1] itself, so the
        exact posterior (the fidelity panel, ``validation.exact``) applies.
    """

    name: ClassVar[str]
    encoder: ClassVar[str]
    is_mixture: ClassVar[bool] = False

    def to_dict(self) -> dict:
        return {"kind": self.name, **super().to_dict()}

    def check(self, config: "TrainConfig") -> None:
        """Refuse what this kind cannot train together with the rest of ``config``."""
        if config.net.encoder != self.encoder:
            raise ValueError(f"{self.name!r} data need the {self.encoder!r} encoder, got {config.net.encoder!r}")
        if config.monitor.panel_sets and not self.is_mixture:
            raise ValueError("panel_sets (exact-posterior panel) needs Gaussian-mixture data")

    def training_source(self, config: "TrainConfig", pool: LabeledPool | None = None, device=None):
        raise NotImplementedError

    def evaluation_source(self, config: "TrainConfig", pool: LabeledPool | None = None, alpha: float | None = None):
        raise NotImplementedError

    def describe(self, config: "TrainConfig", source) -> dict:
        """The test data of an evaluation report (its ``protocol.data``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class MixtureData(DataKind):
    """Sets drawn from the CRP Gaussian mixture of Eq. (1) in [1] (``TrainConfig.model`` in
    dimension ``TrainConfig.dim``); no file.

    :param fixed_k: if set, every training partition has exactly this many clusters (points
        assigned uniformly at random among them, resampled if a cluster is empty); the paper's
        Table 2 setting. ``None`` (default): CRP partitions.
    """

    name, encoder, is_mixture = "mog", "mlp", True
    fixed_k: int | None = None

    def __post_init__(self):
        if self.fixed_k is not None and (isinstance(self.fixed_k, bool) or not isinstance(self.fixed_k, int)
                                         or self.fixed_k < 1):
            raise ValueError(f"fixed_k must be a positive integer or None, got {self.fixed_k!r}")

    def check(self, config):
        super().check(config)
        if self.fixed_k is not None and self.fixed_k > config.model.n_min:
            raise ValueError(f"fixed_k must lie in [1, n_min={config.model.n_min}] or be None, got {self.fixed_k}")

    def _source(self, config, alpha):
        return MixtureSource(dataclasses.replace(config.model, alpha=alpha).mixture(config.dim), self.fixed_k)

    def training_source(self, config, pool=None, device=None):
        return self._source(config, config.model.alpha)

    def evaluation_source(self, config, pool=None, alpha=None):
        return self._source(config, config.model.alpha if alpha is None else alpha)

    def describe(self, config, source):
        m = config.model
        return {"alpha": m.alpha, "sigma_mu": m.sigma_mu, "sigma_x": m.sigma_x, "dim": config.dim}


@dataclass(frozen=True)
class _PoolData(DataKind):
    """Sets of real points from a labelled pool read from ``path`` and split by ``split``:
    instance discrimination (or, ``supervised``, distinct classes) on the training part, distinct
    classes of the held-out part for testing (Sec. 4.3, App. A.1 in [1]).

    :param path: the data file or directory, given by the caller (``--data``).
    :param str split: which part trains (:func:`~gfncp_pyro.data.sources.split_pool`):
        ``"index:A:B"``, ``"classes:K"``, ``"classes:half"`` or ``"all"``; the rest is held out
        for testing and never reaches training.
    :param bool supervised: train on real points of distinct classes (true labels) instead of
        instance discrimination (Sec. 4.3 in [1]).
    :param augment: the augmentations of instance discrimination (or their dict).
    """

    augment_type: ClassVar[type]
    shape_hint: ClassVar[str]
    path: str | None = None
    split: str = "all"
    supervised: bool = False

    def __post_init__(self):
        if self.path is not None:
            object.__setattr__(self, "path", str(self.path))
        if not isinstance(self.split, str):
            raise ValueError(f"split must be a string such as 'classes:half', got {self.split!r}")
        if not isinstance(self.supervised, bool):
            raise ValueError(f"supervised must be True or False, got {self.supervised!r}")
        augment = self.augment
        if isinstance(augment, dict):
            augment = self.augment_type.from_dict(augment)
        if not isinstance(augment, self.augment_type):
            raise ValueError(f"{self.name!r} data need augment={self.augment_type.__name__}(...), "
                             f"got {type(augment).__name__}")
        object.__setattr__(self, "augment", augment)

    def read(self, path) -> LabeledPool:
        raise NotImplementedError

    def load_pool(self) -> LabeledPool:
        if self.path is None:
            raise ValueError(f"the {self.name!r} data need a path: pass --data DIR_OR_FILE (config.data.path)")
        return self.read(self.path)

    def _part(self, config, pool, which: int) -> LabeledPool:
        part = split_pool(pool if pool is not None else self.load_pool(), self.split)[which]
        if tuple(part.point_shape) != tuple(config.net.point_shape):
            raise ValueError(f"{self.path} holds points of shape {tuple(part.point_shape)}, but the network "
                             f"expects {tuple(config.net.point_shape)}; {self.shape_hint}")
        return part

    def training_source(self, config, pool=None, device=None):
        train = self._part(config, pool, 0)
        if device is not None:
            train = LabeledPool(train.points.to(device), train.labels)
        source = ClassSource if self.supervised else InstanceSource
        return source(train, config.model.alpha, self.augment)

    def evaluation_source(self, config, pool=None, alpha=None):
        return ClassSource(self._part(config, pool, 1), config.model.alpha if alpha is None else alpha)

    def describe(self, config, source):
        return {"kind": self.name, "path": self.path, "split": self.split, "test": "held-out part",
                "alpha": getattr(source, "alpha", config.model.alpha)}


@dataclass(frozen=True)
class ImageData(_PoolData):
    """28x28 grey images (an IDX directory or ``.npz``), conv encoder, image augmentations."""

    name, encoder, augment_type = "images", "conv", ImageAugment
    shape_hint = "resize the images to 28x28"
    augment: ImageAugment = field(default_factory=ImageAugment)

    def read(self, path):
        return load_images(path)


@dataclass(frozen=True)
class EmbeddingData(_PoolData):
    """Feature vectors (``.npy``/``.npz``/safetensors), MLP encoder, embedding augmentations."""

    name, encoder, augment_type = "embeddings", "mlp", EmbeddingAugment
    shape_hint = "set --x-dim to the feature size"
    augment: EmbeddingAugment = field(default_factory=EmbeddingAugment)

    def read(self, path):
        return load_embeddings(path)


DATA_KINDS: dict[str, type[DataKind]] = {kind.name: kind for kind in (MixtureData, ImageData, EmbeddingData)}
"""The registered kinds of data by name; a new kind is one more entry."""


def data_kind_class(name: str) -> type[DataKind]:
    """The registered :class:`DataKind` subclass called ``name``; ``ValueError`` naming the kinds."""
    if name not in DATA_KINDS:
        raise ValueError(f"data must be one of {', '.join(repr(k) for k in DATA_KINDS)}, got {name!r}")
    return DATA_KINDS[name]


def data_kind(name: str, **fields) -> DataKind:
    """The :class:`DataKind` called ``name`` with ``fields`` (the rest at their defaults)."""
    return data_kind_class(name)(**fields)


def data_kind_from_dict(data: dict) -> DataKind:
    """Inverse of ``DataKind.to_dict``: ``{"kind": name, ...fields}``."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ValueError(f"a saved data kind is a dict with a 'kind' key, got {data!r}")
    fields = dict(data)
    return data_kind_class(fields.pop("kind")).from_dict(fields)

"""Kinds of data as objects: each owns its checks, encoder, point pool, and training and test sources.

``TrainConfig.data`` names a kind (``"mog"``, ``"images"``, ``"embeddings"``; the string is what
checkpoints store) and ``TrainConfig.kind`` is its object from :data:`DATA_KINDS`. Code that
depends on the kind of data asks the object instead of comparing strings. A new kind of data
(say, text embeddings with their own augmentation) is one subclass of :class:`DataKind` added to
:data:`DATA_KINDS` (and its name to ``config.Data``).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..models import CRPMixture
from .augment import EmbeddingAugment, ImageAugment
from .embeddings import load_embeddings
from .images import load_images
from .pools import LabeledPool
from .sources import ClassSource, InstanceSource, MixtureSource, split_pool

if TYPE_CHECKING:  # pragma: no cover
    from ..config import TrainConfig

__all__ = ["DataKind", "MixtureData", "ImageData", "EmbeddingData", "DATA_KINDS", "data_kind"]


class DataKind:
    """What one kind of data decides.

    :cvar name: the string stored in ``TrainConfig.data`` and in checkpoints.
    :cvar encoder: the point encoder the network needs (``EnergyNetConfig.encoder``).
    :cvar is_mixture: the points are drawn from the CRP mixture of Eq. (1) in [1] itself, so the
        exact posterior (the fidelity panel, ``validation.exact``) applies.
    """

    name: ClassVar[str]
    encoder: ClassVar[str]
    is_mixture: ClassVar[bool] = False

    def check(self, config: "TrainConfig") -> dict:
        """Refuse field combinations this kind cannot train; return normalised field values
        (e.g. ``{"augment": ImageAugment()}``) for the config to store."""
        if config.net.encoder != self.encoder:
            raise ValueError(f"{self.name!r} data need the {self.encoder!r} encoder, got {config.net.encoder!r}")
        if config.panel_sets and not self.is_mixture:
            raise ValueError("panel_sets (exact-posterior panel) needs Gaussian-mixture data")
        return {}

    def training_source(self, config: "TrainConfig", pool: LabeledPool | None = None, device=None):
        raise NotImplementedError

    def evaluation_source(self, config: "TrainConfig", pool: LabeledPool | None = None, alpha: float | None = None):
        raise NotImplementedError

    def describe(self, config: "TrainConfig", source) -> dict:
        """The test data of an evaluation report (its ``protocol.data``)."""
        raise NotImplementedError


class MixtureData(DataKind):
    """Sets drawn from the CRP Gaussian mixture of Eq. (1) in [1] (``TrainConfig.alpha``,
    ``sigma_mu``, ``sigma_x``, ``dim``, optionally exactly ``fixed_k`` clusters); no file."""

    name, encoder, is_mixture = "mog", "mlp", True

    def check(self, config):
        super().check(config)
        if config.augment is not None or config.supervised or config.data_path is not None:
            raise ValueError("augment, supervised and data_path only apply to image or embedding data")
        return {}

    def _source(self, config, alpha):
        return MixtureSource(CRPMixture(alpha, config.sigma_mu, config.sigma_x, config.dim), config.fixed_k)

    def training_source(self, config, pool=None, device=None):
        return self._source(config, config.alpha)

    def evaluation_source(self, config, pool=None, alpha=None):
        return self._source(config, config.alpha if alpha is None else alpha)

    def describe(self, config, source):
        return {"alpha": config.alpha, "sigma_mu": config.sigma_mu, "sigma_x": config.sigma_x, "dim": config.dim}


class _PoolData(DataKind):
    """Sets of real points from a labelled pool read from ``config.data_path`` and split by
    ``config.split``: instance discrimination (or, ``supervised``, distinct classes) on the
    training part, distinct classes of the held-out part for testing (Sec. 4.3, App. A.1 in [1])."""

    augment_type: ClassVar[type]
    shape_hint: ClassVar[str]

    def check(self, config):
        super().check(config)
        if config.fixed_k is not None:
            raise ValueError("fixed_k applies to Gaussian mixtures only")
        augment = config.augment if config.augment is not None else self.augment_type()
        if isinstance(augment, dict):
            augment = self.augment_type.from_dict(augment)
        if not isinstance(augment, self.augment_type):
            raise ValueError(f"{self.name!r} data need augment={self.augment_type.__name__}(...), "
                             f"got {type(augment).__name__}")
        changes = {"augment": augment}
        if config.data_path is not None:
            changes["data_path"] = str(config.data_path)
        return changes

    def read(self, path) -> LabeledPool:
        raise NotImplementedError

    def load_pool(self, config) -> LabeledPool:
        if config.data_path is None:
            raise ValueError(f"the {self.name!r} data need a path: pass --data DIR_OR_FILE (config.data_path)")
        return self.read(config.data_path)

    def _part(self, config, pool, which: int) -> LabeledPool:
        part = split_pool(pool if pool is not None else self.load_pool(config), config.split)[which]
        if tuple(part.point_shape) != tuple(config.net.point_shape):
            raise ValueError(f"{config.data_path} holds points of shape {tuple(part.point_shape)}, but the network "
                             f"expects {tuple(config.net.point_shape)}; {self.shape_hint}")
        return part

    def training_source(self, config, pool=None, device=None):
        train = self._part(config, pool, 0)
        if device is not None:
            train = LabeledPool(train.points.to(device), train.labels)
        source = ClassSource if config.supervised else InstanceSource
        return source(train, config.alpha, config.augment)

    def evaluation_source(self, config, pool=None, alpha=None):
        return ClassSource(self._part(config, pool, 1), config.alpha if alpha is None else alpha)

    def describe(self, config, source):
        return {"kind": self.name, "path": config.data_path, "split": config.split, "test": "held-out part",
                "alpha": getattr(source, "alpha", config.alpha)}


class ImageData(_PoolData):
    """28x28 grey images (an IDX directory or ``.npz``), conv encoder, image augmentations."""

    name, encoder, augment_type = "images", "conv", ImageAugment
    shape_hint = "resize the images to 28x28"

    def read(self, path):
        return load_images(path)


class EmbeddingData(_PoolData):
    """Feature vectors (``.npy``/``.npz``/safetensors), MLP encoder, embedding augmentations."""

    name, encoder, augment_type = "embeddings", "mlp", EmbeddingAugment
    shape_hint = "set --x-dim to the feature size"

    def read(self, path):
        return load_embeddings(path)


DATA_KINDS: dict[str, DataKind] = {kind.name: kind for kind in (MixtureData(), ImageData(), EmbeddingData())}


def data_kind(name: str) -> DataKind:
    """The :class:`DataKind` called ``name``."""
    if name not in DATA_KINDS:
        raise ValueError(f"data must be one of {', '.join(repr(k) for k in DATA_KINDS)}, got {name!r}")
    return DATA_KINDS[name]

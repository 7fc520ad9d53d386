"""Kinds of data as objects (gfncp_pyro.data.kinds): each decides its checks, encoder and sources."""

import dataclasses
import json

import pytest
import torch

from gfncp_pyro.config import TrainConfig, preset
from gfncp_pyro.data import kinds
from gfncp_pyro.data.augment import EmbeddingAugment, ImageAugment
from gfncp_pyro.data.pools import LabeledPool
from gfncp_pyro.data.sources import ClassSource, InstanceSource, MixtureSource, evaluation_source, training_source
from gfncp_pyro.nn import EnergyNetConfig
from gfncp_pyro.sections import ModelSpec


def _pool(dim=4, classes=6, per_class=5):
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return LabeledPool(torch.randn(labels.shape[0], dim, generator=gen), labels)


def test_every_config_string_has_its_kind_object():
    for name, kind in kinds.DATA_KINDS.items():
        assert kind.name == name and type(kinds.data_kind(name)) is kind
        assert kinds.data_kind_from_dict(kinds.data_kind(name).to_dict()) == kinds.data_kind(name)
    assert isinstance(preset("mog2d-small").data, kinds.MixtureData)
    assert isinstance(preset("mnist-cpu").data, kinds.ImageData)
    with pytest.raises(ValueError, match="data must be one of 'mog', 'images', 'embeddings'"):
        kinds.data_kind("text")


def test_the_kinds_normalise_and_refuse_fields():
    config = TrainConfig(data=kinds.EmbeddingData(), net=EnergyNetConfig(x_dim=4))
    assert config.data.augment == EmbeddingAugment()
    assert preset("mnist-cpu").data.augment == ImageAugment()
    assert kinds.ImageData(augment={"rotation": 5.0}).augment == ImageAugment(rotation=5.0)
    with pytest.raises(ValueError, match="need augment=ImageAugment"):
        kinds.ImageData(augment=EmbeddingAugment())
    with pytest.raises(ValueError, match="need the 'conv' encoder"):
        TrainConfig(data=kinds.ImageData())
    with pytest.raises(ValueError, match="only apply to image or embedding data"):
        TrainConfig().replace(supervised=True)
    emb = TrainConfig(data=kinds.EmbeddingData(), net=EnergyNetConfig(x_dim=4), model=ModelSpec(n_min=5, n_max=9))
    with pytest.raises(ValueError, match="fixed_k applies to Gaussian mixtures only"):
        emb.replace(fixed_k=2)
    with pytest.raises(ValueError, match="needs Gaussian-mixture data"):
        emb.replace(panel_sets=2)


def test_sources_come_from_the_kind():
    mog = preset("mog2d-small")
    assert isinstance(training_source(mog), MixtureSource)
    assert evaluation_source(mog, alpha=3.0).mixture.alpha == 3.0
    emb = TrainConfig(data=kinds.EmbeddingData(split="classes:3"), net=EnergyNetConfig(x_dim=4),
                      model=ModelSpec(n_min=2, n_max=4))
    assert isinstance(training_source(emb, pool=_pool()), InstanceSource)
    assert isinstance(training_source(emb.replace(supervised=True), pool=_pool()), ClassSource)
    test = evaluation_source(emb, pool=_pool())
    assert set(test.pool.labels.tolist()) == {3, 4, 5}  # the held-out classes only
    with pytest.raises(ValueError, match="set --x-dim to the feature size"):
        training_source(emb, pool=_pool(dim=5))
    with pytest.raises(ValueError, match="need a path"):
        training_source(emb)
    assert emb.data.describe(emb, test)["kind"] == "embeddings"
    assert mog.data.describe(mog, None) == {"alpha": 1.0, "sigma_mu": 5.0, "sigma_x": 1.0, "dim": 2}


def test_a_new_kind_is_one_class(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Doubled(kinds.EmbeddingData):
        """Embeddings read twice as large (a stand-in for a new kind with its own reader)."""

        name = "doubled"

        def read(self, path):
            pool = _pool()
            return LabeledPool(2 * pool.points, pool.labels)

    monkeypatch.setitem(kinds.DATA_KINDS, "doubled", Doubled)
    config = TrainConfig(net=EnergyNetConfig(x_dim=4), model=ModelSpec(n_min=2, n_max=4)).replace(
        data="doubled", data_path="unused", split="classes:3")
    source = training_source(config)
    assert torch.equal(source.pool.points, 2 * _pool().points[:15])
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config

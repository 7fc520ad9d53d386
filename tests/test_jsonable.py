"""The one JSON round trip of the configuration dataclasses (gfncp_pyro.jsonable)."""

import json

import pytest

from gfncp_pyro.config import PRESETS, TrainConfig
from gfncp_pyro.data.augment import EmbeddingAugment, ImageAugment
from gfncp_pyro.nn import EnergyNetConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name):
    config = PRESETS[name]
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


@pytest.mark.parametrize("cls", [TrainConfig, EnergyNetConfig, ImageAugment, EmbeddingAugment])
def test_unknown_keys_are_refused_by_name(cls):
    with pytest.raises(ValueError, match=rf"unknown {cls.__name__} fields .*'nope'"):
        cls.from_dict({"nope": 1})


def test_pairs_become_lists_and_come_back_as_tuples():
    augment = ImageAugment()
    data = augment.to_dict()
    assert all(not isinstance(v, tuple) for v in data.values())
    assert ImageAugment.from_dict(data) == augment


def test_a_config_without_objective_fields_reads_as_the_legacy_objective():
    data = PRESETS["mog2d-small"].to_dict()
    for key in ("balance", "gauge", "mc_weight", "mc_warmup", "mc_ramp", "balance_samples", "detach_reward"):
        data.pop(key)
    data.update(flow="paper", reward="cd")
    old = TrainConfig.from_dict(data)
    assert (old.balance, old.gauge, old.mc_weight) == ("flow", "final", 1.0)


def test_allowed_values_come_from_the_literals():
    from typing import get_args

    from gfncp_pyro.config import Flow, Objective, Reward, _literal_fields

    fields = _literal_fields()
    assert fields["flow"] == get_args(Flow) and fields["objective"] == get_args(Objective)
    assert fields["reward"] == get_args(Reward) and "data" not in fields
    for name, allowed in fields.items():
        with pytest.raises(ValueError, match=f"{name} must be one of"):
            TrainConfig(**{name: "not-a-value"})

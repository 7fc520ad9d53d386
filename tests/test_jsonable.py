"""The one JSON round trip of the configuration dataclasses (gfncp_pyro.jsonable)."""

import dataclasses
import json
from pathlib import Path

import pytest

from gfncp_pyro.config import PRESETS, TrainConfig
from gfncp_pyro.data.augment import EmbeddingAugment, ImageAugment
from gfncp_pyro.jsonable import literal_fields
from gfncp_pyro.nn import EnergyNetConfig
from gfncp_pyro.objectives import GFNCPObjective
from gfncp_pyro.sections import ModelSpec, MonitorConfig, OptimConfig, RuntimeConfig

V1_CONFIGS = Path(__file__).parent / "data" / "config_v1.json"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name):
    config = PRESETS[name]
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


@pytest.mark.parametrize("cls", [TrainConfig, EnergyNetConfig, ImageAugment, EmbeddingAugment, ModelSpec,
                                 OptimConfig, MonitorConfig, RuntimeConfig])
def test_unknown_keys_are_refused_by_name(cls):
    with pytest.raises(ValueError, match=rf"unknown {cls.__name__} fields .*'nope'"):
        cls.from_dict({"nope": 1})


def test_unknown_keys_of_a_version_2_config_are_refused_by_name():
    data = PRESETS["mog2d-small"].to_dict()
    data["optim"]["nope"] = 1
    with pytest.raises(ValueError, match=r"unknown OptimConfig fields .*'nope'"):
        TrainConfig.from_dict(data)
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields .*'nope'"):
        TrainConfig.from_dict({**PRESETS["mog2d-small"].to_dict(), "nope": 1})


def test_pairs_become_lists_and_come_back_as_tuples():
    augment = ImageAugment()
    data = augment.to_dict()
    assert all(not isinstance(v, tuple) for v in data.values())
    assert ImageAugment.from_dict(data) == augment


def test_a_config_without_objective_fields_reads_as_the_legacy_objective():
    data = json.loads(V1_CONFIGS.read_text())["mog2d-small"]
    for key in ("balance", "gauge", "mc_weight", "mc_warmup", "mc_ramp", "balance_samples", "detach_reward"):
        data.pop(key)
    data.update(flow="paper", reward="cd")
    old = TrainConfig.from_dict(data).objective
    assert (old.balance, old.gauge, old.mc_weight, old.mc_warmup) == ("flow", "final", 1.0, 0)


@pytest.mark.parametrize("cls", [GFNCPObjective, MonitorConfig])
def test_allowed_values_come_from_the_literals(cls):
    from typing import get_args, get_type_hints

    fields = literal_fields(cls)
    hints = get_type_hints(cls)
    assert fields and all(fields[name] == get_args(hints[name]) for name in fields)
    for name, allowed in fields.items():
        assert getattr(cls(), name) in allowed
        with pytest.raises(ValueError, match=f"{name} must be one of"):
            dataclasses.replace(cls(), **{name: "not-a-value"})
    with pytest.raises(ValueError, match="flow must be one of"):
        TrainConfig().replace(flow="not-a-value")

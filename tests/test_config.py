"""The nested training configuration (gfncp_pyro.config): sections, flat names, the versioned reader."""

import dataclasses
import json
from pathlib import Path

import pytest

from gfncp_pyro.config import CONFIG_VERSION, DEFAULT_OBJECTIVE, PAPER_OBJECTIVE, PRESETS, TrainConfig, preset
from gfncp_pyro.data.augment import ImageAugment
from gfncp_pyro.data.kinds import EmbeddingData, ImageData, MixtureData
from gfncp_pyro.nn import EnergyNetConfig
from gfncp_pyro.objectives import GFNCPObjective, NCPObjective
from gfncp_pyro.pretrained import PRETRAINED_DIR
from gfncp_pyro.sections import ModelSpec, MonitorConfig, OptimConfig, RuntimeConfig

V1_CONFIGS = json.loads((Path(__file__).parent / "data" / "config_v1.json").read_text())
"""Flat (version-1) dicts written by gfncp-pyro before the sections existed (2026-12-02): every
preset, the NCP variants of two, and four with non-default data and runtime fields."""


def _jsonable(value):
    return json.loads(json.dumps(value))


def test_a_config_is_made_of_typed_sections():
    config = preset("mnist-cpu")
    assert isinstance(config.model, ModelSpec) and isinstance(config.optim, OptimConfig)
    assert isinstance(config.monitor, MonitorConfig) and isinstance(config.runtime, RuntimeConfig)
    assert isinstance(config.data, ImageData) and config.data.augment == ImageAugment()
    assert isinstance(config.objective, GFNCPObjective) and config.objective.mc_steps == 16
    assert config.model.alpha == 1.0 and config.optim.batch_size == 16 and config.monitor.val_sets == 64
    assert TrainConfig().objective == DEFAULT_OBJECTIVE == GFNCPObjective()
    # the default pins the energies' free per-step level (without it 3 of 4 runs diverged)
    assert (DEFAULT_OBJECTIVE.gauge, DEFAULT_OBJECTIVE.delta) == ("normalizer", 1e-4)
    assert isinstance(preset("mog2d-small", objective="ncp").objective, NCPObjective)


@pytest.mark.parametrize("name", sorted(V1_CONFIGS))
def test_version_1_dicts_read_to_the_same_settings(name):
    old = V1_CONFIGS[name]
    config = TrainConfig.from_dict(old)
    flat = _jsonable(config.flat())
    for key, value in old.items():
        if key == "net":
            assert {k: flat[f"net_{k}"] for k in value} == value
        elif old.get("objective") == "ncp" and key != "mc_steps" and key in {
                f.name for f in dataclasses.fields(GFNCPObjective)}:  # GFNCP fields an NCP run stored: dropped
            assert key not in flat or flat[key] == getattr(NCPObjective(), key), key
        elif key in flat:
            assert flat[key] == value, key
        else:  # fields of another kind of data, at their unused values
            assert value in (None, False, "all"), key
    if name in PRESETS:  # the preset as it was then: the objective default gained the gauge on 2026-12-03
        then = PRESETS[name]
        if then.objective.name == "gfncp" and then.objective.mc_steps is None:
            then = then.replace(gauge="none", delta=0.0)
        assert config == then
    assert TrainConfig.from_dict(_jsonable(config.to_dict())) == config


def test_version_2_is_what_is_written():
    data = preset("mnist-cpu").to_dict()
    assert data["version"] == CONFIG_VERSION == 2
    assert data["data"]["kind"] == "images" and data["objective"]["name"] == "gfncp"
    assert set(data) == {"version", "preset", "seed", "model", "data", "net", "objective", "optim", "monitor",
                         "runtime"}
    with pytest.raises(ValueError, match="version 3.*upgrade gfncp-pyro"):
        TrainConfig.from_dict({**data, "version": 3})


@pytest.mark.parametrize("path", sorted(PRETRAINED_DIR.glob("*.pt")), ids=lambda p: p.name)
def test_shipped_checkpoints_still_load(path):
    from gfncp_pyro.checkpoint import load_checkpoint, load_model

    state = load_checkpoint(path)
    # files shipped up to 2026-12-02 were written as version 1 (flat), later ones as version 2
    assert state["config"].get("version", 1) in (1, CONFIG_VERSION)
    net, config = load_model(path)
    assert TrainConfig.from_dict(_jsonable(config.to_dict())) == config
    assert config.net == net.config and config.data == MixtureData()
    assert config.objective.name == path.stem.split("-")[-1].split("_")[0]


def test_flat_names_reach_their_sections():
    config = preset("mog2d-small", lr=1e-3, alpha=2.0, panel_n=6, threads=1, flow="paper", net_h_dim=64)
    assert config.optim.lr == 1e-3 and config.model.alpha == 2.0 and config.monitor.panel_n == 6
    assert config.runtime.threads == 1 and config.objective.flow == "paper" and config.net.h_dim == 64
    assert config.flat()["lr"] == 1e-3 and config.flat()["net_h_dim"] == 64
    same = config.replace(optim=dataclasses.replace(config.optim, lr=5e-4))
    assert same.optim.lr == 5e-4 and same.model == config.model
    with pytest.raises(ValueError, match="unknown TrainConfig setting 'learning_rate'"):
        config.replace(learning_rate=1.0)


def test_switching_the_objective_or_the_data_by_name():
    cpu = preset("mog2d-cpu")
    ncp = cpu.replace(objective="ncp")
    assert ncp.objective == NCPObjective(mc_steps=32)  # keeps the sampled steps
    assert ncp.replace(objective="gfncp").objective == dataclasses.replace(PAPER_OBJECTIVE, mc_steps=32)
    assert preset("mog2d-small", objective="ncp").replace(objective="gfncp").objective == DEFAULT_OBJECTIVE
    with pytest.raises(ValueError, match="beta do\\(es\\) not apply to the ncp objective"):
        ncp.replace(beta=0.5)
    assert cpu.replace(objective=PAPER_OBJECTIVE).objective.mc_steps is None
    assert cpu.replace(objective=PAPER_OBJECTIVE, mc_steps=8).objective.mc_steps == 8
    emb = TrainConfig(net=EnergyNetConfig(x_dim=4)).replace(data="embeddings", data_path="f.npy", split="classes:3")
    assert emb.data == EmbeddingData(path="f.npy", split="classes:3")
    assert emb.flat()["data_path"] == "f.npy"
    with pytest.raises(ValueError, match="data must be one of 'mog', 'images', 'embeddings'"):
        emb.replace(data="text")


def test_sections_check_their_fields():
    for bad, match in [({"n_min": 5, "n_max": 4}, "n_max must be an integer >= n_min=5"),
                       ({"alpha": -1.0}, "alpha must be a positive finite number"),
                       ({"lr": float("nan")}, "lr must be a positive finite number"),
                       ({"panel_n": 11}, "panel_n must be an integer in"),
                       ({"select_by": "panel_tv", "panel_sets": 0}, "needs panel_sets > 0"),
                       ({"beta": 1.5}, "beta must lie in"),
                       ({"mc_steps": 0}, "mc_steps must be a positive integer or None"),
                       ({"mc_warmup": -1}, "mc_warmup must be an integer >= 0"),
                       ({"delta": -0.1}, "delta must be a non-negative"),
                       ({"threads": 0}, "threads must be a positive integer"),
                       ({"seed": -1}, "seed must be an integer >= 0")]:
        with pytest.raises(ValueError, match=match):
            preset("mog2d-small").replace(**bad)
    with pytest.raises(ValueError, match="TrainConfig.model must be a ModelSpec"):
        TrainConfig(model=3)
    with pytest.raises(ValueError, match="fixed_k must lie in \\[1, n_min=1\\]"):
        preset("mog2d-small", fixed_k=2)


def test_the_runtime_threads_do_not_block_a_resume(tmp_path):
    from gfncp_pyro.train import Trainer

    config = preset("mog2d-small", n_max=4, batch_size=2, iterations=2, val_sets=2, val_every=1, panel_sets=0,
                    select_by="loss", net_h_dim=8, net_g_dim=8, net_hidden=8, device="cpu")
    Trainer(config, tmp_path, progress=False).fit(until=1)
    again = Trainer(config.replace(threads=1), tmp_path, resume=True, progress=False)
    assert again.step == 1
    from gfncp_pyro.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="another config .*'lr': \\(0.0005, 0.001\\)"):
        Trainer(config.replace(lr=1e-3), tmp_path, resume=True, progress=False)

"""Warm starts (``OptimConfig.init``, ``gfncp train --init``): the run starts from a checkpoint's
network weights with a fresh optimiser and schedule, records where they came from, and refuses a
network of other sizes."""

import hashlib

import pytest
import torch

from gfncp_pyro.checkpoint import CheckpointError, load_checkpoint
from gfncp_pyro.config import preset
from gfncp_pyro.loading import shipped_path
from gfncp_pyro.nn import EnergyNetConfig
from gfncp_pyro.train import Trainer

SHIPPED = "pretrained:mog2d-small:gfncp"


def _config(**changes):
    return preset("mog2d-small", iterations=2, val_every=1, val_sets=8, panel_sets=0, select_by="loss", n_max=8, batch_size=4,
                  device="cpu", **changes)


def test_warm_start_loads_the_weights_with_a_fresh_optimiser_and_records_the_source(tmp_path, capsys):
    trainer = Trainer(_config(init=SHIPPED, mc_weight=0.3), tmp_path / "run", progress=False)
    shipped = load_checkpoint(shipped_path("mog2d-small", "gfncp"))
    for name, value in trainer.net.state_dict().items():
        assert torch.equal(value, shipped["model"][name]), name
    assert trainer.step == 0 and not trainer.optimizer.state
    fresh = Trainer(_config(), tmp_path / "scratch", progress=False)
    assert not torch.equal(fresh.net.state_dict()["g.0.weight"], shipped["model"]["g.0.weight"])
    trainer.fit()
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    digest = hashlib.sha256(shipped_path("mog2d-small", "gfncp").read_bytes()).hexdigest()
    assert saved["init"]["sha256"] == digest and saved["init"]["step"] == shipped["step"] > 0
    assert saved["config"]["optim"]["init"] == SHIPPED
    from gfncp_pyro.cli import main

    assert main(["info", str(tmp_path / "run" / "last.pt")]) == 0
    assert f"warm start from {shipped_path('mog2d-small', 'gfncp')} (step {shipped['step']}" in capsys.readouterr().out


def test_resume_keeps_its_own_weights_and_the_recorded_source(tmp_path):
    config = _config(init=SHIPPED)
    Trainer(config, tmp_path, progress=False).fit(until=1)
    at_one = load_checkpoint(tmp_path / "last.pt")
    resumed = Trainer(config, tmp_path, resume=True, progress=False)
    assert resumed.step == 1
    for name, value in resumed.net.state_dict().items():
        assert torch.equal(value, at_one["model"][name]), name  # not re-initialised from the checkpoint
    assert resumed.init == at_one["init"]


def test_a_network_of_other_sizes_is_refused_with_the_difference(tmp_path):
    with pytest.raises(CheckpointError, match=r"'hidden': \(128, 64\)"):
        Trainer(_config(init=SHIPPED).replace(net=EnergyNetConfig(hidden=64)), tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(_config(init=str(tmp_path / "missing.pt")), tmp_path / "run2", progress=False)
    with pytest.raises(ValueError, match="init must be"):
        _config(init="")


def test_cli_init_flag_one_line_errors(tmp_path, capsys):
    from gfncp_pyro.cli import main

    assert main(["train", "--out", str(tmp_path / "a"), "--init", str(tmp_path / "nope.pt"), "--iterations", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()

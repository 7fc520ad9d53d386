"""The examples run end to end (tiny settings, a tiny checkpoint); slow tests check their claims."""

import importlib.util
import math
from pathlib import Path

import pyro
import pytest
import torch

import reference as ref
from gfncp_pyro.checkpoint import save_checkpoint
from gfncp_pyro.config import TrainConfig
from gfncp_pyro.sections import ModelSpec
from gfncp_pyro.pretrained import available

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small random network saved as a training checkpoint of the mog2d-small model."""
    net = ref.make_net(0, torch.float32)
    config = TrainConfig(net=net.config, model=ModelSpec(alpha=1.0, sigma_mu=5.0, sigma_x=1.0, n_min=1, n_max=8))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, {"config": config.to_dict(), "model": net.state_dict()})
    return str(path)


@pytest.fixture(autouse=True)
def clean_param_store():
    yield
    pyro.clear_param_store()


def test_quickstart(checkpoint, tmp_path, capsys):
    out = tmp_path / "quickstart.png"
    report = load("quickstart").main(["--checkpoint", checkpoint, "--points", "40", "--samples", "30",
                                      "--out", str(out)])
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    assert report["clusters_best"] >= 1 and -1 <= report["ari_best"] <= 1
    assert all(math.isfinite(report[k]) for k in ("seconds", "log_evidence", "ess", "log_joint_best"))
    assert "figure written to" in capsys.readouterr().out


def test_pyro_importance(checkpoint, capsys):
    result = load("pyro_importance").main(["--checkpoint", checkpoint, "--datasets", "2", "--points", "5",
                                           "--samples", "40", "--mh-samples", "100"])
    assert len(result["rows"]) == 2
    for row in result["rows"]:
        assert all(0 <= row[k] <= 1 for k in ("tv_pyro", "tv_vectorised", "tv_mh", "tv_guide", "acceptance_mh"))
        assert row["err_pyro"] >= 0 and row["err_vectorised"] >= 0 and 1 <= row["ess_pyro"] <= 40
    printed = capsys.readouterr().out
    assert "pyro.infer.Importance (40 samples)" in printed and "independence MH (100 states)" in printed


def test_pyro_svi(capsys):
    result = load("pyro_svi").main(["--points", "5", "--svi-steps", "3", "--csis-steps", "3", "--held-out", "1"])
    assert result["shapes"] == {"c": (100, 1, 5), "mu": (100, 5, 2), "x": (100, 5, 2)}
    assert result["elbo_before"] <= result["log_evidence"] and result["elbo_after"] <= result["log_evidence"]
    assert result["kl_before"] >= 0 and result["kl_after"] >= 0
    assert "Predictive" in capsys.readouterr().out


def test_missing_pretrained_model_is_explained(monkeypatch):
    if "mog2d-small-gfncp" in available():
        pytest.skip("the pretrained model is installed")
    with pytest.raises(ValueError, match="available"):
        load("quickstart").main(["--points", "10"])


@pytest.mark.slow
def test_svi_raises_the_elbo_and_csis_lowers_the_kl():
    result = load("pyro_svi").main(["--svi-steps", "200", "--csis-steps", "300", "--held-out", "3"])
    assert result["elbo_after"] > result["elbo_before"] + 0.5
    assert result["kl_after"] < 0.8 * result["kl_before"]


@pytest.mark.slow
def test_pretrained_guide_meets_the_issue_targets():
    if "mog2d-small-gfncp" not in available():
        pytest.skip("the pretrained mog2d-small GFNCP model is not installed")
    median = load("pyro_importance").main(["--datasets", "20", "--mh-samples", "10000"])["median"]
    assert median["err_pyro"] < 0.05 and median["tv_pyro"] < 0.05 and median["tv_mh"] < 0.05

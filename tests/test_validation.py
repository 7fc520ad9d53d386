"""validation.exact: the comparison maths against slow computations, and the command's errors."""

import json
import math

import numpy as np
import pytest
import torch

from gfncp_pyro import policy
from gfncp_pyro.checkpoint import save_checkpoint
from gfncp_pyro.config import preset
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.nn import EnergyNet
from validation.compare import compare_one, divergences, policy_log_q
from validation.exact import main

SMALL = dict(net_h_dim=8, net_g_dim=16, net_hidden=16)


def _net(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return EnergyNet(preset("mog2d-small", **SMALL).net).to(dtype)


def _checkpoint(path, **changes):
    config = preset("mog2d-small", **SMALL, **changes)
    torch.manual_seed(0)
    net = EnergyNet(config.net)
    save_checkpoint(path, {"config": config.to_dict(), "model": net.state_dict()})
    return str(path)


@pytest.mark.parametrize("n, online", [(1, False), (3, False), (6, False), (5, True)])
def test_policy_log_q_equals_teacher_forcing_for_every_partition_and_order(n, online):
    torch.manual_seed(0)
    net = EnergyNet(preset("mog2d-small", **SMALL, net_online=online).net).double()
    mix = CRPMixture(1.0, 5.0, 1.0, 2)
    x = mix.sample_batch(torch.tensor([n]), torch.Generator().manual_seed(n), dtype=torch.float64).x[0]
    exact = exact_posterior(x, 1.0, likelihood=mix.likelihood)
    orders = torch.stack([torch.arange(n), torch.randperm(n, generator=torch.Generator().manual_seed(1))])
    fast = policy_log_q(net, x, exact.labels, orders)
    p = exact.labels.shape[0]
    slow = torch.stack([policy.log_prob(net, x.expand(p, -1, -1), exact.labels, orders=o.expand(p, -1)) for o in orders])
    assert torch.allclose(fast, slow.detach(), atol=1e-9, rtol=0)
    assert torch.allclose(fast.exp().sum(1), torch.ones(2, dtype=torch.float64), atol=1e-9)


def test_divergences_against_loops():
    gen = torch.Generator().manual_seed(0)
    log_p = torch.log_softmax(torch.randn(20, generator=gen, dtype=torch.float64), 0)
    log_q = torch.log_softmax(torch.randn(20, generator=gen, dtype=torch.float64), 0)
    p, q = log_p.exp().tolist(), log_q.exp().tolist()
    d = divergences(log_p, log_q)
    assert abs(d["tv"] - 0.5 * sum(abs(a - b) for a, b in zip(p, q))) < 1e-12
    assert abs(d["kl_pq"] - sum(a * math.log(a / b) for a, b in zip(p, q))) < 1e-12
    assert abs(d["kl_qp"] - sum(b * math.log(b / a) for a, b in zip(p, q))) < 1e-12
    m = [(a + b) / 2 for a, b in zip(p, q)]
    js = 0.5 * sum(a * math.log(a / c) for a, c in zip(p, m)) + 0.5 * sum(b * math.log(b / c) for b, c in zip(q, m))
    assert abs(d["js"] - js) < 1e-12
    assert divergences(log_p, log_p)["tv"] == 0.0


def test_compare_one_with_the_exact_posterior_as_q():
    """Importance sampling with a perfect proposal has no error; metrics are in range."""
    net = _net()
    mix = CRPMixture(1.0, 5.0, 1.0, 2)
    batch = mix.sample_batch(torch.tensor([5]), torch.Generator().manual_seed(3), dtype=torch.float64)
    exact = exact_posterior(batch.x[0], 1.0, likelihood=mix.likelihood)
    out = compare_one(net, batch.x[0], exact, batch.labels[0], torch.stack([torch.randperm(5)]), 200, 20,
                      torch.Generator().manual_seed(0))
    assert 0 <= out["tv"] <= 1 and 0 <= out["is_tv"] <= 1 and 1 <= out["is_ess"] <= 200
    assert abs(out["q_mass_identity"] - 1) < 1e-9
    assert out["log_q"].shape == exact.log_posterior.shape


def test_command_writes_report_and_figures(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "m.pt")
    report = tmp_path / "r.json"
    code = main(["--N", "5", "--datasets", "2", "--gfncp", ckpt, "--ncp", ckpt, "--orders", "2", "--importance", "50",
                 "--sdpp-orders", "10", "--out", str(tmp_path / "fig"), "--json", str(report), "--no-progress"])
    assert code == 0
    data = json.loads(report.read_text())
    assert data["N"] == 5 and data["datasets"] == 2 and set(data["models"]) == {"GFNCP", "NCP"}
    assert {"tv", "kl_pq", "sdpp_map", "is_log_evidence_error"} <= set(data["models"]["GFNCP"])
    assert (tmp_path / "fig" / "top_partitions_N5.png").stat().st_size > 10_000
    assert (tmp_path / "fig" / "ecdf_N5.png").stat().st_size > 10_000
    assert "tv" in capsys.readouterr().out


def test_command_dp_path(tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pt")
    report = tmp_path / "r.json"
    assert main(["--N", "13", "--dp", "--datasets", "1", "--gfncp", ckpt, "--ncp", ckpt, "--importance", "50",
                 "--sdpp-orders", "5", "--out", str(tmp_path), "--json", str(report), "--no-progress"]) == 0
    data = json.loads(report.read_text())
    assert data["method"] == "subset DP" and "coclustering_mae" in data["models"]["NCP"]


def test_command_bad_input(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "m.pt")
    other_dim = _checkpoint(tmp_path / "d3.pt", net_x_dim=3)
    other_alpha = _checkpoint(tmp_path / "a.pt", alpha=3.0)
    common = ["--datasets", "1", "--no-progress", "--out", str(tmp_path)]
    assert main(["--N", "0", "--no-models"] + common) == 2
    assert main(["--N", "13", "--no-models"] + common) == 2
    assert "--dp" in capsys.readouterr().err
    assert main(["--N", "4", "--gfncp", other_dim, "--ncp", ckpt] + common) == 2
    assert "dimension 3" in capsys.readouterr().err
    assert main(["--N", "4", "--gfncp", other_alpha, "--ncp", ckpt] + common) == 2
    assert "--force" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((4, 3)))
    assert main(["--data", str(tmp_path / "bad.npy"), "--no-models"] + common) == 2
    assert "shape (N, 2)" in capsys.readouterr().err
    assert main(["--N", "4", "--gfncp", str(tmp_path / "missing.pt"), "--ncp", ckpt] + common) == 2


def test_partition_keys_identify_partitions_whatever_the_labelling_and_order():
    from gfncp_pyro.tabulate import _partition_keys, partition_codes
    from gfncp_pyro.partitions import canonicalize, enumerate_partitions

    n = 6
    labels = enumerate_partitions(n)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=gen)
    relabel = torch.randperm(n, generator=gen)
    keys = _partition_keys(labels, torch.arange(n), n)
    # the same partitions, read along another order and with permuted label names
    along = relabel[labels[:, order]]
    assert torch.equal(_partition_keys(along, order, n), keys)
    # keys are distinct exactly when the partitions are (slow check through canonical codes)
    assert keys.unique().numel() == labels.shape[0]
    assert torch.equal(partition_codes(canonicalize(along[:, torch.argsort(order)])), partition_codes(labels))


def test_command_refuses_an_image_checkpoint(tmp_path, capsys):
    config = preset("mnist-cpu", data_path="unused", net_h_dim=8, net_g_dim=16, net_hidden=8)
    torch.manual_seed(0)
    image_model = tmp_path / "img.pt"
    save_checkpoint(image_model, {"config": config.to_dict(), "model": EnergyNet(config.net).state_dict()})
    argv = ["--N", "4", "--datasets", "1", "--no-progress", "--out", str(tmp_path), "--gfncp", str(image_model),
            "--ncp", _checkpoint(tmp_path / "m.pt")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "images" in err and len(err.strip().splitlines()) == 1

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


@pytest.mark.parametrize("where", ["missing-parent", "parent-is-file", "is-directory", "unwritable"])
def test_unwritable_json_fails_in_one_line_before_any_evaluation(tmp_path, capsys, monkeypatch, where):
    """validation.exact checks --json (and --out) before the data, the exact posteriors and the
    models: nothing is computed, exit 2, one line, no traceback, nothing written."""
    from validation import exact, report

    def never(*args, **kwargs):
        raise AssertionError("the evaluation ran before the output path was checked")

    monkeypatch.setattr(exact, "validate", never)
    monkeypatch.setattr(report, "exact_posterior", never)
    monkeypatch.setattr(report, "subset_posterior", never)
    monkeypatch.setattr(report, "_load", never)
    (tmp_path / "a_file").write_text("x")
    json_path = {"missing-parent": tmp_path / "no" / "r.json", "parent-is-file": tmp_path / "a_file" / "r.json",
                 "is-directory": tmp_path, "unwritable": "/proc/gfncp-r.json"}[where]
    argv = ["--N", "4", "--datasets", "1", "--no-progress", "--out", str(tmp_path / "fig"), "--json", str(json_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --json:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "no").exists() and not list(tmp_path.rglob("*.tmp"))


def test_the_report_is_written_atomically(tmp_path, monkeypatch):
    """An interruption while writing leaves the previous report in place and no temporary file."""
    from gfncp_pyro import outputs

    report_path = tmp_path / "r.json"
    report_path.write_text('{"previous": true}')
    original = outputs.os.replace

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.os, "replace", interrupted)
    assert main(["--N", "3", "--datasets", "1", "--no-models", "--no-progress", "--out", str(tmp_path / "fig"),
                 "--json", str(report_path)]) == 130  # Ctrl-C while the report is being written
    assert json.loads(report_path.read_text()) == {"previous": True} and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(outputs.os, "replace", original)
    assert main(["--N", "3", "--datasets", "1", "--no-models", "--no-progress", "--out", str(tmp_path / "fig"),
                 "--json", str(report_path)]) == 0
    assert json.loads(report_path.read_text())["N"] == 3


def test_the_table_never_runs_numbers_together():
    """Numbers of any length (the review saw ``8.9e+045.322e+04`` and ``0.0614-0.0004709``) stay
    separate columns: every row splits into its cells, and each cell reads back as its number."""
    from validation.report import HEADLINE, ValidationReport

    values = [8.9e+04, 5.322e+04, 0.0614, -0.0004709, -1.234567e+300, 1e-300, math.nan, -7.0, 123456789.0]
    rng = np.random.default_rng(0)
    models = {name: {metric: {"mean": float(rng.choice(values)), "std": float(rng.choice(values)),
                              "median": float(rng.choice(values))} for metric in HEADLINE}
              for name in ("GFNCP", "NCP-with-a-long-name")}
    models["GFNCP"].pop("is_tv")
    report = ValidationReport(method="enumeration", datasets=2, N=5, model={}, seed=0, elapsed_s=0.1, orders=0,
                              importance_samples=1, sdpp_orders=1, checkpoints={}, per_dataset={},
                              exact={"log_evidence": {"mean": -1.234e+05, "std": 5.0, "median": -0.0004709}},
                              models=models)
    lines = report.table().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    rows = lines[start + 1:start + 1 + len(HEADLINE)]
    for metric, row in zip(HEADLINE, rows):
        cells = row.split()
        assert len(cells) == 7 and cells[0] == metric, row
        for k, name in enumerate(models):
            s = models[name].get(metric)
            for j, key, spec in ((1, "mean", ".4g"), (2, "std", ".3g"), (3, "median", ".4g")):
                expected = "-" if s is None else format(s[key], spec)
                assert cells[3 * k + j] == expected, row
    # right-aligned columns: every cell of a column ends at the same place
    header = lines[start]
    for row in rows:
        assert len(row.rstrip()) == len(header.rstrip())

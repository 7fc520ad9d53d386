"""The gfncp command: train/resume, info, evaluate, cluster, and one-line errors for user mistakes."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gfncp_pyro.checkpoint import save_checkpoint
from gfncp_pyro.cli import main
from gfncp_pyro.config import preset
from gfncp_pyro.nn import EnergyNet

SMALL = dict(net_h_dim=8, net_g_dim=16, net_hidden=16)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    config = preset("mog2d-small", **SMALL)
    torch.manual_seed(0)
    save_checkpoint(path, {"config": config.to_dict(), "model": EnergyNet(config.net).state_dict()})
    return str(path)


def test_train_resume_info(tmp_path, capsys):
    out = str(tmp_path / "run")
    flags = ["--preset", "mog2d-small", "--out", out, "--iterations", "4", "--batch-size", "4", "--n-max", "6",
             "--val-sets", "4", "--val-every", "2", "--device", "cpu", "--no-progress"]
    assert main(["train"] + flags) == 0
    assert main(["train"] + flags) == 2  # refuses to overwrite
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train"] + flags + ["--resume"]) == 0
    assert main(["info", out + "/last.pt"]) == 0
    assert "step 4" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["optim"]["iterations"] == 4


def test_evaluate_writes_json(checkpoint, tmp_path, capsys):
    report = tmp_path / "e.json"
    assert main(["evaluate", checkpoint, "--sets", "6", "--N", "12", "--sdpp-sets", "2", "--sdpp-orders", "5",
                 "--json", str(report), "--no-progress"]) == 0
    data = json.loads(report.read_text())
    assert data["nmi"]["n"] == 6 and 0 <= data["ari"]["mean"] <= 1 and data["sdpp"]["n"] == 2
    assert "nmi" in capsys.readouterr().out


def test_cluster_csv_and_png(checkpoint, tmp_path, capsys):
    points = np.random.default_rng(0).normal(size=(30, 2))
    csv = tmp_path / "p.csv"
    np.savetxt(csv, points, delimiter=",")
    labels = tmp_path / "labels.txt"
    assert main(["cluster", checkpoint, "--input", str(csv), "--png", str(tmp_path / "c.png"),
                 "--output", str(labels), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["labels"]) == 30 and len(result["top"]) == 3
    assert np.loadtxt(labels).shape == (30,)
    assert (tmp_path / "c.png").stat().st_size > 5_000


@pytest.mark.parametrize(
    "content, match",
    [
        ("x,y\n1,2\n3,4\n", "numbers only"),
        ("1,2\n3,\n", "numbers only"),
        ("", "empty"),
        ("1,2,3\n4,5,6\n", "dimension 3"),
    ],
)
def test_cluster_bad_files(checkpoint, tmp_path, capsys, content, match):
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    assert main(["cluster", checkpoint, "--input", str(csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


def test_cluster_missing_file_and_bad_checkpoint(checkpoint, tmp_path, capsys):
    assert main(["cluster", checkpoint, "--input", str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "p.csv").write_text("1,2\n")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["cluster", str(bad), "--input", str(tmp_path / "p.csv")]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_console_entry_point_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gfncp_pyro", "info", str(tmp_path / "missing.pt")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "does not exist" in result.stderr


def test_train_online_mode_flag(tmp_path, capsys):
    out = str(tmp_path / "online")
    assert main(["train", "--preset", "mog2d-small", "--out", out, "--online", "--iterations", "2", "--batch-size", "2",
                 "--n-max", "5", "--val-sets", "2", "--val-every", "2", "--device", "cpu", "--no-progress"]) == 0
    assert json.loads((tmp_path / "online" / "config.json").read_text())["net"]["online"] is True
    capsys.readouterr()
    assert main(["evaluate", out + "/last.pt", "--sets", "2", "--N", "6", "--sdpp-sets", "1", "--sdpp-orders", "3",
                 "--no-progress"]) == 0
    assert "nmi" in capsys.readouterr().out


def test_info_accepts_pretrained_names(capsys):
    assert main(["info", "pretrained:mog2d-small:ncp"]) == 0
    assert "objective ncp" in capsys.readouterr().out
    assert main(["info", "pretrained:mog2d-small"]) == 2
    assert main(["info", "pretrained:nothing:ncp"]) == 2


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """scikit-learn's digits (64-d features in [0, 1]) as .npy features + labels and as .npz."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    features, labels = load_digits(return_X_y=True)
    features = (features / 16.0).astype(np.float32)
    np.save(root / "features.npy", features)
    np.save(root / "labels.npy", labels)
    np.savez(root / "digits.npz", features=features, labels=labels)
    return root


DIGITS_FLAGS = ["--preset", "embeddings-cpu", "--iterations", "2", "--batch-size", "2", "--n-min", "5", "--n-max", "8",
                "--val-sets", "2", "--val-every", "1", "--mc-steps", "2", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("form", ["npy+labels", "npz"])
def test_train_on_64d_features_takes_the_input_size_from_the_data(digits, tmp_path, capsys, form):
    data = (["--data", str(digits / "features.npy"), "--labels", str(digits / "labels.npy")] if form == "npy+labels"
            else ["--data", str(digits / "digits.npz")])
    out = tmp_path / "run"
    assert main(["train", *DIGITS_FLAGS, *data, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["net"]["x_dim"] == 64
    assert "64-d" in capsys.readouterr().err
    if form == "npy+labels":  # features and labels stored together: evaluate and resume find them
        assert config["data"]["path"] == str(out / "data.npz")
    assert main(["evaluate", str(out / "last.pt"), "--sets", "2", "--N", "12", "--sdpp-sets", "1", "--sdpp-orders", "2",
                 "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "nmi" in report and "predicted" in report and "vs true" in report
    assert main(["train", *DIGITS_FLAGS, *data, "--out", str(out), "--resume", "--iterations", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3


def test_train_x_dim_flag_that_does_not_fit_is_one_line(digits, tmp_path, capsys):
    assert main(["train", *DIGITS_FLAGS, "--data", str(digits / "digits.npz"), "--x-dim", "32",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--x-dim" in err and len(err.splitlines()) == 1


def test_evaluate_with_labels_file(digits, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *DIGITS_FLAGS, "--data", str(digits / "digits.npz"), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out / "last.pt"), "--data", str(digits / "features.npy"), "--labels",
                 str(digits / "labels.npy"), "--sets", "2", "--N", "10", "--sdpp-sets", "0", "--no-progress",
                 "--json", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["nmi"]["n"] == 2 and report["clusters_true"]["n"] == 2


def test_cluster_png_shows_the_written_partition_and_the_scale(checkpoint, tmp_path, capsys):
    points = np.random.default_rng(3).normal(size=(25, 2)) * 30.0  # far off the model's scale
    np.save(tmp_path / "p.npy", points)
    labels = tmp_path / "labels.txt"
    assert main(["cluster", checkpoint, "--input", str(tmp_path / "p.npy"), "--output", str(labels)]) == 0
    captured = capsys.readouterr()
    assert "off the model's scale" in captured.err and "scale: none" in captured.out
    assert main(["cluster", checkpoint, "--input", str(tmp_path / "p.npy"), "--scale", "auto", "--json",
                 "--png", str(tmp_path / "c.png"), "--output", str(labels)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scale"]["mode"] == "auto" and 0 < result["scale"]["factor"] < 1
    assert np.loadtxt(labels, dtype=int).tolist() == result["labels"]
    assert (tmp_path / "c.png").stat().st_size > 5_000
    assert main(["cluster", checkpoint, "--input", str(tmp_path / "p.npy"), "--scale", "0.05", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scale"] == {"mode": "factor", "factor": 0.05, "centre": None}


@pytest.mark.parametrize("dim", [2, 5])
def test_the_cluster_png_draws_the_written_partition_and_the_labelled_top_k(tmp_path, capsys, monkeypatch, dim):
    """First panel: the greedy partition, point for point the labels written to --output; then one
    labelled panel per beam-search result; D > 2 in the PCA projection with labelled axes."""
    from gfncp_pyro import figures

    config = preset("mog2d-small", net_x_dim=dim, **SMALL)
    torch.manual_seed(1)
    model = tmp_path / f"d{dim}.pt"
    save_checkpoint(model, {"config": config.to_dict(), "model": EnergyNet(config.net).state_dict()})
    rng = np.random.default_rng(dim)
    points = np.concatenate([rng.normal(size=(8, dim)) + 6.0 * k * np.eye(dim)[k % dim] for k in range(3)])
    np.save(tmp_path / "p.npy", points)
    drawn = []
    original = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: (drawn.append(fig), original(fig, path))[1])
    labels_file, png = tmp_path / "labels.txt", tmp_path / "c.png"
    assert main(["cluster", str(model), "--input", str(tmp_path / "p.npy"), "--top-k", "2", "--scale", "none",
                 "--output", str(labels_file), "--png", str(png), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    written = np.loadtxt(labels_file, dtype=int)
    assert written.tolist() == result["labels"] and png.stat().st_size > 5_000
    fig, = drawn
    axes = fig.axes
    assert len(axes) == 1 + 2
    assert axes[0].get_title().startswith("greedy (written to --output)")
    assert [ax.get_title().split(",")[0] for ax in axes[1:]] == ["beam search #1", "beam search #2"]
    for ax, top in zip(axes[1:], result["top"]):
        assert f"log q = {top['log_prob']:.2f}" in ax.get_title()
    if dim == 2:
        xy = points
        assert (axes[0].get_xlabel(), axes[0].get_ylabel()) == ("x[0]", "x[1]")
    else:
        xy, explained = figures.pca_projection(points)
        assert axes[0].get_xlabel() == f"PC1 ({100 * explained[0]:.0f}% of the variance)"
        assert axes[0].get_ylabel() == f"PC2 ({100 * explained[1]:.0f}% of the variance)"
        assert "2-D PCA projection" in fig._suptitle.get_text()
    for ax, labels in zip(axes, [written] + [np.asarray(t["labels"]) for t in result["top"]]):
        clusters = ax.collections  # one scatter per cluster, in the order of the canonical labels
        assert len(clusters) == labels.max() + 1 and f"{labels.max() + 1} clusters" in ax.get_title()
        for k, scatter in enumerate(clusters):
            assert np.allclose(scatter.get_offsets(), xy[labels == k])


def test_evaluate_prints_the_mean_predicted_and_true_number_of_clusters(checkpoint, tmp_path, capsys):
    report = tmp_path / "e.json"
    assert main(["evaluate", checkpoint, "--sets", "4", "--N", "10", "--sdpp-sets", "0", "--json", str(report),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    pred, true = data["clusters_pred"]["mean"], data["clusters_true"]["mean"]
    assert f"predicted {pred:.2f} vs true {true:.2f}" in out and data["clusters_pred"]["n"] == 4


def _gfncp(*argv, timeout=300):
    import os

    return subprocess.run([sys.executable, "-m", "gfncp_pyro", *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_resume_with_more_iterations_extends_a_finished_run_subprocess(tmp_path):
    """``gfncp train --out RUN --resume --iterations M`` continues a finished run from its own
    settings (no flags repeated), on the re-planned cosine: step t gets the LR of a run planned
    for M from the start; a killed write's stale temporary is removed on resume."""
    from gfncp_pyro.checkpoint import load_checkpoint
    from gfncp_pyro.train import cosine_lr

    out = tmp_path / "run"
    first = _gfncp("train", "--preset", "mog2d-small", "--iterations", "2", "--batch-size", "2", "--n-max", "5",
                   "--val-sets", "2", "--val-every", "2", "--panel-sets", "0", "--select-by", "loss", "--device", "cpu",
                   "--lr", "0.001", "--lr-min", "0.00001", "--no-progress", "--out", str(out))
    assert first.returncode == 0, first.stderr
    stale = out / ".last.pt.killed.tmp"
    stale.write_bytes(b"half a checkpoint (kill -9)")
    extended = _gfncp("train", "--out", str(out), "--resume", "--iterations", "5", "--no-progress")
    assert extended.returncode == 0 and "Traceback" not in extended.stderr, extended.stderr
    assert "from step 2 to 5" in extended.stderr and json.loads(extended.stdout)["step"] == 5
    assert load_checkpoint(out / "last.pt")["step"] == 5 and not stale.exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    # the logged LR is the one after each step: that of step t + 1 of the 5-iteration plan
    assert [r["lr"] for r in records[2:]] == pytest.approx([cosine_lr(t, 5, 1e-3, 1e-5) for t in (3, 4, 5)], rel=1e-9)
    assert records[1]["lr"] == pytest.approx(1e-5)  # the first plan ended at lr_min
    config = json.loads((out / "config.json").read_text())
    assert config["optim"]["iterations"] == 5 and config["optim"]["batch_size"] == 2 and config["optim"]["lr"] == 1e-3


def test_train_on_sklearn_digits_from_the_command_line_subprocess(digits, tmp_path):
    """64-d features + a labels file, as a user runs it: the network takes its input size from the
    data; evaluate then reads the run's stored data."""
    out = tmp_path / "run"
    trained = _gfncp("train", *DIGITS_FLAGS, "--data", str(digits / "features.npy"), "--labels",
                     str(digits / "labels.npy"), "--out", str(out))
    assert trained.returncode == 0 and "Traceback" not in trained.stderr, trained.stderr
    assert "64-d" in trained.stderr and json.loads(trained.stdout)["step"] == 2
    assert json.loads((out / "config.json").read_text())["net"]["x_dim"] == 64
    evaluated = _gfncp("evaluate", str(out / "last.pt"), "--sets", "2", "--N", "12", "--sdpp-sets", "0",
                       "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "nmi" in evaluated.stdout and "vs true" in evaluated.stdout

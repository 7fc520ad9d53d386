"""User mistakes on the command line: one line on stderr, exit status 2, no traceback, no
half-written file; Ctrl-C exits 130 and SIGTERM 143.

Every case runs in-process through ``main`` (fast, default) and as a real subprocess of the
installed entry points (``-m slow``); the signal tests always run as subprocesses.
"""

import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gfncp_pyro.checkpoint import save_checkpoint
from gfncp_pyro.config import preset
from gfncp_pyro.nn import EnergyNet

SMALL = dict(net_h_dim=8, net_g_dim=16, net_hidden=16)
ROOT = Path(__file__).resolve().parents[1]
FAST_TRAIN = ["--preset", "mog2d-small", "--iterations", "2", "--batch-size", "2", "--n-max", "5", "--val-sets", "2",
              "--val-every", "2", "--panel-sets", "0", "--select-by", "loss", "--device", "cpu", "--no-progress"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small checkpoint, broken checkpoints and input files of every kind."""
    root = tmp_path_factory.mktemp("cli_errors")
    config = preset("mog2d-small", **SMALL)
    torch.manual_seed(0)
    state = EnergyNet(config.net).state_dict()
    save_checkpoint(root / "ok.pt", {"config": config.to_dict(), "model": state})
    nan_state = {k: v.clone() for k, v in state.items()}
    next(iter(nan_state.values())).view(-1)[0] = math.nan
    save_checkpoint(root / "nan.pt", {"config": config.to_dict(), "model": nan_state})
    huge_state = {k: v * 1e12 for k, v in state.items()}  # finite weights whose energies overflow
    save_checkpoint(root / "huge.pt", {"config": config.to_dict(), "model": huge_state})
    (root / "empty.pt").write_bytes(b"")
    torch.save(torch.zeros(3), root / "foreign.pt")
    (root / "evil.pt").write_bytes(pickle.dumps({"model": _Evil()}))
    np.savetxt(root / "p.csv", np.random.default_rng(0).normal(size=(12, 2)), delimiter=",")
    np.save(root / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(root / "objects.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    np.save(root / "labels1.npy", np.zeros(1, dtype=np.int64))
    (root / "a_file").write_text("x")
    (root / "adir.png").mkdir()
    from gfncp_pyro.cli import main

    assert main(["train", *FAST_TRAIN, "--out", str(root / "finished")]) == 0  # a finished run of 2 iterations
    (root / "empty_run").mkdir()
    (root / "empty_run" / "last.pt").write_bytes(b"")
    return root


def _cases(r: Path):
    """(argv, expected text, path that must not appear): the program is gfncp unless argv[0] names one."""
    ok, csv = str(r / "ok.pt"), str(r / "p.csv")
    cluster = ["cluster", ok, "--input", csv]
    return {
        "output-is-directory": (cluster + ["--output", str(r)], "is a directory", None),
        "output-missing-parent": (cluster + ["--output", str(r / "no" / "labels.txt")], "does not exist",
                                  r / "no" / "labels.txt"),
        "output-unwritable": (cluster + ["--output", "/proc/gfncp-labels.txt"], "cannot write", None),
        "output-parent-is-file": (cluster + ["--output", str(r / "a_file" / "l.txt")], "is a file", None),
        "png-unwritable": (cluster + ["--png", "/proc/gfncp-test.png"], "cannot write", None),
        "png-is-directory": (cluster + ["--png", str(r / "adir.png")], "is a directory", None),
        "png-missing-parent": (cluster + ["--png", str(r / "no" / "c.png")], "does not exist", r / "no"),
        "png-wrong-suffix": (cluster + ["--png", str(r / "c.jpg")], "must end in .png", r / "c.jpg"),
        "json-parent-is-file": (["evaluate", ok, "--sets", "1", "--N", "4", "--json", str(r / "a_file" / "e.json")],
                                "is a file", None),
        "json-unwritable": (["evaluate", ok, "--sets", "1", "--N", "4", "--json", "/proc/gfncp-e.json"],
                            "cannot write", None),
        "json-missing-parent": (["evaluate", ok, "--sets", "1", "--N", "4", "--json", str(r / "no" / "e.json")],
                                "does not exist", r / "no"),
        "json-is-directory": (["evaluate", ok, "--sets", "1", "--N", "4", "--json", str(r)], "is a directory", None),
        "figures-unwritable": (["evaluate", ok, "--sets", "1", "--N", "4", "--figures", "/proc/gfncp-figures"],
                               "cannot create", None),
        "figures-is-file": (["evaluate", ok, "--sets", "1", "--N", "4", "--figures", str(r / "a_file")], "is a file",
                            None),
        "train-out-is-file": (["train", *FAST_TRAIN, "--out", str(r / "a_file")], "is a file", None),
        "train-out-unwritable": (["train", *FAST_TRAIN, "--out", "/proc/gfncp-run"], "cannot create", None),
        "train-alpha-absurd": (["train", *FAST_TRAIN, "--out", str(r / "alpha_run"), "--alpha", "1e200"],
                               "must lie in [1e-08, 1e+08]", r / "alpha_run"),
        "train-sigma-mu-absurd": (["train", *FAST_TRAIN, "--out", str(r / "sm_run"), "--sigma-mu", "1e200"],
                                  "must lie in [1e-08, 1e+08]", r / "sm_run"),
        "train-lr-absurd": (["train", *FAST_TRAIN, "--out", str(r / "lr_run"), "--lr", "1e300"], "must lie in (0, 1]",
                            r / "lr_run"),
        "train-string-features": (["train", "--preset", "embeddings-cpu", "--data", str(r / "strings.npy"), "--labels",
                                   str(r / "labels1.npy"), "--device", "cpu", "--no-progress", "--out",
                                   str(r / "str_run")], "numeric array", r / "str_run"),
        "resume-other-preset": (["train", "--out", str(r / "finished"), "--resume", "--preset", "mnist-cpu"],
                                "drop --preset", None),
        "resume-fewer-iterations": (["train", "--out", str(r / "finished"), "--resume", "--iterations", "1"],
                                    "already at step 2", None),
        "resume-changed-flag": (["train", "--out", str(r / "finished"), "--resume", "--lr", "0.01"],
                                "another config", None),
        "resume-empty-last-pt": (["train", "--out", str(r / "empty_run"), "--resume"], "is empty", None),
        "evaluate-test-alpha-absurd": (["evaluate", ok, "--sets", "1", "--N", "4", "--test-alpha", "1e300"],
                                       "must lie in", None),
        "train-device-tpu": (["train", *FAST_TRAIN, "--out", str(r / "tpu_run"), "--device", "tpu"], "unknown device",
                             r / "tpu_run"),
        "train-labels-without-npy": (["train", *FAST_TRAIN, "--out", str(r / "lab_run"), "--labels", csv],
                                     "--labels goes with .npy", r / "lab_run" / "last.pt"),
        "string-npy": (["cluster", ok, "--input", str(r / "strings.npy")], "real numbers", None),
        "object-npy": (["cluster", ok, "--input", str(r / "objects.npy")], "not a readable .npy", None),
        "empty-pt": (["cluster", str(r / "empty.pt"), "--input", csv], "is empty", None),
        "empty-pt-evaluate": (["evaluate", str(r / "empty.pt"), "--sets", "1", "--N", "4"], "is empty", None),
        "unsafe-pt-cluster": (["cluster", str(r / "evil.pt"), "--input", csv], "refused as unsafe", None),
        "foreign-pt": (["info", str(r / "foreign.pt")], "not a gfncp-pyro checkpoint", None),
        "unsafe-pt": (["info", str(r / "evil.pt")], "refused as unsafe", None),
        "nan-weights-cluster": (["cluster", str(r / "nan.pt"), "--input", csv], "non-finite weights", None),
        "nan-weights-evaluate": (["evaluate", str(r / "nan.pt"), "--sets", "1", "--N", "4"], "non-finite weights",
                                 None),
        "overflowing-weights-cluster": (["cluster", str(r / "huge.pt"), "--input", csv], "outputs are not finite", None),
        "overflowing-weights-evaluate": (["evaluate", str(r / "huge.pt"), "--sets", "1", "--N", "4"],
                                         "outputs are not finite", None),
        "exact-overflowing-weights": (["validation.exact", "--gfncp", str(r / "huge.pt"), "--ncp", "none", "--N", "3",
                                       "--datasets", "1", "--out", str(r / "v")], "outputs are not finite", None),
        "dag-overflowing-weights": (["validation.dag", "--checkpoint", str(r / "huge.pt"), "--out", str(r / "d")],
                                    "outputs are not finite", None),
        "bad-scale": (cluster + ["--scale", "-3"], "positive finite", None),
        "bad-top-k": (cluster + ["--top-k", "0"], "integer >= 1", None),
        "exact-sigma-mu-1e200": (["validation.exact", "--sigma-mu", "1e200", "--no-models"], "must lie in", None),
        "exact-alpha-zero": (["validation.exact", "--alpha", "0", "--no-models"], "must lie in", None),
        "exact-sigma-x-tiny": (["validation.exact", "--sigma-x", "1e-300", "--no-models"], "must lie in", None),
        "exact-empty-pt": (["validation.exact", "--gfncp", str(r / "empty.pt"), "--ncp", "none", "--N", "3",
                            "--datasets", "1", "--out", str(r / "v")], "is empty", None),
        "exact-json-missing-parent": (["validation.exact", "--no-models", "--json", str(r / "no" / "e.json")],
                                      "does not exist", r / "no"),
        "exact-nan-weights": (["validation.exact", "--gfncp", str(r / "nan.pt"), "--ncp", "none", "--N", "3",
                               "--datasets", "1", "--out", str(r / "v")], "non-finite weights", None),
        "exact-json-unwritable": (["validation.exact", "--no-models", "--json", "/proc/gfncp.json"], "cannot write",
                                  None),
        "dag-out-is-file": (["validation.dag", "--N", "2", "--out", str(r / "a_file")], "is a file", None),
    }


CASE_NAMES = sorted(_cases(Path("/x")))


def _main_of(argv):
    if argv[0] == "validation.exact":
        from validation.exact import main
    elif argv[0] == "validation.dag":
        from validation.dag import main
    else:
        from gfncp_pyro.cli import main
        return main, argv
    return main, argv[1:]


def _no_temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_user_mistake_in_process(files, capsys, name):
    argv, expected, absent = _cases(files)[name]
    main, args = _main_of(argv)
    try:
        status = main(args)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert expected in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert absent is None or not absent.exists()
    assert not _no_temporaries(files)
    _finished_run_untouched(files)


def _finished_run_untouched(root: Path) -> None:
    from gfncp_pyro.checkpoint import load_checkpoint

    assert load_checkpoint(root / "finished" / "last.pt")["step"] == 2
    assert len((root / "finished" / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", CASE_NAMES)
def test_user_mistake_subprocess(files, name):
    argv, expected, absent = _cases(files)[name]
    command = [sys.executable, "-m", argv[0]] + argv[1:] if argv[0].startswith("validation.") else \
        [sys.executable, "-m", "gfncp_pyro"] + argv
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    err = result.stderr.strip()
    assert result.returncode == 2, err
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert absent is None or not absent.exists()
    assert not _no_temporaries(files)
    _finished_run_untouched(files)


def test_nonfinite_loss_is_one_line_naming_the_saved_state(tmp_path, capsys, monkeypatch):
    from gfncp_pyro import train
    from gfncp_pyro.cli import main

    def nan_loss(self, batch, generator):
        return torch.tensor(math.nan, requires_grad=True), {}

    monkeypatch.setattr(train.Trainer, "_loss", nan_loss)
    out = tmp_path / "run"
    assert main(["train", *FAST_TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "non-finite loss" in err[-1] and str(out / "nonfinite.pt") in err[-1]
    assert (out / "nonfinite.pt").is_file()


def test_unexpected_training_failure_is_one_line_naming_the_checkpoint(tmp_path, capsys, monkeypatch):
    from gfncp_pyro import train
    from gfncp_pyro.cli import main

    original = train.Trainer.train_step

    def failing(self):
        if self.step == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self)

    monkeypatch.setattr(train.Trainer, "train_step", failing)
    out = tmp_path / "run"
    assert main(["train", *FAST_TRAIN, "--iterations", "4", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "training failed at iteration 2" in err[-1] and str(out / "last.pt") in err[-1]
    assert "out of memory" in err[-1]


def _start(command, tmp_path):
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for(path: Path, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the command never started working"
        time.sleep(0.1)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_train_signal_saves_last_and_exits_with_one_line(tmp_path, signum, status):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "gfncp_pyro", "train", *FAST_TRAIN, "--iterations", "100000",
               "--val-every", "100000", "--out", str(out)]
    process = _start(command, tmp_path)
    _wait_for(out / "metrics.jsonl", process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and f"interrupted by {signal.Signals(signum).name}" in lines[-1]
    assert "last.pt saved" in lines[-1]
    from gfncp_pyro.checkpoint import load_checkpoint

    assert load_checkpoint(out / "last.pt")["step"] >= 1
    assert not list(out.glob("*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("program", ["evaluate", "validation.exact"])
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_long_commands_exit_on_signals_without_traceback(tmp_path, program, signum, status):
    if program == "evaluate":
        command = [sys.executable, "-m", "gfncp_pyro", "evaluate", "pretrained:mog2d-small:gfncp", "--sets", "100000",
                   "--N", "50", "--json", str(tmp_path / "e.json")]
    else:
        command = [sys.executable, "-m", "validation.exact", "--N", "8", "--datasets", "100000",
                   "--json", str(tmp_path / "e.json"), "--out", str(tmp_path / "v")]
    process = _start(command, tmp_path)
    deadline = time.monotonic() + 120
    err = ""
    while "it/s" not in err and "s/it" not in err and "|" not in err:  # the progress bar: the work started
        assert time.monotonic() < deadline and process.poll() is None
        err += os.read(process.stderr.fileno(), 4096).decode(errors="replace")
    process.send_signal(signum)
    _, rest = process.communicate(timeout=120)
    err += rest
    assert process.returncode == status, err
    assert "Traceback" not in err and f"interrupted by {signal.Signals(signum).name}" in err.strip().splitlines()[-1]
    assert not (tmp_path / "e.json").exists()


_FAILING_TRAINER = """
import math, sys, torch
from gfncp_pyro import train
if sys.argv[1] == "nan":
    train.Trainer._loss = lambda self, batch, generator: (torch.tensor(math.nan, requires_grad=True), {})
else:
    original = train.Trainer.train_step
    def failing(self):
        if self.step == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self)
    train.Trainer.train_step = failing
from gfncp_pyro.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("kind, status, saved, expected", [
    ("nan", 2, "nonfinite.pt", "non-finite loss"),
    ("error", 1, "last.pt", "training failed at iteration 2"),
])
def test_training_failures_are_one_line_naming_the_saved_file_subprocess(tmp_path, kind, status, saved, expected):
    """As a user sees it: the training line, then one line naming the saved state; no traceback."""
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", _FAILING_TRAINER, kind, "train", *FAST_TRAIN, "--iterations", "4",
                             "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr and len(lines) == 2 and lines[0].startswith("training gfncp"), lines
    assert lines[1].startswith("gfncp train: error: ") and expected in lines[1] and str(out / saved) in lines[1]
    assert (out / saved).is_file() and not list(out.glob("*.tmp"))

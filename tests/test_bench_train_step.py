"""benchmarks/bench_train_step.py builds every case's objective and runs it (tiny sizes, fp32 and CPU bf16)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bench_train_step", ROOT / "benchmarks" / "bench_train_step.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


BENCH = _module()


def test_the_header_names_the_default_objective():
    line = BENCH.header(3)
    assert "median of 3 iterations" in line and "flow=consistent" in line and "balance=variance" in line


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("name", sorted(BENCH.CASES))
def test_every_case_runs_one_iteration(name, bf16, monkeypatch):
    tiny = lambda changes: BENCH.preset("mog2d", n_min=6, n_max=6, batch_size=2, device="cpu",  # noqa: E731
                                        net_h_dim=8, net_g_dim=8, net_hidden=8).replace(**changes)
    monkeypatch.setattr(BENCH, "config_of", tiny)
    iteration = BENCH.Iteration(BENCH.config_of(BENCH.CASES[name]), seed=1, bf16=bf16)
    before = [p.detach().clone() for p in iteration.net.parameters()]
    iteration()
    assert any(not torch.equal(a, b) for a, b in zip(before, iteration.net.parameters()))
    assert all(torch.isfinite(p).all() for p in iteration.net.parameters())


def test_main_times_both_sample_placements_and_prints_the_floor(monkeypatch):
    tiny = lambda changes: BENCH.preset("mog2d", n_min=6, n_max=6, batch_size=2, device="cpu",  # noqa: E731
                                        net_h_dim=8, net_g_dim=8, net_hidden=8).replace(**changes)
    monkeypatch.setattr(BENCH, "config_of", tiny)
    recorded = {}
    monkeypatch.setattr(BENCH, "record", lambda name, lines: recorded.setdefault(name, lines))
    monkeypatch.setattr(sys, "argv", ["bench_train_step.py", "--repeats", "1", "--background", "both",
                                      "--cases", "gfncp paper objective", "ncp"])
    BENCH.main()
    lines = recorded["train_step"]
    labels = [line.split("  ")[0].strip() for line in lines if " s (min " in line]
    assert labels == ["gfncp paper objective, samples in line", "gfncp paper objective, samples beside", "ncp"]
    assert all(" floor " in line for line in lines if " s (min " in line)

"""The GPU benchmark scripts run on any machine through their CPU smoke mode and record nothing there.

``benchmarks/gpu_train_paper.py`` is not run here: its CPU fallback appends to
``benchmarks/results/gpu_train_paper.md``.
"""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_train_images.py"
RESULT = ROOT / "benchmarks" / "results" / "gpu_train_images.md"
CASES = 5  # smoke mode, fp32 only: mnist gfncp, ncp, gfncp with mc_steps; augment_images; embeddings gfncp


def run_smoke(*args: str) -> list[str]:
    """Run the script with ``--cpu-smoke`` (warnings are errors) and return its stdout lines,
    checking that the results file is left exactly as it was."""
    before = RESULT.read_bytes() if RESULT.exists() else None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-W", "error", str(SCRIPT), "--cpu-smoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (RESULT.read_bytes() if RESULT.exists() else None) == before, "the smoke run changed the results file"
    lines = done.stdout.splitlines()
    assert not any("appended to" in line for line in lines), "the smoke run recorded its figures"
    assert lines[0].startswith("CPU SMOKE RUN") and "nothing recorded" in lines[0]
    assert len(lines) == 3 + CASES, done.stdout
    return lines


def check_measured(lines: list[str]) -> None:
    training = [line for line in lines if " it/s " in line]
    assert [line.split()[0] for line in training] == ["mnist"] * 3 + ["embeddings"]
    assert [line.split()[1] for line in training] == ["gfncp", "ncp", "gfncp", "gfncp"]
    assert "mc_steps=4 " in training[2] and "mc_steps=None" in training[0]
    for line in training:
        assert "B=2 N=[4,8]: 2 it in" in line and "bf16=False" in line and "peak GPU n/a" in line
        rates = [float(v) for v in re.findall(r"([\d.]+) (?:it|sets|images|vectors)/s", line)]
        assert len(rates) == 3 and all(math.isfinite(r) and r > 0 for r in rates), line
        # printed to 3 decimals (it/s), 1 (sets/s) and 0 (points/s): allow those roundings on slow machines
        assert math.isclose(rates[1], 2 * rates[0], rel_tol=1e-2, abs_tol=0.05 + 2 * 5e-4)
        assert math.isclose(rates[2], 6 * rates[1], rel_tol=1e-2, abs_tol=0.5 + 6 * 0.05)
    augment = [line for line in lines if line.startswith("augment_images on cpu, M = 256")]
    assert len(augment) == 1 and float(re.search(r"([\d,]+) images/s", augment[0])[1].replace(",", "")) > 0


def test_images_smoke_on_data():
    lines = run_smoke()
    mnist = ROOT.parent / "shared" / "data" / "mnist"
    expected = f"images: {mnist}, split" if mnist.exists() else "images: SYNTHETIC"
    assert lines[1].startswith(expected), lines[1]
    check_measured(lines)


def test_images_smoke_synthetic_pool(tmp_path):
    lines = run_smoke("--data", str(tmp_path / "missing"))
    assert lines[1].startswith("images: SYNTHETIC random pool of 10,000 28x28 images, 10 classes")
    assert "missing is missing" in lines[1]
    check_measured(lines)


def test_images_budget_skips(tmp_path):
    lines = run_smoke("--data", str(tmp_path / "missing"), "--budget-s", "0")
    skipped = lines[3:]
    assert all(line.endswith("skipped (budget of 0 s spent)") for line in skipped), skipped
    assert skipped[0].startswith("mnist gfncp") and skipped[3].startswith("augment_images")

"""Shared by the benchmark scripts: machine description and appending results to a file."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """One line: CPU model, cores, torch version and threads, CUDA device if any."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads){gpu}, Python {platform.python_version()}"
    )


def record(name: str, lines: list[str]) -> Path:
    """Print ``lines`` and append them, with date, machine and command, to results/NAME.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    block = [f"## {stamp}", f"- machine: {machine()}", f"- command: `{command}`", ""]
    block += [f"    {line}" for line in lines] + [""]
    for line in lines:
        print(line)
    with path.open("a") as handle:
        handle.write("\n".join(block) + "\n")
    print(f"(appended to {path})")
    return path

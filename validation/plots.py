"""Figures of the exact validation: top partitions (exact vs models) and ECDFs of TV and SDPP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gfncp_pyro.outputs import write_atomic_with
from gfncp_pyro.partitions import labels_to_blocks

__all__ = ["plot_top_partitions", "plot_ecdfs", "plot_learning_curves", "read_panel_curve"]

COLORS = {"exact": "#333333", "GFNCP": "#dd8452", "NCP": "#4c72b0"}


def _figure(**kwargs):
    """A figure outside pyplot (no global backend switch, nothing to close)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, path: Path, dpi: int) -> None:
    """Write ``fig`` as a PNG atomically (temp file, then rename)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic_with(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi), "wb")


def _blocks(labels: torch.Tensor) -> str:
    return " ".join("{" + ",".join(str(i + 1) for i in b) + "}" for b in labels_to_blocks(labels))


def plot_top_partitions(cases: list[dict], path: Path, top: int = 8) -> None:
    """Bar charts of the exact posterior's top partitions with each model's q (identity order).

    :param cases: one dict per data set: ``{"title", "labels" (P, N), "log_p" (P,), "log_q": {model: (P,)}}``.
    """
    fig = _figure(figsize=(11, 3.3 * len(cases)))
    axes = fig.subplots(len(cases), 1, squeeze=False)
    for ax, case in zip(axes[:, 0], cases):
        order = torch.topk(case["log_p"], min(top, case["log_p"].numel())).indices
        series = {"exact": case["log_p"], **case["log_q"]}
        width = 0.8 / len(series)
        positions = np.arange(len(order))
        for j, (name, log_values) in enumerate(series.items()):
            ax.bar(positions + (j - (len(series) - 1) / 2) * width, log_values[order].exp().numpy(), width,
                   label=name if name == "exact" else f"{name} q(c|x)", color=COLORS.get(name))
        ax.set_xticks(positions)
        ax.set_xticklabels([_blocks(case["labels"][i]) for i in order], rotation=20, ha="right", fontsize=7)
        ax.set_ylabel("probability")
        ax.set_title(case["title"], fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, 130)


def plot_ecdfs(values: dict[str, dict[str, list[float]]], path: Path) -> None:
    """ECDFs of per-data-set metrics, one panel per metric (e.g. TV and SDPP), one line per model.

    :param values: ``{metric: {model: [value per data set]}}``.
    """
    fig = _figure(figsize=(5.2 * len(values), 4.2))
    axes = fig.subplots(1, len(values), squeeze=False)
    for ax, (metric, per_model) in zip(axes[0], values.items()):
        for model, vals in per_model.items():
            xs = np.sort(np.asarray(vals))
            ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=model, color=COLORS.get(model))
        ax.set_xlabel(metric)
        ax.set_ylabel("fraction of data sets")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
        ax.set_title(f"ECDF of {metric} over data sets")
    fig.tight_layout()
    _save(fig, path, 130)


def read_panel_curve(metrics_path: Path) -> dict[str, list[float]]:
    """The fidelity-panel records of a run's ``metrics.jsonl``: ``{"step": [...], "panel_tv": [...],
    ...}`` (the keys logged by :class:`gfncp_pyro.fidelity.FidelityPanel` with the ``panel_`` prefix)."""
    import json

    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "panel_tv" in r]
    if not rows:
        raise ValueError(f"{metrics_path} has no fidelity-panel records (train with panel_sets > 0)")
    keys = ["step"] + [k for k in rows[0] if k.startswith("panel_")]
    return {k: [r[k] for r in rows] for k in keys}


def plot_learning_curves(runs: dict[str, Path], path: Path) -> None:
    """TV to the exact posterior and entropy of q against the training step, one line per run.

    :param runs: ``{label: metrics.jsonl path}`` of runs trained with a fidelity panel.
    :param path: the PNG to write.
    """
    fig = _figure(figsize=(11, 4))
    ax_tv, ax_h = fig.subplots(1, 2)
    exact_entropy = None
    for label, metrics in runs.items():
        curve = read_panel_curve(metrics)
        (line,) = ax_tv.plot(curve["step"], curve["panel_tv"], label=f"{label}: q")
        if "panel_reward_tv" in curve:
            ax_tv.plot(curve["step"], curve["panel_reward_tv"], linestyle=":", color=line.get_color(),
                       label=f"{label}: reward")
        ax_h.plot(curve["step"], curve["panel_entropy_q"], color=line.get_color(), label=label)
        exact_entropy = curve["panel_entropy_p"][0]
    if exact_entropy is not None:
        ax_h.axhline(exact_entropy, color="black", linestyle="--", label="exact posterior")
    ax_tv.set(xlabel="training step", ylabel="mean TV to the exact posterior", ylim=(0, 1),
              title="fidelity panel (20 sets, N = 8)")
    ax_h.set(xlabel="training step", ylabel="mean entropy of q (nats)", title="entropy")
    ax_tv.legend(fontsize=7)
    ax_h.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, 110)

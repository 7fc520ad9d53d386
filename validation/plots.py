"""Figures of the exact validation: top partitions (exact vs models) and ECDFs of TV and SDPP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gfncp_pyro.partitions import labels_to_blocks

__all__ = ["plot_top_partitions", "plot_ecdfs"]

COLORS = {"exact": "#333333", "GFNCP": "#dd8452", "NCP": "#4c72b0"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _blocks(labels: torch.Tensor) -> str:
    return " ".join("{" + ",".join(str(i + 1) for i in b) + "}" for b in labels_to_blocks(labels))


def plot_top_partitions(cases: list[dict], path: Path, top: int = 8) -> None:
    """Bar charts of the exact posterior's top partitions with each model's q (identity order).

    :param cases: one dict per data set: ``{"title", "labels" (P, N), "log_p" (P,), "log_q": {model: (P,)}}``.
    """
    plt = _plt()
    fig, axes = plt.subplots(len(cases), 1, figsize=(11, 3.3 * len(cases)), squeeze=False)
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
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_ecdfs(values: dict[str, dict[str, list[float]]], path: Path) -> None:
    """ECDFs of per-data-set metrics, one panel per metric (e.g. TV and SDPP), one line per model.

    :param values: ``{metric: {model: [value per data set]}}``.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(values), figsize=(5.2 * len(values), 4.2), squeeze=False)
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
    fig.savefig(path, dpi=130)
    plt.close(fig)

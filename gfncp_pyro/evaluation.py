"""The paper's evaluation protocol (Sec. 5 and App. A.2 in [1]).

``num_sets`` seeded test sets of ``N`` points are drawn from the test source of the network's
training config (:func:`~gfncp_pyro.data.sources.evaluation_source`: the Gaussian mixture it was
trained for, or real points of distinct held-out classes for images and embeddings; one
generator for the whole run, so every set differs), clustered by greedy decoding along the
identity order, and scored by NMI and ARI against the true partition; MC is Eq. (24) of the true
partition; SDPP (Eq. 32) is computed on the first ``sdpp_sets`` sets.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
import statistics

import torch
from tqdm.auto import tqdm

from . import decoding, metrics
from .config import TrainConfig
from .data.sources import evaluation_source
from .nn import EnergyNet

__all__ = ["evaluate", "summarize"]


def summarize(values: list[float]) -> dict:
    """Mean, std (sample), median, min, max and count of a list of numbers.

    Non-finite values (e.g. an infinite MC metric of a diverged model on some sets) are left out
    of the statistics and counted in ``"nonfinite"`` (present only when there are any); with no
    finite value at all the statistics are NaN."""
    values = [float(v) for v in values]
    finite = [v for v in values if math.isfinite(v)]
    summary = {
        "mean": statistics.fmean(finite) if finite else math.nan,
        "std": statistics.stdev(finite) if len(finite) > 1 else (0.0 if finite else math.nan),
        "median": statistics.median(finite) if finite else math.nan,
        "min": min(finite) if finite else math.nan,
        "max": max(finite) if finite else math.nan,
        "n": len(values),
    }
    if len(finite) < len(values):
        summary["nonfinite"] = len(values) - len(finite)
    return summary


def evaluate(
    net: EnergyNet,
    config: TrainConfig,
    num_sets: int = 3000,
    num_points: int = 300,
    seed: int = 12345,
    batch_size: int = 64,
    sdpp_sets: int = 20,
    sdpp_orders: int = 500,
    progress: bool = True,
    source=None,
    keep_sets: int = 0,
) -> dict:
    """Evaluate ``net`` on seeded test sets.

    :param source: where the test sets come from (``draw(lengths, generator, device, dtype)``);
        default :func:`~gfncp_pyro.data.sources.evaluation_source` of ``config`` (which reads
        ``config.data.path`` for images and embeddings).
    :param int keep_sets: return the first ``keep_sets`` test sets with their true and greedy
        labels and SDPP values under ``"sets"`` (for figures; not JSON-ready).
    :returns: a JSON-ready dict: ``{"nmi": summary, "ari": ..., "mc_paper": ..., "mc_consistent": ...,
        "sdpp": ..., "protocol": {...}}`` with summaries from :func:`summarize`, and the raw
        per-set ``"sdpp_values"``.
    """
    if num_sets < 1 or num_points < 1:
        raise ValueError(f"num_sets and num_points must be >= 1, got {num_sets} and {num_points}")
    source = source if source is not None else evaluation_source(config)
    generator = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    dtype = next(net.parameters()).dtype
    scores = {"nmi": [], "ari": [], "mc_paper": [], "mc_consistent": [], "sdpp": [], "clusters_true": [],
              "clusters_pred": []}
    kept: list[dict] = []
    net.eval()
    bar = tqdm(total=num_sets, disable=not progress, desc="evaluate", dynamic_ncols=True)
    done = 0
    while done < num_sets:
        size = min(batch_size, num_sets - done)
        batch = source.draw(torch.full((size,), num_points), generator, device, dtype)
        pred, _ = decoding.greedy(net, batch.x, mask=batch.mask)
        b_nmi, b_ari = metrics.batch_nmi_ari(batch.labels, pred, batch.mask)
        scores["nmi"] += b_nmi
        scores["ari"] += b_ari
        for flow in ("paper", "consistent"):
            mc = metrics.marginal_consistency_metric(net, batch.x, batch.labels, batch.mask, flow=flow)
            scores[f"mc_{flow}"] += mc.tolist()
        scores["clusters_true"] += (batch.labels.max(1).values + 1).tolist()
        scores["clusters_pred"] += (pred.max(1).values + 1).tolist()
        for i in range(max(0, min(size, keep_sets - done))):
            kept.append({"x": batch.x[i].cpu(), "labels": batch.labels[i].cpu(), "greedy": pred[i].cpu()})
        for i in range(max(0, min(size, sdpp_sets - done))):
            with torch.no_grad():
                result = metrics.sdpp(net, batch.x[i], batch.labels[i], sdpp_orders, generator=seed + done + i)
            scores["sdpp"].append(float(result.value))
        done += size
        bar.update(size)
    bar.close()
    report = {name: summarize(values) for name, values in scores.items() if values}
    report["sdpp_values"] = scores["sdpp"]
    data = config.data.describe(config, source)
    report["protocol"] = {
        "num_sets": num_sets, "num_points": num_points, "seed": seed, "decoding": "greedy, identity order",
        "sdpp_sets": min(sdpp_sets, num_sets), "sdpp_orders": sdpp_orders, "data": data,
    }
    if keep_sets:
        report["sets"] = kept
    return report

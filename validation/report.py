"""``validation.validate``: amortized posteriors against exact ones, as a library call.

::

    from validation import validate

    report = validate({"GFNCP": "pretrained:mog2d-small:gfncp", "NCP": "pretrained:mog2d-small:ncp"},
                      N=8, datasets=50, seed=0)
    print(report.table())
    report.plot("out/validation")            # top_partitions_N8.png, ecdf_N8.png
    json.dumps(report.to_json())             # what python -m validation.exact --json writes

The CRP mixture validated on is the one the networks were trained for (their checkpoints carry
it, :func:`gfncp_pyro.loading.model_for`); networks trained for different models, or
hyper-parameters requested that differ from the trained ones, are a
:class:`~gfncp_pyro.loading.ModelMismatchError` unless ``force=True``. Data sets are drawn from
that model (seed ``seed``), the exact posterior is enumerated for ``N <= 12`` or computed by the
subset DP (``dp=True`` or ``N >= 13``), and each network is compared with it by
:func:`validation.compare.compare_one` (:func:`~validation.compare.compare_dp` for the DP).
``python -m validation.exact`` is the command line over this module.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from gfncp_pyro.config import preset
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.loading import ModelMismatchError, check_model, check_network_outputs, load_pretrained, model_for, \
    network_config
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.nn import EnergyNet
from gfncp_pyro.partitions import MAX_ENUMERATION_N
from gfncp_pyro.subset_dp import MAX_DP_N, subset_posterior

from .compare import compare_dp, compare_one
from .plots import plot_ecdfs, plot_top_partitions

__all__ = ["validate", "ValidationReport", "compare_dp", "format_table", "HEADLINE", "DP_HEADLINE", "DEFAULT_PRESET"]

HEADLINE = ["tv", "tv_orders", "kl_pq", "kl_qp", "js", "entropy_q", "reward_tv", "reward_kl_pq", "entropy_reward",
            "map_agreement", "q_mass_on_top10", "sdpp_map", "mc_true_paper", "mc_true_consistent", "mc_true_offset",
            "mc_true_state",
            "is_log_evidence_error", "is_ess", "is_tv"]
"""The rows of the table against enumeration."""
DP_HEADLINE = ["coclustering_mae", "is_coclustering_mae", "reward_coclustering_mae", "map_agreement", "sdpp_map",
               "is_log_evidence_error", "is_ess", "reward_is_ess"]
"""The rows of the table against the subset DP."""

DEFAULT_PRESET = "mog2d-small"
"""The model validated when no network gives one (no models at all)."""

_SPEC = ("alpha", "sigma_mu", "sigma_x", "dim")
_ENUMERATION, _DP = "enumeration", "subset DP"


@dataclasses.dataclass
class ValidationReport:
    """The result of :func:`validate`: the fields of the JSON report (schema in README.md), in
    its order, and the data sets drawn in :meth:`plot`'s bar charts."""

    N: int
    datasets: int
    seed: int
    method: str
    """``"enumeration"`` or ``"subset DP"``."""
    model: dict
    """The CRP mixture validated on: ``alpha``, ``sigma_mu``, ``sigma_x``, ``dim``."""
    orders: int
    importance_samples: int
    sdpp_orders: int
    elapsed_s: float
    checkpoints: dict
    """``{name: checkpoint spec}`` (``None`` for a network given as an object)."""
    exact: dict
    """``{quantity: {"mean", "std", "median"}}`` of the exact posteriors."""
    models: dict
    """``{name: {metric: {"mean", "std", "median"}}}``."""
    per_dataset: dict
    """``{name: [{metric: value} per data set]}``."""
    cases: list = dataclasses.field(default_factory=list, repr=False, compare=False)
    """Up to three data sets with their exact posterior and each q (for the bar charts; not in the JSON)."""

    @property
    def uses_dp(self) -> bool:
        return self.method == _DP

    def to_json(self) -> dict:
        """The JSON report (what ``python -m validation.exact --json`` writes)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "cases"}

    @classmethod
    def from_json(cls, data: Mapping) -> ValidationReport:
        """The report of a JSON dict written by :meth:`to_json` (without the bar charts' data sets)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "cases"]
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"not a validation report: it lacks {', '.join(missing)}")
        return cls(**{name: data[name] for name in names})

    def table(self) -> str:
        """The text table ``python -m validation.exact`` prints: one line on the run, the exact
        posteriors' statistics, and (with models) one row per headline metric."""
        lines = [f"{self.method}: {self.datasets} data set(s) of N={self.N} from the CRP mixture {self.model}, "
                 f"seed {self.seed} ({self.elapsed_s:.1f} s)"]
        exact = [[f"exact {key}", f"{s['mean']:.4f}", f"{s['std']:.4f}", f"{s['median']:.4f}"]
                 for key, s in self.exact.items()]
        lines.append(format_table(["", "mean", "std", "median"], exact))
        if self.models:
            names = list(self.models)
            header = ["metric"] + [f"{name} {column}" for name in names for column in ("mean", "std", "median")]
            rows = []
            for metric in DP_HEADLINE if self.uses_dp else HEADLINE:
                row = [metric]
                for name in names:
                    s = self.models[name].get(metric)
                    row += [f"{s['mean']:.4g}", f"{s['std']:.3g}", f"{s['median']:.4g}"] if s else ["-", "-", "-"]
                rows.append(row)
            lines += ["", format_table(header, rows)]
        return "\n".join(lines)

    def plot(self, directory: str | os.PathLike) -> list[Path]:
        """Write the figures into ``directory`` (created if missing): ``top_partitions_N{N}.png``
        (the exact posterior's top partitions and each q, enumeration only) and ``ecdf_N{N}.png``
        (ECDFs of TV, or co-clustering MAE for the DP, and SDPP). Nothing without models.

        :returns: the paths written.
        """
        if not self.models:
            return []
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        if self.cases:
            written.append(directory / f"top_partitions_N{self.N}.png")
            plot_top_partitions(self.cases, written[-1])
        ecdf = {m: {name: [r[m] for r in rows] for name, rows in self.per_dataset.items()}
                for m in (("coclustering_mae", "sdpp_map") if self.uses_dp else ("tv", "sdpp_map"))}
        written.append(directory / f"ecdf_N{self.N}.png")
        plot_ecdfs(ecdf, written[-1])
        return written


def format_table(header: list[str], rows: list[list[str]], gap: int = 2) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, each as wide
    as its widest cell, columns separated by at least ``gap`` spaces, so that cells never run
    together whatever the numbers' lengths."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append((" " * gap).join(cells).rstrip())
    return "\n".join(lines)


@dataclasses.dataclass
class _Model:
    """One network to validate: how messages name it, its checkpoint spec, its training config."""

    label: str
    spec: str | None
    net: EnergyNet
    config: object


def _load(name: str, model) -> _Model:
    if isinstance(model, EnergyNet):
        net, spec, label = model, None, f"{name} network"
        config = network_config(model)
    elif isinstance(model, (str, os.PathLike)):
        spec, label = os.fspath(model), f"{name} checkpoint {os.fspath(model)}"
        net, _, config = load_pretrained(spec)
    else:
        raise ValueError(f"models[{name!r}] must be a checkpoint spec (a path or pretrained:NAME:OBJECTIVE) or a "
                         f"gfncp_pyro.nn.EnergyNet, got {type(model).__name__}")
    if config is not None and not config.data.is_mixture:
        raise ModelMismatchError(f"{label} was trained on {config.data.name}; the exact validation needs a "
                                 "Gaussian-mixture model (e.g. pretrained:mog2d-small:gfncp)")
    check_network_outputs(net, spec, what=label)
    return _Model(label, spec, net, config)


def _differences(first: CRPMixture, second: CRPMixture) -> str:
    names = {"dim": "dimension"}
    return ", ".join(f"{names.get(k, k)} {getattr(first, k)} vs {getattr(second, k)}" for k in _SPEC
                     if not math.isclose(float(getattr(first, k)), float(getattr(second, k)), rel_tol=1e-9))


def _check_agreement(loaded: dict[str, _Model], force: bool) -> None:
    """Networks trained for different models are refused (a dimension always, the rest unless ``force``)."""
    trained = [(name, m, model_for(m.config)) for name, m in loaded.items() if m.config is not None]
    if not trained:
        return
    a, first, mix_a = trained[0]
    for b, second, mix_b in trained[1:]:
        differ = _differences(mix_a, mix_b)
        if differ and (not force or mix_a.dim != mix_b.dim):
            raise ModelMismatchError(
                f"the {first.label} and the {second.label} were trained for different models ({a} vs {b}: "
                f"{differ}); give networks of the same model"
                + ("" if mix_a.dim != mix_b.dim else ", or pass force=True to run them anyway"))


def _validation_model(loaded: dict[str, _Model], model: CRPMixture | None, hyper: dict, force: bool) -> CRPMixture:
    """The CRP mixture to validate on: ``model``, else the networks' own with the requested
    hyper-parameters (``hyper``, ``None`` for the trained value) put in; every network is
    checked against it (:func:`gfncp_pyro.loading.check_model`)."""
    _check_agreement(loaded, force)
    requested = {k: v for k, v in hyper.items() if v is not None}
    if model is not None:
        if requested:
            raise ValueError(f"give model or {', '.join(requested)}, not both")
        if not isinstance(model, CRPMixture):
            raise ValueError(f"model must be a gfncp_pyro.models.CRPMixture, got {type(model).__name__}")
        mixture = model
    else:
        configs = [m.config for m in loaded.values() if m.config is not None]
        if loaded and not configs:
            raise ValueError("the networks carry no training config (load them with gfncp_pyro.load_pretrained); "
                             "pass model=CRPMixture(...)")
        base = model_for(configs[0] if configs else preset(DEFAULT_PRESET))
        mixture = CRPMixture(*(requested.get(k, getattr(base, k)) for k in _SPEC[:3]), dim=base.dim)
    for m in loaded.values():
        if m.config is None:
            continue
        if m.config.dim != mixture.dim:
            raise ModelMismatchError(f"{m.label} was trained for dimension {m.config.dim}, the validation uses "
                                     f"{mixture.dim}")
        check_model(mixture, m.config, force=force, what=m.label)
    return mixture


def _check_sizes(datasets: int, orders: int, importance: int, sdpp_orders: int) -> None:
    for name, value, low in (("datasets", datasets, 1), ("orders", orders, 0), ("importance", importance, 1),
                             ("sdpp_orders", sdpp_orders, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _data_sets(mixture: CRPMixture, N: int, datasets: int, seed: int, data) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x (B, N, D) float64, true labels (B, N) or None)``: ``data`` as given, else drawn from ``mixture``."""
    if data is None:
        if isinstance(N, bool) or not isinstance(N, int) or not 1 <= N <= MAX_DP_N:
            raise ValueError(f"N must be an integer in 1..{MAX_DP_N} (enumeration up to {MAX_ENUMERATION_N}, the "
                             f"subset DP beyond), got {N!r}")
        batch = mixture.sample_batch(torch.full((datasets,), N), torch.Generator().manual_seed(seed),
                                     dtype=torch.float64)
        return batch.x, batch.labels
    x = torch.as_tensor(np.asarray(data, dtype=np.float64) if not torch.is_tensor(data) else data,
                        dtype=torch.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != mixture.dim or not 1 <= x.shape[1] <= MAX_DP_N or x.shape[0] < 1:
        raise ValueError(f"data must hold points of shape (N, {mixture.dim}) (the model's dimension) with 1 <= N <= "
                         f"{MAX_DP_N}, or (B, N, {mixture.dim}), got {tuple(np.shape(data))}")
    if not torch.isfinite(x).all():
        raise ValueError("data contains NaN or infinite values")
    return x, None


def _summary(values: list[float]) -> dict:
    """Mean, sample std and median; with infinite values (an IS error or a divergence of a q that
    underflowed) the mean and median follow them and the std is NaN."""
    if not all(math.isfinite(v) for v in values):
        array = np.asarray(values, dtype=np.float64)
        return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(values) > 1 else 0.0,
                "median": float(np.median(array))}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "median": statistics.median(values)}


def _refuse_nan(model: _Model, index: int, result: dict) -> dict:
    """A model's metrics on one data set; NaN (outputs of the network that are not numbers) is a
    one-line error naming the network, the metric and the data set."""
    bad = [key for key, value in result.items() if isinstance(value, float) and math.isnan(value)]
    if bad:
        raise ValueError(f"{model.label} gives NaN {', '.join(bad[:4])} on data set {index}: its network's outputs "
                         "are not finite there (weights that overflow?); use another checkpoint")
    return result


class _Run:
    """The loop over data sets: the exact posterior of each and every model's comparison with it."""

    def __init__(self, loaded: dict[str, _Model], mixture: CRPMixture, orders: int, importance: int,
                 sdpp_orders: int, generator: torch.Generator):
        self.loaded, self.mixture, self.generator = loaded, mixture, generator
        self.orders, self.importance, self.sdpp_orders = orders, importance, sdpp_orders
        self.exact_rows: list[dict] = []
        self.per_model: dict[str, list[dict]] = {name: [] for name in loaded}
        self.cases: list[dict] = []

    def dp(self, i: int, x: torch.Tensor) -> None:
        dp = subset_posterior(x, self.mixture.alpha, likelihood=self.mixture.likelihood)
        self.exact_rows.append({"log_evidence": float(dp.log_evidence)})
        for name, m in self.loaded.items():
            result = compare_dp(m.net, x, dp, self.mixture, self.importance, self.sdpp_orders, self.generator)
            self.per_model[name].append(_refuse_nan(m, i, result))

    def enumeration(self, i: int, x: torch.Tensor, truth: torch.Tensor | None) -> None:
        n = x.shape[0]
        exact = exact_posterior(x, self.mixture.alpha, likelihood=self.mixture.likelihood)
        row = {"log_evidence": float(exact.log_evidence), "entropy": exact.entropy}
        if truth is not None:
            row["map_is_true"] = float(torch.equal(exact.labels[int(exact.log_posterior.argmax())], truth))
        self.exact_rows.append(row)
        orders = torch.stack([torch.randperm(n, generator=self.generator) for _ in range(self.orders)]) \
            if self.orders else torch.zeros((0, n), dtype=torch.long)
        log_q = {}
        for name, m in self.loaded.items():
            result = compare_one(m.net, x, exact, truth if truth is not None else exact.labels[0], orders,
                                 self.importance, self.sdpp_orders, self.generator)
            log_q[name] = result.pop("log_q")
            if truth is None:
                for key in [k for k in result if k.startswith("mc_true_")]:
                    result.pop(key)
            self.per_model[name].append(_refuse_nan(m, i, result))
        if len(self.cases) < 3:
            self.cases.append({"title": f"data set {i} (N={n}): exact posterior vs q(c|x) along the identity order",
                               "labels": exact.labels, "log_p": exact.log_posterior, "log_q": log_q})


def validate(models: Mapping[str, str | os.PathLike | EnergyNet], N: int = 8, datasets: int = 50, seed: int = 0, *,
             data=None, model: CRPMixture | None = None, alpha: float | None = None, sigma_mu: float | None = None,
             sigma_x: float | None = None, orders: int = 4, importance: int = 1000, sdpp_orders: int = 500,
             dp: bool = False, force: bool = False, progress: bool = False) -> ValidationReport:
    """Compare amortized posteriors q(c | x) with the exact posterior on seeded data sets.

    :param models: ``{display name: network}`` in table order, each a checkpoint spec (a path or
        ``pretrained:NAME:OBJECTIVE``) or a loaded :class:`~gfncp_pyro.nn.EnergyNet`
        (:func:`gfncp_pyro.load_pretrained` gives one that knows its training config); empty:
        the exact posteriors only.
    :param N: points per data set (1..12 by enumeration, up to 20 by the subset DP).
    :param datasets: number of data sets drawn from the model with ``seed``; all sampling
        (orders, importance samples, SDPP) uses ``seed + 1``.
    :param data: points ``(N, D)`` or ``(B, N, D)`` to use instead of drawn data sets (no true
        partitions: the MC metrics are left out).
    :param model: the CRP mixture to validate on; default: the one the networks were trained
        for (``mog2d-small``'s without networks), with ``alpha``, ``sigma_mu``, ``sigma_x`` put
        in where given.
    :param orders: random orders R for q averaged over orders (Eq. (19) in [1]).
    :param importance: importance samples per data set and model.
    :param sdpp_orders: orders for SDPP (Eq. (32) in [1]).
    :param dp: the subset DP even for ``N <= 12`` (always beyond).
    :param force: run networks trained for other hyper-parameters (a warning instead of an
        error; a dimension that differs is always an error).
    :param progress: a progress bar over the data sets (stderr).
    :raises ModelMismatchError: networks trained for another model than each other or than the
        one validated on; an image or embedding network.
    :raises ValueError: other bad arguments, unreadable checkpoints
        (:class:`~gfncp_pyro.checkpoint.CheckpointError`), networks whose outputs are not finite.
    """
    _check_sizes(datasets, orders, importance, sdpp_orders)
    if not isinstance(models, Mapping):
        raise ValueError(f"models must map display names to checkpoints or networks, got {type(models).__name__}")
    loaded = {str(name): _load(str(name), m) for name, m in models.items()}
    mixture = _validation_model(loaded, model, {"alpha": alpha, "sigma_mu": sigma_mu, "sigma_x": sigma_x}, force)
    xs, truth = _data_sets(mixture, N, datasets, seed, data)
    n = xs.shape[1]
    use_dp = bool(dp) or n > MAX_ENUMERATION_N
    run = _Run(loaded, mixture, orders, importance, sdpp_orders, torch.Generator().manual_seed(seed + 1))
    start = time.perf_counter()
    for i in tqdm(range(xs.shape[0]), disable=not progress, desc="data sets", dynamic_ncols=True):
        if use_dp:
            run.dp(i, xs[i])
        else:
            run.enumeration(i, xs[i], truth[i] if truth is not None else None)
    elapsed = time.perf_counter() - start
    return ValidationReport(
        N=n, datasets=xs.shape[0], seed=seed, method=_DP if use_dp else _ENUMERATION,
        model={**{k: getattr(mixture, k) for k in _SPEC[:3]}, "dim": mixture.dim}, orders=orders,
        importance_samples=importance, sdpp_orders=sdpp_orders, elapsed_s=elapsed,
        checkpoints={name: m.spec for name, m in loaded.items()},
        exact={k: _summary([r[k] for r in run.exact_rows]) for k in run.exact_rows[0]},
        models={name: {k: _summary([r[k] for r in rows]) for k in rows[0]} for name, rows in run.per_model.items()},
        per_dataset=run.per_model, cases=run.cases)

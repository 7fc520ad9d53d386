"""Training configuration (a frozen dataclass) and named presets.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from typing import Literal, get_args

from .data.augment import EmbeddingAugment, ImageAugment
from .jsonable import JsonDataclass
from .nn import EnergyNetConfig

__all__ = ["TrainConfig", "PRESETS", "PAPER_OBJECTIVE", "preset"]

Objective = Literal["gfncp", "ncp"]
Flow = Literal["consistent", "paper", "offset", "state"]
Balance = Literal["flow", "trajectory", "variance"]
Gauge = Literal["final", "first", "normalizer", "none"]
Explore = Literal["uniform", "policy"]
BalanceTarget = Literal["mean", "max"]
SelectBy = Literal["loss", "panel_tv"]
Reward = Literal["cd", "nll"]
Data = Literal["mog", "images", "embeddings"]


@dataclass(frozen=True)
class TrainConfig(JsonDataclass):
    """Everything that defines a training run (Alg. 1 and App. A in [1]).

    Data model (the Pyro model of Eq. 1 the network is trained for):

    :param float alpha: CRP concentration of the training partitions.
    :param float sigma_mu: prior std of the cluster means.
    :param float sigma_x: std of points around their cluster mean.
    :param int n_min: smallest set size; sizes are uniform on ``[n_min, n_max]``.
    :param int n_max: largest set size.
    :param fixed_k: if set, every training partition has exactly this many clusters (points
        assigned uniformly at random among them, resampled if a cluster is empty); the paper's
        Table 2 setting. ``None`` (default): CRP partitions.

    Data sources other than the Gaussian mixture (:mod:`gfncp_pyro.data.sources`):

    :param data: ``"mog"`` (the Pyro model above), ``"images"`` (28x28 grey images, conv
        encoder) or ``"embeddings"`` (feature vectors, MLP encoder).
    :param data_path: the images (an IDX directory or ``.npz``) or embeddings file; given by
        the caller (``--data``).
    :param str split: which part trains (:func:`~gfncp_pyro.data.sources.split_pool`):
        ``"index:A:B"``, ``"classes:K"``, ``"classes:half"`` or ``"all"``; the rest is held out
        for testing and never reaches training.
    :param bool supervised: train on real points of distinct classes (true labels) instead of
        instance discrimination (Sec. 4.3 in [1]).
    :param augment: ``ImageAugment`` / ``EmbeddingAugment`` (or their dicts) for instance
        discrimination; default: the class's defaults for image and embedding data.

    Objective and optimisation (paper values where the paper gives them):

    :param objective: ``"gfncp"`` (MC + delta reg + lambda CD, Alg. 1) or ``"ncp"`` (NLL, Eq. 11).
    :param flow: GFNCP's flow parametrisation of the MC loss (Eq. 24), ``"consistent"``,
        ``"paper"``, ``"offset"`` or ``"state"`` (see :func:`gfncp_pyro.losses.marginal_consistency`;
        ``"offset"`` turns on the network's ``flow_head``, ``"state"`` its ``state_head``).
    :param balance: ``"flow"`` (Eq. 24), ``"trajectory"`` (its trajectory-balance form) or
        ``"variance"`` (trajectory balance with ``log Z`` optimised out, over
        ``balance_orders`` orders and ``balance_samples`` policy samples per set), see
        :class:`~gfncp_pyro.objectives.GFNCPObjective`.
    :param int balance_orders: see above.
    :param int balance_samples: see above.
    :param balance_target: ``"mean"`` or ``"max"``, see
        :class:`~gfncp_pyro.objectives.GFNCPObjective`.
    :param bool detach_reward: the variance balance trains the policy only (the reward learns
        from the likelihood), see :class:`~gfncp_pyro.objectives.GFNCPObjective`.
    :param gauge: what ``delta`` weighs: ``"final"`` (Eq. 28 on every set), ``"first"`` (the
        first state's energy), ``"normalizer"`` (each non-terminal step's log-normaliser) or
        ``"none"``.
    :param float mc_weight: weight of the MC term once fully on.
    :param int mc_warmup: iterations with MC weight 0 (the likelihood alone first).
    :param int mc_ramp: iterations over which the MC weight then rises linearly (with
        ``mc_calibrate``: the MC gradient into the energies).
    :param int mc_calibrate: iterations after the warm-up in which the MC term trains only the
        log-flow offset head (see :class:`~gfncp_pyro.objectives.GFNCPObjective`).
    :param float order_weight: weight of the variance of ``log q`` over the data partition's
        ``balance_orders`` orders (order invariance), see
        :class:`~gfncp_pyro.objectives.GFNCPObjective`.
    :param explore: exploration labels: ``"uniform"`` random partitions (Alg. 1) or ``"policy"``
        samples of the current policy.
    :param float beta: probability that a training set keeps its data partition; otherwise it
        gets a uniformly random partition (space exploration, Alg. 1). GFNCP only.
    :param float delta: weight of the energy regulariser (Eq. 28). Not given in [1]; ours.
    :param reward: how GFNCP learns the reward ``-log p(c | x)`` of Eq. (26): ``"cd"`` with the
        contrastive-divergence gradient of Eq. (27) and one policy sample (the paper), or
        ``"nll"`` with the trajectory likelihood ``-log q(c | x, rho)`` of Eq. (30), which equals
        ``-log p(c | x)`` wherever the MC loss is zero (the policy is then the reward's
        posterior for every order); ours, lower variance.
    :param float lambda_cd: weight of the reward term. Not given in [1]; ours.
    :param mc_steps: if set, the MC loss (and NCP's NLL) is estimated on this many random steps
        per set (an unbiased estimate of the sum over steps; faster for large N).
    :param int iterations: optimisation steps (paper: 5,000).
    :param int batch_size: sets per step (paper: 64).
    :param float lr: initial learning rate of Adam (paper: 5e-4), cosine-annealed to ``lr_min``
        (paper: 1e-6) over ``iterations``.
    :param float grad_clip: max global gradient norm.
    :param int seed: seeds the network initialisation and every random stream.
    :param int val_sets: size of the fixed, seeded validation set (selects the best checkpoint).
    :param int val_every: iterations between validations and periodic checkpoints.
    :param int panel_sets: if > 0, every ``val_every`` iterations the model is also compared
        with the exact posterior on this many fixed seeded sets of ``panel_n`` points
        (:class:`~gfncp_pyro.fidelity.FidelityPanel`; seeds distinct from the validation
        report's); TV and entropies go to ``metrics.jsonl``. Gaussian mixtures only.
    :param int panel_n: the panel's set size (enumeration: at most 10).
    :param select_by: what picks ``best.pt``: ``"loss"`` (validation loss) or ``"panel_tv"``
        (the panel's mean TV; needs ``panel_sets > 0``).
    :param str device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    :param bool bf16: bf16 autocast of the network on CUDA (ignored on CPU).
    """

    preset: str = "custom"
    net: EnergyNetConfig = field(default_factory=EnergyNetConfig)
    alpha: float = 1.0
    sigma_mu: float = 10.0
    sigma_x: float = 1.0
    n_min: int = 100
    n_max: int = 1000
    fixed_k: int | None = None
    data: Data = "mog"
    data_path: str | None = None
    split: str = "all"
    supervised: bool = False
    augment: ImageAugment | EmbeddingAugment | None = None
    objective: Objective = "gfncp"
    flow: Flow = "consistent"
    balance: Balance = "variance"
    balance_orders: int = 4
    balance_samples: int = 2
    balance_target: BalanceTarget = "mean"
    detach_reward: bool = True
    gauge: Gauge = "none"
    mc_weight: float = 0.1
    mc_warmup: int = 400
    mc_ramp: int = 400
    mc_calibrate: int = 0
    order_weight: float = 0.0
    explore: Explore = "uniform"
    beta: float = 1.0
    reward: Reward = "nll"
    delta: float = 0.0
    lambda_cd: float = 1.0
    mc_steps: int | None = None
    iterations: int = 5000
    batch_size: int = 64
    lr: float = 5e-4
    lr_min: float = 1e-6
    grad_clip: float = 10.0
    seed: int = 0
    val_sets: int = 256
    val_every: int = 100
    panel_sets: int = 0
    panel_n: int = 8
    select_by: SelectBy = "loss"
    device: str = "auto"
    bf16: bool = False

    def __post_init__(self):
        if isinstance(self.net, dict):
            object.__setattr__(self, "net", EnergyNetConfig.from_dict(self.net))
        for name, allowed in _literal_fields().items():  # the allowed values are the Literals' own
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.flow == "offset" and not self.net.flow_head:
            object.__setattr__(self, "net", dataclasses.replace(self.net, flow_head=True))
        if self.flow == "state" and not self.net.state_head:
            object.__setattr__(self, "net", dataclasses.replace(self.net, state_head=True))
        if self.objective == "gfncp":
            from .objectives import objective_from_config

            objective_from_config(self)  # the objective's own checks (e.g. balance='variance')
        for name in ("mc_warmup", "mc_ramp", "mc_calibrate", "panel_sets"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not isinstance(self.panel_n, int) or not 2 <= self.panel_n <= 10:
            raise ValueError(f"panel_n must be an integer in [2, 10], got {self.panel_n!r}")
        if self.select_by == "panel_tv" and self.panel_sets == 0:
            raise ValueError("select_by='panel_tv' needs panel_sets > 0")
        for name in ("alpha", "sigma_mu", "sigma_x", "lr", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("delta", "lambda_cd", "lr_min", "mc_weight", "order_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta}")
        for name in ("n_min", "iterations", "batch_size", "val_sets", "val_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.n_max, int) or self.n_max < self.n_min:
            raise ValueError(f"n_max must be an integer >= n_min={self.n_min}, got {self.n_max!r}")
        if self.fixed_k is not None and not 1 <= self.fixed_k <= self.n_min:
            raise ValueError(f"fixed_k must lie in [1, n_min={self.n_min}] or be None, got {self.fixed_k}")
        if self.mc_steps is not None and (not isinstance(self.mc_steps, int) or self.mc_steps < 1):
            raise ValueError(f"mc_steps must be a positive integer or None, got {self.mc_steps!r}")
        self._check_data()

    def _check_data(self) -> None:
        for name, value in self.kind.check(self).items():  # the kind's own checks and normalised fields
            object.__setattr__(self, name, value)

    @property
    def kind(self):
        """The :class:`~gfncp_pyro.data.kinds.DataKind` of :attr:`data` (which owns the data's
        checks, encoder, pool and sources)."""
        from .data.kinds import data_kind

        return data_kind(self.data)

    @property
    def explores(self) -> bool:
        """Training batches get exploration partitions (GFNCP with ``beta < 1``, Alg. 1 in [1])."""
        return self.objective == "gfncp" and self.beta < 1.0

    @property
    def dim(self) -> int:
        """Dimension of vector points (Gaussian mixtures, embeddings)."""
        return self.net.x_dim

    @property
    def point_shape(self) -> tuple[int, ...]:
        """Shape of one point: ``(x_dim,)`` or ``(1, 28, 28)``."""
        return self.net.point_shape

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (``net`` fields may be given as ``net_<name>``)."""
        net_changes = {k[4:]: changes.pop(k) for k in list(changes) if k.startswith("net_")}
        if net_changes:
            changes["net"] = dataclasses.replace(self.net, **net_changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The config of a saved dict. Dicts written before the objective fields existed (no
        ``"balance"`` key: checkpoints of gfncp-pyro up to 2026-11) get the values those runs
        used, ``balance="flow"`` and ``gauge="final"``, not today's defaults."""
        if isinstance(data, dict) and "balance" not in data:
            data = {**_LEGACY_OBJECTIVE, **data}
        return super().from_dict(data)


@functools.cache
def _literal_fields() -> dict[str, tuple]:
    """``{field: allowed values}`` for every ``Literal``-typed field of :class:`TrainConfig`
    (``data`` aside: the registry of data kinds, :mod:`gfncp_pyro.data.kinds`, decides it)."""
    hints = typing.get_type_hints(TrainConfig)
    return {name: get_args(hint) for name, hint in hints.items()
            if typing.get_origin(hint) is Literal and name != "data"}


_LEGACY_OBJECTIVE = {"balance": "flow", "gauge": "final", "mc_weight": 1.0, "mc_warmup": 0, "mc_ramp": 0,
                     "balance_samples": 0, "detach_reward": False}

PAPER_OBJECTIVE: dict = dict(flow="paper", balance="flow", reward="cd", delta=0.6, lambda_cd=0.4, gauge="final",
                             mc_weight=1.0, mc_warmup=0, mc_ramp=0)
"""GFNCP's objective as the paper states it (Alg. 1, Eq. 29: MC with the min-shifted flow, Eq. 28 on every
set, CD with one policy sample; delta and lambda of the reference code). The presets that estimate the
MC sum on sampled steps (``mc_steps``) keep it; the default objective needs every step."""

PRESETS: dict[str, TrainConfig] = {
    # App. A.1 of [1]: D = 2, sigma_mu = 10, sigma_x = 1, alpha = 6, N in [100, 1000].
    "mog2d": TrainConfig(preset="mog2d", alpha=6.0, sigma_mu=10.0, sigma_x=1.0, n_min=100, n_max=1000),
    # Table 2 of [1]: K fixed to 6.
    "mog2d-k6": TrainConfig(
        preset="mog2d-k6", alpha=6.0, sigma_mu=10.0, sigma_x=1.0, n_min=100, n_max=1000, fixed_k=6
    ),
    # A CPU-sized version of mog2d: same data model, smaller sets and batches, 32 sampled steps
    # of the MC sum, 2,000 iterations (about 1-2 hours on 2 cores).
    "mog2d-cpu": TrainConfig(
        preset="mog2d-cpu", alpha=6.0, sigma_mu=10.0, sigma_x=1.0, n_min=20, n_max=200, mc_steps=32,
        batch_size=32, iterations=2000, beta=0.999, **PAPER_OBJECTIVE,
    ),
    # Exact validation (python -m validation.exact): at N = 8 the posterior is uncertain (mean
    # entropy about 1.5 nats), so comparisons discriminate.
    "mog2d-small": TrainConfig(
        preset="mog2d-small", alpha=1.0, sigma_mu=5.0, sigma_x=1.0, n_min=1, n_max=32, panel_sets=20,
        select_by="panel_tv", iterations=3000,
    ),
    # App. A.1-A.2 of [1] for MNIST (conv encoder, width 256; alpha 1, beta 0.99, N in
    # [100, 1000], batch 64, 5K iterations). Only the MNIST test split is shipped offline, so by
    # default images 0-4,999 train and 5,000-9,999 test (pass --data DIR).
    "mnist": TrainConfig(
        preset="mnist", data="images", split="index:0:5000",
        net=EnergyNetConfig(encoder="conv", h_dim=256, g_dim=256, hidden=256),
        alpha=1.0, n_min=100, n_max=1000,
    ),
    # A CPU-sized MNIST run (about an hour on 2 cores): narrower network, smaller sets and batches.
    "mnist-cpu": TrainConfig(
        preset="mnist-cpu", data="images", split="index:0:5000", net=EnergyNetConfig(encoder="conv"),
        alpha=1.0, beta=0.99, n_min=20, n_max=100, batch_size=16, iterations=1200, mc_steps=16,
        val_sets=64, val_every=100, **PAPER_OBJECTIVE,
    ),
    # Unseen classes (Omniglot, 40 classes of 20): train on the 20 smallest class ids, test on the
    # others. alpha 5 keeps test sets of N = 100 feasible (clusters of at most 20 images).
    "omniglot-cpu": TrainConfig(
        preset="omniglot-cpu", data="images", split="classes:20", net=EnergyNetConfig(encoder="conv"),
        alpha=5.0, beta=0.99, n_min=20, n_max=100, batch_size=16, iterations=800, mc_steps=16,
        val_sets=64, val_every=100, **PAPER_OBJECTIVE,
    ),
    # The paper's ImageNet setting on user-provided 384-d (e.g. DINO ViT-S) embeddings: MLP
    # encoder, beta 0.999, unseen classes (half of the classes train).
    "embeddings": TrainConfig(
        preset="embeddings", data="embeddings", split="classes:half", net=EnergyNetConfig(x_dim=384),
        alpha=1.0, n_min=100, n_max=1000,
    ),
    "embeddings-cpu": TrainConfig(
        preset="embeddings-cpu", data="embeddings", split="classes:half", net=EnergyNetConfig(x_dim=384),
        alpha=1.0, beta=0.999, n_min=20, n_max=200, batch_size=32, iterations=2000, mc_steps=32,
        **PAPER_OBJECTIVE,
    ),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A named preset, optionally with fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]

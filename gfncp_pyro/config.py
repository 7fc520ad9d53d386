"""Training configuration: a frozen dataclass of typed sections, and named presets.

A :class:`TrainConfig` nests one object per concern:

- ``model``: :class:`~gfncp_pyro.sections.ModelSpec`, the Pyro model of Eq. (1) in [1] the
  network is trained for (CRP ``alpha``, the Gaussian likelihood's ``sigma_mu``/``sigma_x``, the
  set-size range); the points' dimension is the network's input size (:attr:`TrainConfig.dim`);
- ``data``: a data kind (:class:`~gfncp_pyro.data.kinds.MixtureData`,
  :class:`~gfncp_pyro.data.kinds.ImageData` or :class:`~gfncp_pyro.data.kinds.EmbeddingData`)
  that owns its fields, checks, encoder and sources;
- ``net``: the network (:class:`~gfncp_pyro.nn.EnergyNetConfig`);
- ``objective``: :class:`~gfncp_pyro.objectives.GFNCPObjective` or
  :class:`~gfncp_pyro.objectives.NCPObjective`, the object the trainer calls;
- ``optim``, ``monitor``, ``runtime``: :mod:`gfncp_pyro.sections`.

Saved configs are versioned (``{"version": 2, ...}``); :meth:`TrainConfig.from_dict` also reads
the flat dicts of version 1 (checkpoints written up to 2026-12-02, the shipped ones included).
:meth:`TrainConfig.replace` takes section objects or the flat field names of version 1 (the CLI's
``--flag`` names), so ``preset("mog2d-small", lr=1e-3, objective="ncp")`` works.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ._checks import check_int
from .data.kinds import DataKind, EmbeddingData, ImageData, MixtureData, data_kind_class, data_kind_from_dict
from .jsonable import JsonDataclass
from .nn import EnergyNetConfig
from .objectives import OBJECTIVES, GFNCPObjective, NCPObjective, objective_class, objective_from_dict
from .sections import ModelSpec, MonitorConfig, OptimConfig, RuntimeConfig

__all__ = ["TrainConfig", "PRESETS", "DEFAULT_OBJECTIVE", "PAPER_OBJECTIVE", "CONFIG_VERSION", "preset"]

CONFIG_VERSION = 2
"""The layout :meth:`TrainConfig.to_dict` writes (1: flat, up to 2026-12-02; 2: sections)."""

DEFAULT_OBJECTIVE = GFNCPObjective()
"""GFNCP's default objective (the field defaults of :class:`~gfncp_pyro.objectives.GFNCPObjective`:
the variance balance, ``validation/results/ablation.md``)."""

PAPER_OBJECTIVE = GFNCPObjective(flow="paper", balance="flow", reward="cd", delta=0.6, lambda_cd=0.4, gauge="final",
                                 mc_weight=1.0, mc_warmup=0, mc_ramp=0)
"""GFNCP's objective as the paper states it (Alg. 1, Eq. 29: MC with the min-shifted flow, Eq. 28 on every
set, CD with one policy sample; delta and lambda of the reference code). The presets that estimate the
MC sum on sampled steps (``mc_steps``) use it; the default objective needs every step. The paper's
``beta`` is 0.99 (App. A in [1]); each preset sets its own."""

_SECTIONS = {"model": ModelSpec, "optim": OptimConfig, "monitor": MonitorConfig, "runtime": RuntimeConfig}
_READERS = {"data": data_kind_from_dict, "objective": objective_from_dict, "net": EnergyNetConfig.from_dict,
            **{name: cls.from_dict for name, cls in _SECTIONS.items()}}
_TYPES = {"data": DataKind, "objective": (GFNCPObjective, NCPObjective), "net": EnergyNetConfig, **_SECTIONS}
_DATA_ALIASES = {"data_path": "path"}  # flat name -> data-kind field
_FLAT_DATA_NAMES = {field: flat for flat, field in _DATA_ALIASES.items()}  # data-kind field -> flat name
_DATA_FLAT = ("data_path", "split", "supervised", "augment", "fixed_k")
_LEGACY_OBJECTIVE = {"balance": "flow", "gauge": "final", "mc_weight": 1.0, "mc_warmup": 0, "mc_ramp": 0,
                     "balance_samples": 0, "detach_reward": False}


_SECTION_OF = {**{f.name: "objective" for cls in OBJECTIVES.values() for f in dataclasses.fields(cls)},
               **{name: "data" for name in _DATA_FLAT},
               **{f.name: section for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls)}}
"""The section each flat (version-1) field name belongs to (the names are unique across sections)."""


def _section_of(name: str) -> str | None:
    """The section a flat (version-1) field name belongs to, ``None`` if it is none's."""
    return _SECTION_OF.get(name)


@dataclass(frozen=True)
class TrainConfig(JsonDataclass):
    """Everything that defines a training run (Alg. 1 and App. A in [1]), in sections.

    :param str preset: the preset it came from (``"custom"`` otherwise).
    :param int seed: seeds the network initialisation and every random stream (per seed, rank
        and step, so a resumed run draws what an uninterrupted one would).
    :param ModelSpec model: the generative model of Eq. (1) in [1] and the set-size range.
    :param DataKind data: where the training and test sets come from.
    :param EnergyNetConfig net: the network.
    :param objective: :class:`~gfncp_pyro.objectives.GFNCPObjective` (default:
        :data:`DEFAULT_OBJECTIVE`) or :class:`~gfncp_pyro.objectives.NCPObjective`.
    :param OptimConfig optim: Adam, cosine learning rate, clipping, iterations, batch size.
    :param MonitorConfig monitor: validation and the choice of ``best.pt``.
    :param RuntimeConfig runtime: device, bf16, threads.

    Every section may also be given as its dict (``to_dict`` form).
    """

    preset: str = "custom"
    seed: int = 0
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataKind = field(default_factory=MixtureData)
    net: EnergyNetConfig = field(default_factory=EnergyNetConfig)
    objective: GFNCPObjective | NCPObjective = field(default_factory=GFNCPObjective)
    optim: OptimConfig = field(default_factory=OptimConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self):
        for name, read in _READERS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                value = read(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, _TYPES[name]):
                raise ValueError(f"TrainConfig.{name} must be a {_type_names(_TYPES[name])} (or its dict), "
                                 f"got {type(value).__name__}")
        if not isinstance(self.preset, str):
            raise ValueError(f"preset must be a string, got {self.preset!r}")
        object.__setattr__(self, "seed", check_int(self.seed, "seed", 0))
        flow = getattr(self.objective, "flow", None)
        if flow == "offset" and not self.net.flow_head:
            object.__setattr__(self, "net", dataclasses.replace(self.net, flow_head=True))
        if flow == "state" and not self.net.state_head:
            object.__setattr__(self, "net", dataclasses.replace(self.net, state_head=True))
        self.data.check(self)

    @property
    def dim(self) -> int:
        """Dimension of vector points (Gaussian mixtures, embeddings): the network's input size."""
        return self.net.x_dim

    @property
    def point_shape(self) -> tuple[int, ...]:
        """Shape of one point: ``(x_dim,)`` or ``(1, 28, 28)``."""
        return self.net.point_shape

    def mixture(self, variant: str = "dynamic"):
        """The Pyro model (:class:`~gfncp_pyro.models.CRPMixture`) of ``model`` in dimension :attr:`dim`."""
        return self.model.mixture(self.dim, variant)

    def to_dict(self) -> dict:
        """The version-2 JSON dict: ``{"version": 2, "preset", "seed", "model": {...}, "data":
        {"kind", ...}, "net": {...}, "objective": {"name", ...}, "optim", "monitor", "runtime"}``."""
        out = {"version": CONFIG_VERSION, "preset": self.preset, "seed": self.seed}
        for f in dataclasses.fields(self):
            if f.name not in out:
                out[f.name] = getattr(self, f.name).to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The config of a saved dict of any version: 2 (sections), or 1 (flat; dicts without a
        ``"balance"`` key, from before the objective fields existed, get the objective those
        runs used, ``balance="flow"`` and ``gauge="final"``, not today's defaults)."""
        if not isinstance(data, dict):
            raise ValueError(f"TrainConfig.from_dict needs a dict, got {type(data).__name__}")
        version = data.get("version", 1)
        if version == 1:
            return _from_flat(data)
        if version != CONFIG_VERSION:
            raise ValueError(f"this config has version {version!r}; this gfncp-pyro reads versions 1 and "
                             f"{CONFIG_VERSION}: upgrade gfncp-pyro to read it")
        fields = {k: v for k, v in data.items() if k != "version"}
        return super().from_dict(fields)

    def flat(self) -> dict:
        """Every setting under its flat (version-1, ``--flag``) name: ``{"alpha": 1.0, "data":
        "mog", "objective": "gfncp", "flow": ..., "net_x_dim": 2, ...}`` (for messages and diffs)."""
        out = {"preset": self.preset, "seed": self.seed, "data": self.data.name, "objective": self.objective.name}
        for section in _SECTIONS:
            out.update(dataclasses.asdict(getattr(self, section)))
        for name, value in dataclasses.asdict(self.data).items():
            out[_FLAT_DATA_NAMES.get(name, name)] = value
        out.update(dataclasses.asdict(self.objective))
        out.update({f"net_{k}": v for k, v in dataclasses.asdict(self.net).items()})
        return out

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some settings changed. Names: a section (``model=ModelSpec(...)``,
        ``objective=NCPObjective()``, ``data=ImageData(...)``, ...), or a flat field name
        (``lr``, ``alpha``, ``flow``, ``data_path``, ``net_x_dim``, ...: the setting of that name
        in its section). ``data="images"`` / ``objective="ncp"`` switch the kind of data or the
        objective by name (a new objective keeps ``mc_steps``; GFNCP with sampled steps is
        :data:`PAPER_OBJECTIVE`, as in the presets, since the default needs every step). A field the chosen data kind or
        objective does not have is an error that names it."""
        top = {k: changes.pop(k) for k in ("preset", "seed", *_READERS)
               if k in changes and not (k in ("data", "objective") and isinstance(changes[k], str))}
        data = top.get("data", self.data)
        if isinstance(changes.get("data"), str):
            data = _switch_kind(data, changes.pop("data"))
        objective = top.get("objective", self.objective)
        if isinstance(changes.get("objective"), str):
            objective = _switch_objective(objective, changes.pop("objective"))
        grouped: dict[str, dict] = {}
        net_changes = {k[4:]: changes.pop(k) for k in list(changes) if k.startswith("net_")}
        for name, value in changes.items():
            section = _section_of(name)
            if section is None:
                raise ValueError(f"unknown TrainConfig setting {name!r}; settings are the sections "
                                 f"{sorted(_READERS)}, 'preset', 'seed', net_<field> and the sections' fields")
            grouped.setdefault(section, {})[_DATA_ALIASES.get(name, name)] = value
        if "data" in grouped:
            data = _replace_fields(data, grouped.pop("data"), f"{data.name!r} data")
        if "objective" in grouped:
            objective = _replace_fields(objective, grouped.pop("objective"), f"the {objective.name} objective")
        sections = {name: dataclasses.replace(top.get(name, getattr(self, name)), **fields)
                    for name, fields in grouped.items()}
        net = top.get("net", self.net)
        if net_changes:
            net = dataclasses.replace(net, **net_changes)
        return dataclasses.replace(self, **{**top, **sections, "data": data, "objective": objective, "net": net})


def _type_names(types) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))


def _replace_fields(obj, fields: dict, what: str):
    """``dataclasses.replace(obj, **fields)``, refusing fields ``obj`` does not have."""
    own = {f.name for f in dataclasses.fields(obj)}
    foreign = sorted(set(fields) - own)
    if foreign:
        shown = [_FLAT_DATA_NAMES.get(name, name) for name in foreign]
        if isinstance(obj, MixtureData):
            raise ValueError(f"{', '.join(shown)}: data_path, split, supervised and augment only apply to image or "
                             f"embedding data, not to {what}")
        if isinstance(obj, DataKind) and "fixed_k" in foreign:
            raise ValueError(f"fixed_k applies to Gaussian mixtures only, not to {what}")
        raise ValueError(f"{', '.join(shown)} do(es) not apply to {what} (its settings: {sorted(own)})")
    return dataclasses.replace(obj, **fields)


def _switch_kind(current: DataKind, name: str) -> DataKind:
    kind = data_kind_class(name)
    return current if current.name == name else kind()


def _switch_objective(current, name: str):
    objective_class(name)  # refuses unknown names
    if current.name == name:
        return current
    if name == "ncp":
        return NCPObjective(mc_steps=current.mc_steps)
    # the default objective needs every step; with sampled steps GFNCP is the paper's (as in the presets)
    return DEFAULT_OBJECTIVE if current.mc_steps is None else dataclasses.replace(PAPER_OBJECTIVE, mc_steps=current.mc_steps)


def _from_flat(data: dict) -> TrainConfig:
    """The reader of version 1: one flat dict (``data``/``objective`` names and every field
    at top level). Settings a version-1 config carried for another kind of data or objective
    (``data_path=None`` of a mixture, the GFNCP fields of an NCP run) are dropped when unused."""
    flat = dict(data)
    flat.pop("version", None)
    unknown = sorted(k for k in flat if k not in ("preset", "seed", "net", "data", "objective") and _section_of(k) is None)
    if unknown:
        raise ValueError(f"unknown TrainConfig fields (unknown keys) {unknown} in a version-1 (flat) config")
    if "balance" not in flat:
        flat = {**_LEGACY_OBJECTIVE, **flat}
    kind = flat.pop("data", "mog")
    data_cls, objective_cls = data_kind_class(kind), objective_class(flat.pop("objective", "gfncp"))
    data_fields = {f.name for f in dataclasses.fields(data_cls)}
    for name in _DATA_FLAT:
        if name in flat and _DATA_ALIASES.get(name, name) not in data_fields:
            value = flat.pop(name)
            if value not in (None, False, "all"):
                raise ValueError(f"a saved {kind!r} config sets {name}={value!r}, which only applies to other data")
    if objective_cls is NCPObjective:
        for name in [k for k in flat if _section_of(k) == "objective" and k != "mc_steps"]:
            flat.pop(name)
    net = flat.pop("net", {})
    base = TrainConfig(data=data_cls(), net=net, objective=objective_cls())
    return base.replace(**flat)


PRESETS: dict[str, TrainConfig] = {
    # App. A.1 of [1]: D = 2, sigma_mu = 10, sigma_x = 1, alpha = 6, N in [100, 1000].
    "mog2d": TrainConfig(preset="mog2d", model=ModelSpec(alpha=6.0, sigma_mu=10.0, n_min=100, n_max=1000)),
    # Table 2 of [1]: K fixed to 6.
    "mog2d-k6": TrainConfig(preset="mog2d-k6", model=ModelSpec(alpha=6.0, sigma_mu=10.0, n_min=100, n_max=1000),
                            data=MixtureData(fixed_k=6)),
    # A CPU-sized version of mog2d: same data model, smaller sets and batches, 32 sampled steps
    # of the MC sum, 2,000 iterations (about 1-2 hours on 2 cores).
    "mog2d-cpu": TrainConfig(
        preset="mog2d-cpu", model=ModelSpec(alpha=6.0, sigma_mu=10.0, n_min=20, n_max=200),
        objective=dataclasses.replace(PAPER_OBJECTIVE, mc_steps=32, beta=0.999),
        optim=OptimConfig(batch_size=32, iterations=2000),
    ),
    # Exact validation (python -m validation.exact): at N = 8 the posterior is uncertain (mean
    # entropy about 1.5 nats), so comparisons discriminate.
    "mog2d-small": TrainConfig(
        preset="mog2d-small", model=ModelSpec(alpha=1.0, sigma_mu=5.0, n_min=1, n_max=32),
        optim=OptimConfig(iterations=3000), monitor=MonitorConfig(panel_sets=20, select_by="panel_tv"),
    ),
    # App. A.1-A.2 of [1] for MNIST (conv encoder, width 256; alpha 1, beta 0.99, N in
    # [100, 1000], batch 64, 5K iterations). Only the MNIST test split is shipped offline, so by
    # default images 0-4,999 train and 5,000-9,999 test (pass --data DIR).
    "mnist": TrainConfig(
        preset="mnist", model=ModelSpec(alpha=1.0, n_min=100, n_max=1000), data=ImageData(split="index:0:5000"),
        net=EnergyNetConfig(encoder="conv", h_dim=256, g_dim=256, hidden=256),
    ),
    # A CPU-sized MNIST run (about an hour on 2 cores): narrower network, smaller sets and batches.
    "mnist-cpu": TrainConfig(
        preset="mnist-cpu", model=ModelSpec(alpha=1.0, n_min=20, n_max=100), data=ImageData(split="index:0:5000"),
        net=EnergyNetConfig(encoder="conv"), objective=dataclasses.replace(PAPER_OBJECTIVE, mc_steps=16, beta=0.99),
        optim=OptimConfig(batch_size=16, iterations=1200), monitor=MonitorConfig(val_sets=64, val_every=100),
    ),
    # Unseen classes (Omniglot, 40 classes of 20): train on the 20 smallest class ids, test on the
    # others. alpha 5 keeps test sets of N = 100 feasible (clusters of at most 20 images).
    "omniglot-cpu": TrainConfig(
        preset="omniglot-cpu", model=ModelSpec(alpha=5.0, n_min=20, n_max=100), data=ImageData(split="classes:20"),
        net=EnergyNetConfig(encoder="conv"), objective=dataclasses.replace(PAPER_OBJECTIVE, mc_steps=16, beta=0.99),
        optim=OptimConfig(batch_size=16, iterations=800), monitor=MonitorConfig(val_sets=64, val_every=100),
    ),
    # The paper's ImageNet setting on user-provided 384-d (e.g. DINO ViT-S) embeddings: MLP
    # encoder, beta 0.999, unseen classes (half of the classes train).
    "embeddings": TrainConfig(
        preset="embeddings", model=ModelSpec(alpha=1.0, n_min=100, n_max=1000),
        data=EmbeddingData(split="classes:half"), net=EnergyNetConfig(x_dim=384),
    ),
    "embeddings-cpu": TrainConfig(
        preset="embeddings-cpu", model=ModelSpec(alpha=1.0, n_min=20, n_max=200),
        data=EmbeddingData(split="classes:half"), net=EnergyNetConfig(x_dim=384),
        objective=dataclasses.replace(PAPER_OBJECTIVE, mc_steps=32, beta=0.999),
        optim=OptimConfig(batch_size=32, iterations=2000),
    ),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A named preset, optionally with fields overridden (:meth:`TrainConfig.replace` names)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]

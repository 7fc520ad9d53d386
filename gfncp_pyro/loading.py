"""One loader for trained networks: the network, the Pyro model it was trained for, its config.

A checkpoint (:mod:`gfncp_pyro.checkpoint`) carries the whole training configuration
(:class:`~gfncp_pyro.config.TrainConfig`), which holds the model spec ``config.model``: the CRP
concentration ``alpha``, the likelihood's ``sigma_mu`` and ``sigma_x`` (isotropic Gaussian,
Eq. (1) in [1]); the point shape (``config.net``) and the data kind (``config.data``).
:func:`model_for` gives the :class:`~gfncp_pyro.models.CRPMixture` of it
(``config.mixture()``, for mixture data only), and :func:`load_pretrained` returns the three
together::

    network, model, config = load_pretrained("mog2d-small")          # shipped, objective gfncp
    network, model, config = load_pretrained("pretrained:mog2d-small:ncp")
    network, model, config = load_pretrained("runs/small-gfncp/best.pt")

The returned network remembers its config (``network.gfncp_config``), so that
:class:`~gfncp_pyro.guides.GFNCPGuide` can refuse a model with other hyper-parameters
(:func:`check_model`).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_checkpoint, load_model
from .config import TrainConfig
from .models import CRPMixture, Variant
from .nn import EnergyNet

__all__ = ["ModelMismatchError", "NonFiniteOutputsError", "check_model", "check_network_outputs", "initial_weights",
           "load_pretrained", "model_for", "network_config", "parse_shipped", "resolve_model", "shipped_path"]

DEFAULT_OBJECTIVE = "gfncp"
_PREFIX = "pretrained:"


class ModelMismatchError(ValueError):
    """A network is used for a model other than the one it was trained for."""


class NonFiniteOutputsError(ValueError):
    """A network whose weights are finite but whose outputs are not (:func:`check_network_outputs`)."""


def _pretrained_dir() -> Path:
    from .pretrained import PRETRAINED_DIR

    return PRETRAINED_DIR


def _available() -> list[str]:
    return sorted(p.stem for p in _pretrained_dir().glob("*.pt"))


def parse_shipped(spec: str) -> tuple[str, str] | None:
    """``(NAME, OBJECTIVE)`` of a shipped model's spec, ``None`` for anything else (a path).

    Accepted: ``pretrained:NAME:OBJECTIVE`` and, when no file of that name exists, ``NAME`` (``"mog2d-small"``), ``NAME-OBJECTIVE``
    (``"mog2d-small-ncp"``) or ``NAME:OBJECTIVE``.

    :raises ValueError: on a malformed ``pretrained:`` spec.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise ValueError(f"a model spec must be a name or a checkpoint path, got {type(spec).__name__}")
    spec = os.fspath(spec)
    if spec.startswith(_PREFIX):
        parts = spec[len(_PREFIX):].split(":")
        if len(parts) != 2 or not all(parts):
            raise ValueError("use pretrained:NAME:OBJECTIVE, e.g. pretrained:mog2d-small:gfncp "
                             "(or just NAME, e.g. mog2d-small, in Python)")
        return parts[0], parts[1]
    if Path(spec).exists() or spec.endswith(".pt") or os.sep in spec:
        return None
    if ":" in spec:
        name, _, objective = spec.partition(":")
        return name, objective
    if spec in _available():  # NAME-OBJECTIVE (objective names hold no '-')
        name, _, objective = spec.rpartition("-")
        return name, objective
    return spec, DEFAULT_OBJECTIVE


def shipped_path(name: str, objective: str = DEFAULT_OBJECTIVE) -> Path:
    """The file of a shipped model; :class:`~gfncp_pyro.checkpoint.CheckpointError` if absent."""
    path = _pretrained_dir() / f"{name}-{objective}.pt"
    if not path.is_file():
        raise CheckpointError(
            f"no shipped model {name!r} for objective {objective!r}; available: {_available()} "
            "(give NAME, NAME-OBJECTIVE, pretrained:NAME:OBJECTIVE or a checkpoint path)"
        )
    return path


def model_for(config: TrainConfig, variant: Variant = "dynamic") -> CRPMixture | None:
    """The CRP mixture a network was trained on, from its config (Eq. (1) in [1]).

    :returns: ``config.mixture(variant)``, the model of ``config.model`` in dimension
        ``config.dim``, for Gaussian-mixture training data (``config.data.is_mixture``); ``None`` for image or
        embedding data, whose training sets do not come from a Pyro model.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a gfncp_pyro.config.TrainConfig, got {type(config).__name__}")
    if not config.data.is_mixture:
        return None
    return config.mixture(variant)


def load_pretrained(name_or_path: str | os.PathLike, *, map_location="cpu", variant: Variant = "dynamic"):
    """A trained network, the model it was trained for, and its training config.

    :param name_or_path: a shipped model (``"mog2d-small"``, ``"mog2d-small-ncp"``,
        ``"pretrained:mog2d-small:gfncp"``, see :func:`parse_shipped`) or a checkpoint path.
    :param map_location: where to load the tensors (as in :func:`torch.load`).
    :param variant: the variant of the returned :class:`~gfncp_pyro.models.CRPMixture`.
    :returns: ``(network, model, config)``: the :class:`~gfncp_pyro.nn.EnergyNet` in eval
        mode (with ``network.gfncp_config = config``), the
        :class:`~gfncp_pyro.models.CRPMixture` of :func:`model_for` (``None`` for image and
        embedding models) and the :class:`~gfncp_pyro.config.TrainConfig`.
    :raises CheckpointError: if the file is missing, corrupt or does not fit this version.
    """
    shipped = parse_shipped(name_or_path)
    path = shipped_path(*shipped) if shipped else Path(name_or_path)
    network, config = load_model(path, map_location=map_location)
    network.gfncp_config = config
    return network, model_for(config, variant), config


def initial_weights(spec: str | os.PathLike, config: TrainConfig, *, map_location="cpu") -> tuple[dict, dict]:
    """The network weights of a warm start (``config.optim.init``) and where they came from.

    :param spec: a checkpoint path or a shipped model spec (as :func:`load_pretrained`).
    :param TrainConfig config: the run that starts from them: its ``net`` must equal the
        checkpoint's (the data, model spec and objective may differ).
    :returns: ``(state_dict, info)``, ``info = {"path", "sha256", "step", "objective",
        "preset"}`` of the checkpoint, for the run's records.
    :raises CheckpointError: if the file is missing or corrupt, or its network has other sizes.
    """
    shipped = parse_shipped(spec)
    path = shipped_path(*shipped) if shipped else Path(spec)
    state = load_checkpoint(path, map_location=map_location)
    saved = TrainConfig.from_dict(state["config"])
    if saved.net != config.net:
        theirs, ours = saved.net.to_dict(), config.net.to_dict()
        diff = {k: (theirs.get(k), ours.get(k)) for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)}
        raise CheckpointError(f"cannot start from {path}: its network differs from this run's (checkpoint, run): "
                              f"{diff}; train with the checkpoint's network settings (e.g. its --preset) or "
                              "drop --init")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    info = {"path": str(path), "sha256": digest, "step": int(state.get("step", 0)),
            "objective": saved.objective.name, "preset": saved.preset}
    return state["model"], info


def _spec_of(config: TrainConfig) -> dict:
    m = config.model
    return {"alpha": m.alpha, "sigma_mu": m.sigma_mu, "sigma_x": m.sigma_x, "dim": config.dim}


def check_model(model: CRPMixture, config: TrainConfig | None, *, force: bool = False,
                what: str = "the network") -> None:
    """Refuse a model whose hyper-parameters differ from those ``config`` trained for.

    Compares ``alpha``, ``sigma_mu``, ``sigma_x`` and the dimension (relative tolerance 1e-9)
    and requires Gaussian-mixture training data. With ``force=True`` a mismatch only warns.
    ``config=None`` (a network of unknown provenance) checks nothing.

    :raises ModelMismatchError: on a mismatch without ``force``.
    """
    if config is None:
        return
    if not config.data.is_mixture:
        differ = f"it was trained on {config.data.name} data, not on a CRP mixture of Gaussians"
    else:
        trained = _spec_of(config)
        wanted = {"alpha": model.alpha, "sigma_mu": model.sigma_mu, "sigma_x": model.sigma_x, "dim": model.dim}
        bad = {k: (trained[k], wanted[k]) for k in trained
               if not math.isclose(float(trained[k]), float(wanted[k]), rel_tol=1e-9)}
        if not bad:
            return
        differ = "its hyper-parameters differ (trained, model): " + ", ".join(
            f"{k} {a} vs {b}" for k, (a, b) in bad.items())
    message = (f"{what} was not trained for {model!r}: {differ}. Use the model it was trained for "
               "(load_pretrained(...) returns it), or pass force=True to use it anyway")
    if not force:
        raise ModelMismatchError(message)
    warnings.warn(message, stacklevel=3)


def network_config(network: EnergyNet) -> TrainConfig | None:
    """The training config a loaded network carries (``None`` if it was not loaded by
    :func:`load_pretrained`)."""
    config = getattr(network, "gfncp_config", None)
    return config if isinstance(config, TrainConfig) else None


def check_network_outputs(network: EnergyNet, spec: str, num_points: int = 8, *, what: str | None = None) -> None:
    """Refuse a network whose outputs are not finite although its weights are (weights so large
    that the energies overflow): greedy decoding of one seeded set of standard-normal points must
    give a finite log q. Costs one decoding of ``num_points`` points and draws nothing from the
    global RNG.

    :param spec: the network's checkpoint, named in the message.
    :param what: how the message names the network instead (default ``"checkpoint SPEC"``).
    :raises NonFiniteOutputsError: naming ``spec`` and the value found.
    """
    from . import decoding

    param = next(network.parameters())
    x = torch.randn((num_points,) + tuple(network.point_shape), generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64).to(device=param.device, dtype=param.dtype)
    with torch.no_grad():
        _, log_q = decoding.greedy(network, x)
    if not math.isfinite(float(log_q)):
        raise NonFiniteOutputsError(
            f"{what or f'checkpoint {spec}'} gives log q = {float(log_q)} on a test set of {num_points} points: its outputs are "
            "not finite (weights that overflow?); use another checkpoint or retrain")


def resolve_model(spec: str | os.PathLike, check_outputs: bool = True) -> tuple[EnergyNet, TrainConfig]:
    """``(network, config)`` of a checkpoint path or a shipped model (``pretrained:NAME:OBJECTIVE``),
    loaded by :func:`load_pretrained`; with ``check_outputs`` its outputs are checked too
    (:func:`check_network_outputs`).

    :raises ValueError: a malformed spec, a checkpoint that cannot be loaded
        (:class:`~gfncp_pyro.checkpoint.CheckpointError`) or one whose outputs are not finite.
    """
    parse_shipped(spec)  # a malformed pretrained: spec, before any file is opened
    network, _, config = load_pretrained(spec)
    if check_outputs:
        check_network_outputs(network, spec)
    return network, config

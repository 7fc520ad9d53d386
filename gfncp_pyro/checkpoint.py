"""Checkpoints: written atomically, loaded with ``weights_only=True``, carrying config and version.

A checkpoint is a dict of plain types and tensors::

    {"format": "gfncp-pyro-checkpoint", "format_version": 1, "package_version": "0.1.0",
     "config": TrainConfig.to_dict(), "step": int, "model": state_dict,
     "optimizer": ..., "scheduler": ..., "best_val": float, "val_history": [...]}

Training state (optimizer, scheduler) is optional: pretrained models ship without it.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from . import __version__
from .config import TrainConfig
from .nn import EnergyNet

__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "load_model"]

FORMAT = "gfncp-pyro-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, from another version, or does not fit."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (plus format and version keys) to ``path`` atomically.

    The file is written to a temporary file in the same directory, flushed to disk and renamed
    over ``path``, so an interruption never leaves a truncated checkpoint behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and check a checkpoint (``weights_only=True``: no code is ever unpickled).

    :raises CheckpointError: if the file does not exist, is truncated or corrupt, is not a
        gfncp-pyro checkpoint, or has an unsupported format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
            "use another checkpoint (e.g. best.pt or last.pt of the run) or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gfncp-pyro checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state.get('format_version')!r} "
            f"(written by gfncp-pyro {state.get('package_version')}); this gfncp-pyro "
            f"({__version__}) reads format version {FORMAT_VERSION}"
        )
    for key in ("config", "model"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} has no {key!r} entry")
    return state


def load_model(path: str | os.PathLike, map_location="cpu") -> tuple[EnergyNet, TrainConfig]:
    """The trained :class:`EnergyNet` (in eval mode) and the :class:`TrainConfig` it was trained with."""
    state = load_checkpoint(path, map_location)
    try:
        config = TrainConfig.from_dict(state["config"])
        net = EnergyNet(config.net)
        net.load_state_dict(state["model"], strict=True)
    except (ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} does not match this version's network: {err}") from None
    return net.eval(), config

"""Checkpoints: written atomically, loaded with ``weights_only=True``, carrying config and version.

A checkpoint is a dict of plain types and tensors::

    {"format": "gfncp-pyro-checkpoint", "format_version": 1, "package_version": "0.1.0",
     "config": TrainConfig.to_dict(), "step": int, "model": state_dict,
     "optimizer": ..., "scheduler": ..., "best_val": float, "val_history": [...]}

Training state (optimizer, scheduler) is optional: pretrained models ship without it.
"""

from __future__ import annotations

import glob
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

import torch

from . import __version__
from .config import TrainConfig
from .nn import EnergyNet
from .outputs import write_atomic_with

__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "load_model",
           "remove_stale_temporaries", "check_finite_weights"]

FORMAT = "gfncp-pyro-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, from another version, or does not fit."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (plus format and version keys) to ``path`` atomically.

    The file is written to a temporary file in the same directory, flushed to disk and renamed
    over ``path``, so an interruption never leaves a truncated checkpoint behind. Temporary
    files of earlier writes of ``path`` that a killed process left behind (``kill -9``) are
    removed first (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__, **state}
    return write_atomic_with(path, lambda handle: torch.save(payload, handle), "wb")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files ``.NAME.*.tmp`` that an interrupted :func:`save_checkpoint` of
    ``path`` left in its directory (a write that completes renames its own away, so any that
    remain belong to a killed process); returns the removed paths."""
    path = Path(path)
    removed = []
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            stale.unlink()
            removed.append(stale)
        except OSError:
            pass  # another process's, or already gone
    return removed


def _first_line(err: BaseException, limit: int = 120) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:limit]}" if lines else type(err).__name__


_SAFE_MODULES = ("torch", "collections")


def _imports_code(path: Path) -> bool:
    """Whether the pickle stream of ``path`` (raw, or ``*/data.pkl`` of torch's zip format)
    imports a callable or class outside torch and collections: read with
    :func:`pickletools.genops`, which parses opcodes without executing anything."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(names[0]) if names else b""
        else:
            data = path.read_bytes()
        strings: list[str] = []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                module = str(arg).split(" ")[0]
            elif opcode.name == "STACK_GLOBAL":
                module = strings[-2] if len(strings) >= 2 else ""
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            if module.split(".")[0] not in _SAFE_MODULES:
                return True
    except Exception:  # not a pickle (or it ends early): whatever was read imported nothing else
        pass
    return False


def _refused_global(message: str) -> str:
    found = re.search(r"GLOBAL (\S+)", message)
    return f" (it holds {found.group(1)})" if found else ""


def check_finite_weights(model_state: dict, path) -> None:
    """:raises CheckpointError: if a floating tensor of ``model_state`` holds NaN or inf."""
    for name, tensor in model_state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"checkpoint {path} has non-finite weights ({bad} NaN/inf values in {name!r}), so every "
                "probability it gives would be NaN; use an earlier checkpoint of the run (best.pt, or the "
                "nonfinite.pt state saved before the failing step) or retrain with a lower --lr"
            )


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and check a checkpoint (``weights_only=True``: no code is ever unpickled).

    :raises CheckpointError: if the file does not exist, is empty, truncated or corrupt, holds
        Python objects that weights-only loading refuses as unsafe, is not a gfncp-pyro
        checkpoint, has an unsupported format version, or has non-finite model weights.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); use another checkpoint (e.g. best.pt or "
                              "last.pt of the run) or retrain")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on pickle protocols of foreign files
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower() and ("global" in str(err).lower() or _imports_code(path)):
            raise CheckpointError(
                f"checkpoint {path} was refused as unsafe: it holds Python objects{_refused_global(str(err))} "
                "that could run code when loaded, and gfncp-pyro only loads tensors and plain types "
                "(weights_only=True); gfncp-pyro checkpoints never hold such objects, so this file was not "
                "written by gfncp-pyro"
            ) from None
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({_first_line(err)}); use another "
                              "checkpoint (e.g. best.pt or last.pt of the run) or retrain") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, IndexError, KeyError,
            TypeError, AttributeError, UnicodeDecodeError, MemoryError) as err:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({_first_line(err)}); "
            "use another checkpoint (e.g. best.pt or last.pt of the run) or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gfncp-pyro checkpoint (a {type(state).__name__}"
                              + (f" with keys {sorted(map(str, state))[:6]}" if isinstance(state, dict) else "")
                              + "); pass a last.pt or best.pt written by gfncp train")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state.get('format_version')!r} "
            f"(written by gfncp-pyro {state.get('package_version')}); this gfncp-pyro "
            f"({__version__}) reads format version {FORMAT_VERSION}"
        )
    for key in ("config", "model"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} has no {key!r} entry")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"checkpoint {path} has a {type(state['model']).__name__} as 'model'; expected a "
                              "state dict")
    check_finite_weights(state["model"], path)
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

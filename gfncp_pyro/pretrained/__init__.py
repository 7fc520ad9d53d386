"""Models trained by the commands recorded in this folder's README, shipped with the package."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint

__all__ = ["PRETRAINED_DIR", "available", "load_pretrained", "export_pretrained"]

PRETRAINED_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names ``NAME-OBJECTIVE`` of the shipped models."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def load_pretrained(name: str = "mog2d-small", objective: str = "gfncp", with_config: bool = False):
    """A shipped model: ``load_pretrained("mog2d-small", "gfncp")`` (or ``"ncp"``).

    :returns: the :class:`~gfncp_pyro.nn.EnergyNet` in eval mode, and with ``with_config`` also
        its :class:`~gfncp_pyro.config.TrainConfig`.
    """
    path = PRETRAINED_DIR / f"{name}-{objective}.pt"
    if not path.is_file():
        raise CheckpointError(f"no pretrained model {name!r} for objective {objective!r}; available: {available()}")
    net, config = load_model(path)
    return (net, config) if with_config else net


def export_pretrained(checkpoint: str | Path, name: str) -> Path:
    """Strip a training checkpoint to model + config + provenance and save it as ``NAME.pt`` here."""
    state = load_checkpoint(checkpoint)
    keep = {k: state[k] for k in ("config", "model", "step", "best_val", "val_history") if k in state}
    return save_checkpoint(PRETRAINED_DIR / f"{name}.pt", keep)

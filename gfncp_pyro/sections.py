"""The sections of a training configuration that are neither data nor objective.

:class:`~gfncp_pyro.config.TrainConfig` nests one of each: the model spec (the Pyro model of
Eq. 1 in [1] the network is trained for), optimisation, monitoring (validation and checkpoint
selection) and runtime. The data kind lives in :mod:`gfncp_pyro.data.kinds`, the objective in
:mod:`gfncp_pyro.objectives`. Every section is a frozen dataclass that checks its own fields and
round-trips through JSON (:class:`~gfncp_pyro.jsonable.JsonDataclass`).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._checks import check_positive_int, finite_float, positive_float
from .jsonable import JsonDataclass

__all__ = ["ModelSpec", "OptimConfig", "MonitorConfig", "RuntimeConfig"]


@dataclass(frozen=True)
class ModelSpec(JsonDataclass):
    """The generative model of Eq. (1) in [1] that training sets come from: a CRP prior with
    concentration ``alpha`` and the conjugate isotropic Gaussian likelihood (cluster means
    ``N(0, sigma_mu^2 I)``, points ``N(mean, sigma_x^2 I)``), with set sizes uniform on
    ``[n_min, n_max]``. The points' dimension is the network's input size
    (``TrainConfig.dim``, i.e. ``net.x_dim``), so it is not stored twice.

    :param float alpha: CRP concentration of the training partitions.
    :param float sigma_mu: prior std of the cluster means.
    :param float sigma_x: std of points around their cluster mean.
    :param int n_min: smallest set size.
    :param int n_max: largest set size.
    """

    alpha: float = 1.0
    sigma_mu: float = 10.0
    sigma_x: float = 1.0
    n_min: int = 100
    n_max: int = 1000

    def __post_init__(self):
        for name in ("alpha", "sigma_mu", "sigma_x"):
            object.__setattr__(self, name, positive_float(getattr(self, name), name))
        object.__setattr__(self, "n_min", check_positive_int(self.n_min, "n_min"))
        if isinstance(self.n_max, bool) or not isinstance(self.n_max, int) or self.n_max < self.n_min:
            raise ValueError(f"n_max must be an integer >= n_min={self.n_min}, got {self.n_max!r}")

    def mixture(self, dim: int, variant: str = "dynamic"):
        """The Pyro model :class:`~gfncp_pyro.models.CRPMixture` of this spec in dimension ``dim``."""
        from .models import CRPMixture

        return CRPMixture(self.alpha, self.sigma_mu, self.sigma_x, dim, variant=variant)


@dataclass(frozen=True)
class OptimConfig(JsonDataclass):
    """Adam with a cosine-annealed learning rate and gradient clipping (App. A in [1]).

    :param int iterations: optimisation steps (paper: 5,000).
    :param int batch_size: sets per step (paper: 64).
    :param float lr: initial learning rate (paper: 5e-4), cosine-annealed to ``lr_min``
        (paper: 1e-6) over ``iterations``.
    :param float lr_min: final learning rate.
    :param float grad_clip: max global gradient norm.
    :param init: a warm start: a checkpoint path or shipped model spec
        (``"pretrained:mog2d-small:gfncp"``) whose network weights start the run instead of a
        seeded initialisation; the optimiser and the LR schedule start fresh (fine-tuning). The
        network sizes must equal the run's; the data, model spec and objective may differ.
        ``None``: train from scratch.
    """

    iterations: int = 5000
    batch_size: int = 64
    lr: float = 5e-4
    lr_min: float = 1e-6
    grad_clip: float = 10.0
    init: str | None = None

    def __post_init__(self):
        for name in ("iterations", "batch_size"):
            object.__setattr__(self, name, check_positive_int(getattr(self, name), name))
        for name in ("lr", "grad_clip"):
            object.__setattr__(self, name, positive_float(getattr(self, name), name))
        lr_min = finite_float(self.lr_min, "lr_min")
        if lr_min < 0:
            raise ValueError(f"lr_min must be a non-negative finite number, got {self.lr_min!r}")
        object.__setattr__(self, "lr_min", lr_min)
        if self.init is not None and (not isinstance(self.init, str) or not self.init.strip()):
            raise ValueError(f"init must be a checkpoint path or a shipped model spec (a non-empty string) or None, "
                             f"got {self.init!r}")


@dataclass(frozen=True)
class MonitorConfig(JsonDataclass):
    """Validation during training and what picks ``best.pt``.

    :param int val_sets: size of the fixed, seeded validation set.
    :param int val_every: iterations between validations and periodic checkpoints.
    :param int panel_sets: if > 0, every ``val_every`` iterations the model is also compared
        with the exact posterior on this many fixed seeded sets of ``panel_n`` points
        (:class:`~gfncp_pyro.fidelity.FidelityPanel`; seeds distinct from the validation
        report's); TV and entropies go to ``metrics.jsonl``. Gaussian mixtures only.
    :param int panel_n: the panel's set size (enumeration: 2 to 10).
    :param select_by: what picks ``best.pt``: ``"loss"`` (validation loss) or ``"panel_tv"``
        (the panel's mean TV; needs ``panel_sets > 0``).
    """

    val_sets: int = 256
    val_every: int = 100
    panel_sets: int = 0
    panel_n: int = 8
    select_by: Literal["loss", "panel_tv"] = "loss"

    def __post_init__(self):
        self.check_literals()
        for name in ("val_sets", "val_every"):
            object.__setattr__(self, name, check_positive_int(getattr(self, name), name))
        if isinstance(self.panel_sets, bool) or not isinstance(self.panel_sets, int) or self.panel_sets < 0:
            raise ValueError(f"panel_sets must be a non-negative integer, got {self.panel_sets!r}")
        if isinstance(self.panel_n, bool) or not isinstance(self.panel_n, int) or not 2 <= self.panel_n <= 10:
            raise ValueError(f"panel_n must be an integer in [2, 10], got {self.panel_n!r}")
        if self.select_by == "panel_tv" and self.panel_sets == 0:
            raise ValueError("select_by='panel_tv' needs panel_sets > 0")


@dataclass(frozen=True)
class RuntimeConfig(JsonDataclass):
    """Where and how the computation runs; none of it changes what is learned on one device.

    :param str device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    :param bool bf16: bf16 autocast of the network on CUDA (ignored on CPU).
    :param threads: torch's intra-op threads for the run (``torch.set_num_threads``);
        ``None`` keeps torch's default. Small CPU workloads are often fastest with 1.
    """

    device: str = "auto"
    bf16: bool = False
    threads: int | None = None

    def __post_init__(self):
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {self.device!r}")
        if not isinstance(self.bf16, bool):
            raise ValueError(f"bf16 must be True or False, got {self.bf16!r}")
        if self.threads is not None:
            object.__setattr__(self, "threads", check_positive_int(self.threads, "threads"))

"""Training GFNCP (Algorithm 1 in [1]) and NCP (Eq. 11) on sets drawn from the Pyro model.

Every random draw of iteration ``i`` on rank ``r`` comes from a generator seeded by
``(seed, r, i)``, so a run resumed from a checkpoint replays exactly the batches, orders,
exploration flags and contrastive samples of an uninterrupted run, and DDP ranks draw different
sets. Checkpoints (``last.pt`` every ``val_every`` iterations and at the end, ``best.pt`` at the
lowest validation loss) are written atomically and hold model, optimiser, LR schedule and step.

The learning rate follows a cosine from ``lr`` to ``lr_min`` over ``iterations`` steps,
``lr_t = lr_min + (lr - lr_min) (1 + cos(pi t / iterations)) / 2``. Resuming with a larger
``iterations`` (``--resume --iterations M``, also after a finished run) re-plans the schedule
over the new total: from the saved step ``t0`` on, the learning rate is the one a run planned for
``M`` iterations from the start has at the same step (so a finished run, at ``lr_min``, continues
at ``lr_t`` of the longer plan and anneals to ``lr_min`` again at step ``M``).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .batch import SetBatch
from .checkpoint import CheckpointError, load_checkpoint, remove_stale_temporaries, save_checkpoint
from .config import TrainConfig
from .data import exploration_mask, random_lengths, random_orders, with_exploration
from .data.sources import training_source
from .interrupts import Interrupted
from .nn import EnergyNet
from .objectives import GFNCPObjective

__all__ = ["Trainer", "draw_batch", "batch_loss", "resolve_device", "cosine_lr",
           "NonFiniteLossError"]


_VALIDATION_DATA = 2**31 - 1  # stream ids of the validation set (ranks are 0, 1, ...)
_VALIDATION_SAMPLES = 2**31 - 2


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; ``saved`` is the file holding the state before
    the failing step."""

    def __init__(self, message: str, saved: Path | None = None):
        super().__init__(message)
        self.saved = saved


_DEVICE_TYPES = ("cpu", "cuda", "mps")


def cosine_lr(step: int, iterations: int, lr: float, lr_min: float) -> float:
    """The learning rate at ``step`` of a run planned for ``iterations`` steps (module docstring)."""
    return lr_min + (lr - lr_min) * (1.0 + math.cos(math.pi * step / iterations)) / 2.0


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available (this rank's local device under torchrun), else CPU.

    :raises ValueError: for a name that is not ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or
        ``mps``, or a device that this machine lacks.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in _DEVICE_TYPES or (device.type == "cpu" and device.index not in (None, 0)):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                             "device(s)")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} requested but MPS is not available; use --device cpu")
    return device


def iteration_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The CPU generator of one iteration of one rank (independent streams via SeedSequence)."""
    state = np.random.SeedSequence([seed, rank, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def draw_batch(config: TrainConfig, generator: torch.Generator, device: torch.device, dtype=torch.float32,
               batch_size: int | None = None, explore: bool = True, source=None) -> SetBatch:
    """One training batch of ``config``'s data (:func:`~gfncp_pyro.data.sources.training_source`:
    for Gaussian mixtures exactly the Pyro model's distribution, via
    :meth:`CRPMixture.sample_batch`; for images and embeddings instance discrimination), with
    random orders and, for GFNCP, exploration partitions on a fraction ``1 - beta`` of the sets.
    ``source``: the training source, if already built (image pools are loaded once)."""
    batch_size = batch_size or config.optim.batch_size
    source = source if source is not None else training_source(config)
    lengths = random_lengths(batch_size, config.model.n_min, config.model.n_max, generator)
    data = source.draw(lengths, generator, device, dtype)
    labels = data.labels.cpu()
    orders = random_orders(lengths, generator)
    if explore and config.objective.explores:
        flags = exploration_mask(batch_size, config.objective.beta, generator)
        labels = with_exploration(labels, lengths, flags, generator)
    else:
        flags = torch.zeros(batch_size, dtype=torch.bool)
    return SetBatch(
        x=data.x.to(device=device, dtype=dtype),
        labels=labels.to(device),
        mask=data.mask.to(device),
        orders=orders.to(device),
        is_data=(~flags).to(device),
    )


def batch_loss(net: EnergyNet, config: TrainConfig, batch: SetBatch, generator: torch.Generator,
               bf16: bool = False, reward: str | None = None, step: int | None = None
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """The objective of ``config`` (``config.objective``) on one batch, averaged over sets, and its
    parts, at iteration ``step`` (``None``: every term at full weight). ``reward`` overrides
    GFNCP's ``config.objective.reward`` (validation scores every GFNCP run with ``"nll"``: the CD
    surrogate's value is not a loss, only its gradient is)."""
    objective = config.objective
    if isinstance(objective, GFNCPObjective):
        return objective.loss(net, batch, generator, step=step, bf16=bf16, reward=reward)
    return objective.loss(net, batch, generator, step=step, bf16=bf16)


class Trainer:
    """Train one model of ``config`` into ``out_dir`` (``last.pt``, ``best.pt``, ``metrics.jsonl``).

    :param TrainConfig config: the run's configuration.
    :param out_dir: run directory.
    :param bool resume: continue from ``out_dir/last.pt`` (exactly: model, optimiser, schedule,
        step; data streams are functions of the step). The config must equal the saved one,
        except ``iterations``, which may grow (the LR schedule is re-planned, module docstring).
        Without ``resume`` an existing run in ``out_dir`` is never overwritten: a
        ``ValueError`` says so. Temporary files of a killed checkpoint write are removed.
    :param bool progress: show a tqdm progress bar (rank 0 only).
    :param pool: an already loaded data pool for image/embedding configs (default: read
        ``config.data.path``).
    """

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
                 pool=None):
        self.config = config
        self.out_dir = Path(out_dir)
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.device = resolve_device(config.runtime.device)
        self.bf16 = config.runtime.bf16 and self.device.type == "cuda"
        if config.runtime.threads is not None:
            torch.set_num_threads(config.runtime.threads)
        self.progress = progress and self.rank == 0
        torch.manual_seed(config.seed)  # identical initialisation on every rank
        self.net = EnergyNet(config.net).to(self.device)
        self.init: dict | None = None  # where a warm start's weights came from (config.optim.init)
        if config.optim.init is not None and not resume:
            from .loading import initial_weights

            weights, self.init = initial_weights(config.optim.init, config, map_location=self.device)
            self.net.load_state_dict(weights, strict=True)
        self.objective = config.objective
        optim = config.optim
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=optim.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=optim.iterations, eta_min=optim.lr_min
        )
        self.step = 0
        self.best_val = math.inf
        self.val_history: list[dict] = []
        self.panel = None
        self.last_saved: Path | None = None
        last = self.out_dir / "last.pt"
        if resume:
            for name in ("last.pt", "best.pt", "nonfinite.pt"):
                remove_stale_temporaries(self.out_dir / name)
            self._restore(load_checkpoint(last, map_location=self.device))
            self._truncate_log()
        elif last.exists():
            raise ValueError(
                f"{self.out_dir} already holds a run (last.pt); pass resume=True (--resume) to continue it "
                "or choose another output directory"
            )
        self.source = training_source(config, pool=pool, device=self.device)
        self.validation = [
            draw_batch(config, iteration_generator(config.seed, _VALIDATION_DATA, i), self.device,
                       batch_size=min(64, config.monitor.val_sets), explore=False, source=self.source)
            for i in range(math.ceil(config.monitor.val_sets / 64))
        ]
        if config.monitor.panel_sets and self.rank == 0:
            from .fidelity import FidelityPanel

            self.panel = FidelityPanel(config.mixture(), config.monitor.panel_sets, config.monitor.panel_n)

    # -------------------------------------------------------------- checkpoints
    def _state(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_val": self.best_val,
            "val_history": self.val_history,
            **({"init": self.init} if self.init is not None else {}),
        }

    def _restore(self, state: dict) -> None:
        saved = TrainConfig.from_dict(state["config"])
        iterations = self.config.optim.iterations
        if saved.replace(iterations=iterations, threads=self.config.runtime.threads) != self.config:
            old, new = saved.flat(), self.config.flat()
            diff = {k: (v, new.get(k)) for k, v in old.items() if k not in ("iterations", "threads") and new.get(k) != v}
            diff.update({k: (None, v) for k, v in new.items() if k not in old})
            raise CheckpointError(f"cannot resume: the checkpoint was trained with another config (saved, now): {diff}")
        for key in ("optimizer", "scheduler", "step"):
            if key not in state:
                raise CheckpointError(f"cannot resume: the checkpoint has no {key!r} (a pretrained model?)")
        step = int(state["step"])
        if iterations < step:
            raise CheckpointError(f"cannot resume with --iterations {iterations}: the run is already at "
                                  f"step {step}; pass --iterations M with M >= {step}")
        self.net.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if saved.optim.iterations != iterations:  # re-plan the cosine over the new total
            self.scheduler.T_max = iterations
            for group in self.optimizer.param_groups:
                group["lr"] = cosine_lr(step, iterations, self.config.optim.lr, self.config.optim.lr_min)
            self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        self.step = step
        self.best_val = float(state.get("best_val", math.inf))
        self.val_history = list(state.get("val_history", []))
        self.init = state.get("init")

    def save(self, name: str = "last.pt") -> Path | None:
        if self.rank != 0:
            return None
        path = save_checkpoint(self.out_dir / name, self._state())
        if name == "last.pt":
            self.last_saved = path
        return path

    # -------------------------------------------------------------- training
    def validate(self) -> float:
        """Mean objective (no exploration) on the fixed validation sets; for GFNCP the reward
        term is the trajectory NLL (Eq. 26 through Eq. 30), whatever ``config.objective.reward`` is."""
        total, count = 0.0, 0
        self.net.eval()
        with torch.no_grad():
            for i, batch in enumerate(self.validation):
                loss, _ = batch_loss(self.net, self.config, batch, iteration_generator(self.config.seed, _VALIDATION_SAMPLES, i),
                                     self.bf16, reward="nll")
                total += loss.item() * batch.x.shape[0]
                count += batch.x.shape[0]
        self.net.train()
        return total / count

    def _truncate_log(self) -> None:
        """Drop the metrics logged after the step a resumed run restarts from (they are
        recomputed identically), so ``metrics.jsonl`` holds each step once."""
        path = self.out_dir / "metrics.jsonl"
        if self.rank != 0 or not path.exists():
            return
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= self.step]
        path.write_text("".join(line + "\n" for line in kept))

    def _log(self, record: dict) -> None:
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with (self.out_dir / "metrics.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def _sync_gradients(self) -> None:
        if self.world > 1:
            for p in self.net.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world

    def _loss(self, batch: SetBatch, generator: torch.Generator):
        return self.objective.loss(self.net, batch, generator, step=self.step, bf16=self.bf16)

    def evaluate_panel(self) -> dict[str, float]:
        """The fidelity panel's metrics (``{}`` without a panel); see :class:`~gfncp_pyro.fidelity.FidelityPanel`."""
        if self.panel is None:
            return {}
        net = copy.deepcopy(self.net).to(device="cpu", dtype=torch.float64)  # exact maths in float64
        return {f"panel_{k}": v for k, v in self.panel.evaluate(net).items()}

    def train_step(self) -> dict:
        """One iteration of Algorithm 1 (or of NCP's maximum likelihood)."""
        config = self.config
        generator = iteration_generator(config.seed, self.rank, self.step)
        batch = draw_batch(config, generator, self.device, source=self.source)
        loss, parts = self._loss(batch, generator)
        if not torch.isfinite(loss):
            saved = self.save("nonfinite.pt")
            raise NonFiniteLossError(
                f"non-finite loss {loss.item()} at iteration {self.step} ({parts}); the state before the "
                f"step is in {self.out_dir / 'nonfinite.pt'}. Lower --lr or --grad-clip, or use --flow consistent",
                saved=saved,
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._sync_gradients()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), **parts}

    def fit(self, until: int | None = None) -> dict:
        """Train up to ``until`` iterations (default: ``config.optim.iterations``); checkpoint and
        validate every ``val_every`` iterations. Ctrl-C or SIGTERM (a scheduler, ``kill``) stops
        after the current iteration: ``last.pt`` is saved, then
        :class:`~gfncp_pyro.interrupts.Interrupted` (a ``KeyboardInterrupt`` with the signal
        number) is raised; a second signal stops at once, keeping the last periodic checkpoint."""
        iterations, monitor = self.config.optim.iterations, self.config.monitor
        until = iterations if until is None else min(until, iterations)
        self.net.train()
        bar = tqdm(total=iterations, initial=self.step, disable=not self.progress, desc=self.config.objective.name,
                   dynamic_ncols=True)
        start = time.perf_counter()
        with _StopRequests() as stop:
            while self.step < until:
                record = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3g}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                if self.step % monitor.val_every == 0 or self.step == iterations:
                    val = self.validate()
                    record["val_loss"] = val
                    panel = self.evaluate_panel()
                    record.update(panel)
                    self.val_history.append({"step": self.step, "val_loss": val, **panel})
                    if monitor.select_by == "panel_tv":
                        val = panel["panel_tv"]
                    if val < self.best_val:
                        self.best_val = val
                        self.save("best.pt")
                    self.save("last.pt")
                record.update(step=self.step, lr=self.scheduler.get_last_lr()[0],
                              elapsed_s=round(time.perf_counter() - start, 3))
                self._log(record)
                if stop.requested is not None:
                    self.save("last.pt")
                    bar.close()
                    raise Interrupted(stop.requested, f"stopped after iteration {self.step}; "
                                      f"{self.out_dir / 'last.pt'} saved, continue with --resume")
        bar.close()
        if self.step == until:
            self.save("last.pt")
        return {"step": self.step, "best_val": self.best_val}


class _StopRequests:
    """SIGINT / SIGTERM handlers (main thread only) that ask the training loop to stop after the
    current iteration is logged, so the saved state and ``metrics.jsonl`` agree; a second signal
    interrupts at once. Restores the previous handlers on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = None
        self.previous = {}

    def _handle(self, signum, frame):
        if self.requested is not None:
            raise Interrupted(signum, "second signal, stopped at once; the last periodic checkpoint is kept")
        self.requested = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        return False


def init_distributed() -> bool:
    """Initialise torch.distributed from torchrun's environment (NCCL on GPU, gloo on CPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_available() and dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)
    return True


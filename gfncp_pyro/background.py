"""Policy samples drawn beside the training pass, in a second thread.

Two objectives need samples of the current policy in every iteration: the contrastive-divergence
term of the paper's objective (Eqs. 26-27 in [1]) and the variance balance's own samples
(:class:`~gfncp_pyro.objectives.GFNCPObjective`). Drawing them is sequential decoding, about a
hundred steps of small tensor operations, and nothing in the teacher-forced passes depends on
them. :class:`Deferred` starts the draw in a worker thread and hands back the result when the
main thread asks for it; meanwhile the main thread runs the large matrix products of teacher
forcing. Torch releases the GIL inside its kernels, so with a spare CPU core the two overlap.

The samples are bit-for-bit those of drawing them in line (``tests/test_background.py``): they
depend on the parameters, which nothing changes before the optimiser step, and on the
iteration's generator, which the objectives use for nothing else once the draw has started.

:func:`spare_core` is the default rule: overlap on the CPU when the process has more cores than
torch's intra-op threads (e.g. ``--threads 1`` on two cores); otherwise draw in line, so that a
run already using every core is not oversubscribed.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import torch

__all__ = ["Deferred", "available_cores", "spare_core"]

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gfncp-sampler")
        return _executor


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        return os.cpu_count() or 1


def spare_core(device: torch.device | str) -> bool:
    """Whether a background draw has a core of its own: the device is the CPU and torch's
    intra-op threads leave at least one of the process's share of the cores free (under
    ``torchrun`` the cores are shared by the ``LOCAL_WORLD_SIZE`` processes of the host)."""
    if torch.device(device).type != "cpu":
        return False
    try:
        processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        processes = 1
    return torch.get_num_threads() < available_cores() // processes


def _no_grad_call(fn: Callable, args: tuple, kwargs: dict):
    with torch.no_grad():
        return fn(*args, **kwargs)


class Deferred:
    """``fn(*args, **kwargs)`` under ``torch.no_grad()``, in the worker thread when
    ``background`` is true, else at once; :meth:`result` returns its value (and re-raises its
    exception) in the caller's thread.

    The caller must not use the generator ``fn`` draws from, nor change the tensors it reads,
    until :meth:`result` has returned.
    """

    def __init__(self, fn: Callable, *args, background: bool, **kwargs):
        self._future: Future | None = None
        if background:
            self._future = _worker().submit(_no_grad_call, fn, args, kwargs)
        else:
            self._value = _no_grad_call(fn, args, kwargs)

    def result(self):
        if self._future is not None:
            self._value, self._future = self._future.result(), None
        return self._value

"""Ctrl-C and SIGTERM for the command-line programs: one line on stderr, exit status 128 + signal.

:func:`run_interruptible` runs a command's body with SIGTERM turned into :class:`Interrupted`
(a :class:`KeyboardInterrupt`, so ``finally`` blocks and the trainer's checkpointing run as for
Ctrl-C), and maps either to the shell's convention: 130 for SIGINT, 143 for SIGTERM, printed as
one line instead of a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["Interrupted", "exit_status", "run_interruptible"]


class Interrupted(KeyboardInterrupt):
    """Stopped by a signal; ``signum`` says which (``message``: what was kept)."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"stopped by signal {signum}")
        self.signum = signum
        self.message = message


def exit_status(err: KeyboardInterrupt) -> int:
    """128 + the signal number (SIGINT 130, SIGTERM 143)."""
    return 128 + int(getattr(err, "signum", signal.SIGINT))


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def _close_progress_bars() -> None:
    """Close the progress bars the interrupted body left open, so that their last redraw comes
    before the interruption's line (not after it, at interpreter exit)."""
    tqdm_module = sys.modules.get("tqdm.std")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar half torn down by the interruption: nothing to redraw
            pass


def run_interruptible(body: Callable[[], int], prog: str) -> int:
    """``body()``, with SIGTERM raising :class:`Interrupted` while it runs; a Ctrl-C or SIGTERM
    prints ``PROG: interrupted by SIGNAL[: what was kept]`` as the last line on stderr and
    returns 130 or 143."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        try:
            return body()
        except KeyboardInterrupt as err:
            signum = int(getattr(err, "signum", signal.SIGINT))
            detail = getattr(err, "message", "")
        # Outside the except block: the traceback (and the frames holding progress bars) is freed.
        _close_progress_bars()
        sys.stderr.flush()
        name = signal.Signals(signum).name
        print(f"{prog}: interrupted by {name}" + (f": {detail}" if detail else ""), file=sys.stderr)
        sys.stderr.flush()
        return 128 + signum
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

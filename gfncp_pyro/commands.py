"""What every command of the project shares: the one-line user error, the parser that reports
its errors in one line, and the ``argparse`` types of numbers, seeds and hyper-parameters.

Used by the ``gfncp`` command (:mod:`gfncp_pyro.cli`) and by the ``validation`` commands
(``python -m validation.exact``, ``.dag``, ``.race``), which therefore need not import the CLI.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["UserError", "OneLineParser", "HYPER_RANGE", "MAX_SEED", "finite_number", "hyper_parameter", "seed_value",
           "int_at_least", "float_between", "one_line"]

HYPER_RANGE = (1e-8, 1e8)
"""Supported values of the model's hyper-parameters on the command line (``--alpha``,
``--sigma-mu``, ``--sigma-x``, ``--test-alpha``; also ``python -m validation.exact``): wide enough
for data in any sensible units, narrow enough that the squares and ratios of the maths stay far
from float64 overflow. Rescale the data rather than the hyper-parameters."""

MAX_SEED = 2**62
"""Largest ``--seed`` (seeds are offset by set and iteration numbers and must stay int64)."""


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``PROG: error: MESSAGE (see PROG --help)``, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line(err: BaseException) -> str:
    """An exception's message on one line (its type's name if it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def finite_number(text: str) -> float:
    """A finite number (an ``argparse`` type)."""
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def hyper_parameter(text: str) -> float:
    """A model hyper-parameter within :data:`HYPER_RANGE` (an ``argparse`` type)."""
    value = _number(text)
    low, high = HYPER_RANGE
    if not (math.isfinite(value) and low <= value <= high):
        raise argparse.ArgumentTypeError(f"must lie in [{low:g}, {high:g}], got {text!r}; rescale the data instead "
                                         "of the hyper-parameters")
    return value


def float_between(low: float, high: float, low_open: bool):
    """An ``argparse`` type: a finite number in ``(low, high]`` (``low_open``) or ``[low, high]``."""
    def parse(text: str) -> float:
        value = finite_number(text)
        if not (low < value if low_open else low <= value) or value > high:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"must lie in {interval}, got {text!r}")
        return value
    parse.__name__ = "number"
    return parse


def seed_value(text: str) -> int:
    """A seed: an integer in ``[0, MAX_SEED]`` (an ``argparse`` type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must lie in [0, 2^62], got {value}")
    return value


def int_at_least(low: int):
    """An ``argparse`` type: an integer ``>= low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse

"""One argument-validation layer for every command line (gsbsim and python -m reference.*).

``OneLineParser`` reports a usage error as the one line ``PROG: error: message`` (exit 2)
instead of argparse's usage block; the ``type=`` functions reject what argparse's int/float
accept but the programs cannot use (nan, inf, 0 where a count is needed, seeds out of range),
so every such mistake is caught before anything is read or written.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable

__all__ = ["OneLineParser", "nonempty_path", "int_at_least", "positive_float", "nonnegative_float", "float_in", "seed",
           "MAX_SEED"]

MAX_SEED = 2 ** 32 - 1  # numpy's and Python's seeding both accept [0, 2^32); torch accepts less than 2^64


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        line = " ".join(message.split())
        print(f"{self.prog}: error: {line}", file=sys.stderr, flush=True)
        sys.exit(2)


def _number(text: str, kind: Callable, what: str):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An int type with low <= value (<= high)."""
    def parse(text: str) -> int:
        v = _number(text, int, "an integer")
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(
                f"must be >= {low}" + (f" and <= {high}" if high is not None else "") + f", got {v}")
        return v
    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def float_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] (open ends as asked); nan and inf are always rejected."""
    def parse(text: str) -> float:
        v = _number(text, float, "a number")
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if v < low or v > high or (low_open and v == low) or (high_open and v == high):
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            span = f"> {low:g}" if math.isinf(high) else f"in {lo}{low:g}, {high:g}{hi}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return v
    parse.__name__ = "number"
    return parse


def positive_float(text: str) -> float:
    """A finite float > 0."""
    return float_in(0.0, math.inf, low_open=True)(text)


def nonnegative_float(text: str) -> float:
    """A finite float >= 0."""
    v = _number(text, float, "a number")
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return v


seed = int_at_least(0, MAX_SEED)



def nonempty_path(text: str) -> str:
    """A path argument: an empty string would silently mean the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text

"""Ours against a baseline, measured so the comparison holds on any quiet machine: the two are
interleaved round by round (a slow moment of the machine hits both), each figure is the median of
the rounds, and the spread is printed beside it so a reader sees how much to trust the ratio."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

MIN_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class Figure:
    median: float
    low: float
    high: float

    @property
    def spread(self) -> float:
        """(max - min) / median: the relative range of the rounds."""
        return (self.high - self.low) / self.median if self.median else 0.0

    def show(self, fmt: str = "{:.1f}") -> str:
        return f"{fmt.format(self.median)} (range {fmt.format(self.low)}-{fmt.format(self.high)}, spread {self.spread:.0%})"


def figure(values: list[float]) -> Figure:
    return Figure(statistics.median(values), min(values), max(values))


def interleave(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each measurement once per round, alternating which goes first; the values per name."""
    if rounds < MIN_ROUNDS:
        raise SystemExit(f"at least {MIN_ROUNDS} rounds, got {rounds}")
    names = list(runs)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            out[name].append(runs[name]())
    return out


def ratio(ours: list[float], baseline: list[float], higher_is_better: bool = True) -> Figure:
    """The per-round ratios (ours/baseline, or baseline/ours when lower is better), summarised."""
    pairs = [o / b if higher_is_better else b / o for o, b in zip(ours, baseline, strict=True)]
    return figure(pairs)

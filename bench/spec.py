"""Workload sizes and the small statistics the benchmark reports."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

SLEEP = 0.05
"""Seconds each W3 task sleeps."""


@dataclass(frozen=True)
class Sizes:
    """How big each workload is (the issue's definitions; --quick shrinks the slow ones)."""

    w1: int = 10_000
    w1_rq: int = 10_000
    w2: int = 300
    w3_tasks: int = 200
    w3_slots: int = 20
    w3b_tasks: int = 2_000
    w3b_slots: int = 200
    w4: int = 1_000_000
    cli: int = 1_000_000


QUICK = Sizes(w1_rq=2_000, w2=100, w4=200_000, cli=100_000)
"""--quick: RQ's W1 and W2 shortened (RQ's rate, in docs/performance.md, would make them take minutes),
W4 at 200k tasks, the CLI at 100k lines."""


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def efficiency(tasks: int, slots: int, elapsed: float, sleep: float = SLEEP) -> float:
    """Ideal time (tasks x sleep / slots) over the measured time."""
    return tasks * sleep / slots / elapsed


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each metric over the repetitions."""
    keys = runs[0].keys() if runs else []
    return {key: statistics.median(run[key] for run in runs) for key in keys}

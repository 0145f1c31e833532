"""What the benchmarks share: timing a function as the best of several rounds (on a shared machine the fastest
round is the one least disturbed by other work)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_rate(fn: Callable[[], object], units: int, rounds: int,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Units per second of the fastest of `rounds` calls of `fn()` (which handles `units` units), timed by `clock`:
    wall time by default, `time.process_time` for CPU seconds of this process."""
    best = float("inf")
    for _ in range(rounds):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return units / best

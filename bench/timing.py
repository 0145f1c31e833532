"""What the benchmarks share: timing a function as the best of several rounds (on a shared machine the fastest
round is the one least disturbed by other work), and a process's peak memory."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path


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


def peak_rss_kib() -> int:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the
    parent a spawned worker was forked from, VmHWM starts afresh at exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> None:
    """Start this process's VmHWM afresh from its current RSS (Linux: `5` to /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")

"""Governor over a simulated 24 h (mock clock): never ahead of the rate, utilisation >= 99.5%.

Runs ``RowGovernor`` under trio with ``MockClock(autojump_threshold=0)`` for 24 simulated hours
with saturated sources (an importer asks for its next batch as soon as the last one started)
and random batch sizes, then measures two figures per scenario:

* **ahead of the rate (rows)**: for every pair of starts i < j, the rows of batches i..j-1 may
  not exceed ``R / 60 * (start_j - start_i)``. The figure is the largest excess over all pairs,
  computed exactly (with fractions, not floats); the target is 0 or less (a negative figure
  says how far behind the rate the tightest pair stayed).
* **utilisation**: rows sent / (``R / 60`` x the time from the first start until the last batch
  is paid for, i.e. its start plus ``rows * 60 / R``). Counting the last batch's debt keeps the
  figure honest: a big batch sent just before the end is not free. The target is >= 99.5%.

Usage: ``python benchmarks/bench_governor.py [--seed N]``. Exits 1 if any target is missed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from fractions import Fraction

import trio
from trio.testing import MockClock

from analytex_async.governors._local import RowGovernor

DAY = 24 * 60 * 60.0
RATE = 1200.0
TARGET_UTILISATION = 0.995


def simulate(rate: float, importers: int, max_rows: int, seed: int) -> list[tuple[float, int]]:
    """Return (start, rows) for every batch started in 24 simulated hours, in start order."""
    batches: list[tuple[float, int]] = []

    async def importer(governor: RowGovernor, t0: float, rng: random.Random) -> None:
        while trio.current_time() - t0 < DAY:
            rows = rng.randint(1, max_rows)
            await governor.acquire(rows)
            if trio.current_time() - t0 >= DAY:
                break  # the day is over: this batch would not be sent within it
            batches.append((trio.current_time() - t0, rows))

    async def main() -> None:
        governor = RowGovernor(rate)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(importers):
                nursery.start_soon(importer, governor, t0, random.Random(seed + i))

    trio.run(main, clock=MockClock(autojump_threshold=0))
    batches.sort()
    return batches


def max_ahead_of_rate(rate: float, batches: Sequence[tuple[float, int]]) -> Fraction | None:
    """The largest excess, in rows, of rows sent over rows allowed between any two starts.

    For a pair i < j the excess is ``(P_j - P_i) - r * (s_j - s_i)`` with ``P`` the rows sent
    before a batch and ``r`` rows per second. Writing ``g_k = P_k - r * s_k`` it is
    ``g_j - g_i``, so the maximum over all pairs is one pass keeping the smallest ``g`` so far.
    ``None`` when there is no pair.
    """
    per_second = Fraction(rate) / 60
    worst: Fraction | None = None
    lowest: Fraction | None = None
    sent = 0
    for start, rows in batches:
        g = sent - per_second * Fraction(start)
        if lowest is not None:
            excess = g - lowest
            worst = excess if worst is None else max(worst, excess)
        lowest = g if lowest is None else min(lowest, g)
        sent += rows
    return worst


def utilisation(rate: float, batches: Sequence[tuple[float, int]]) -> float:
    rows = sum(n for _, n in batches)
    last_start, last_rows = batches[-1]
    paid_until = last_start + last_rows * 60 / rate
    return rows / (rate / 60 * (paid_until - batches[0][0]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()

    scenarios = [
        ("1 importer, 1..10,000 rows", 1, 10_000),
        ("4 importers sharing, 1..10,000 rows", 4, 10_000),
        ("1 importer, 1..100 rows", 1, 100),
    ]
    print(f"RowGovernor at {RATE:g} rows/min, 24 simulated hours, seed {args.seed}\n")
    header = (
        f"{'scenario':<37} {'batches':>7} {'rows':>10} "
        f"{'ahead (rows)':>12} {'target':>6} {'utilisation':>11} {'target':>8} {'wall s':>6}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for name, importers, max_rows in scenarios:
        wall = time.perf_counter()
        batches = simulate(RATE, importers, max_rows, args.seed)
        wall = time.perf_counter() - wall
        ahead = max_ahead_of_rate(RATE, batches)
        used = utilisation(RATE, batches)
        passed = (ahead is None or ahead <= 0) and used >= TARGET_UTILISATION
        ok &= passed
        print(
            f"{name:<37} {len(batches):>7,} {sum(n for _, n in batches):>10,} "
            f"{float(ahead or 0):>12.2g} {'<= 0':>6} {used:>11.5%} {'>= 99.5%':>8} {wall:>6.2f}"
            + ("" if passed else "  MISSED")
        )
    print("\nall targets met" if ok else "\nTARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

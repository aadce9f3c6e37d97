"""The row governor over 24 simulated hours: never ahead of the rate, and the rate fully used.

Saturated importers (each asks for its next batch as soon as the last one started) with random
batch sizes run on trio's mock clock, so a simulated day takes seconds. Two figures judge it:

* **ahead of the rate (rows)**: for every pair of starts i < j, the rows of batches i..j-1 may not
  exceed ``R / 60 * (start_j - start_i)``. The figure is the largest excess over all pairs,
  computed exactly (with fractions, not floats); it must be 0 or less.
* **utilisation**: rows sent / (``R / 60`` x the time from the first start until the last batch
  is paid for, i.e. its start plus ``rows * 60 / R``). Counting the last batch's debt keeps the
  figure honest: a big batch sent just before the end is not free. It must be at least 99.5%.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from fractions import Fraction

import pytest
import trio
from trio.testing import MockClock

from analytex_async.governors._local import RowGovernor

DAY = 24 * 60 * 60.0
RATE = 1200.0
SEED = 20240601


def simulate(rate: float, importers: int, max_rows: int, seed: int) -> list[tuple[float, int]]:
    """(start, rows) of every batch started in 24 simulated hours, in start order."""
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
                nursery.start_soon(importer, governor, t0, random.Random(seed + i))  # noqa: S311 -- a seeded simulation

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


def test_the_measures_catch_a_schedule_ahead_of_the_rate_or_idle() -> None:
    # 20 rows a second: 100 rows may be followed 5 s later, not 4 s.
    assert max_ahead_of_rate(RATE, [(0.0, 100), (5.0, 1)]) == 0
    assert max_ahead_of_rate(RATE, [(0.0, 100), (4.0, 1)]) == 20
    assert max_ahead_of_rate(RATE, [(0.0, 100)]) is None
    assert utilisation(RATE, [(0.0, 100), (5.0, 100)]) == pytest.approx(1.0)
    assert utilisation(RATE, [(0.0, 100), (10.0, 100)]) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("importers", "max_rows"),
    [
        pytest.param(1, 10_000, id="1 importer, 1..10,000 rows"),
        pytest.param(4, 10_000, id="4 importers sharing, 1..10,000 rows"),
        pytest.param(1, 100, id="1 importer, 1..100 rows"),
    ],
)
def test_a_simulated_day_never_runs_ahead_of_the_rate_and_uses_99_5_percent_of_it(
    importers: int, max_rows: int
) -> None:
    batches = simulate(RATE, importers, max_rows, SEED)
    # Saturated for a day: about 1,728,000 rows (1,200 a minute) whatever the batch sizes.
    assert sum(n for _, n in batches) > 0.99 * RATE * 24 * 60
    ahead = max_ahead_of_rate(RATE, batches)
    assert ahead is not None
    assert ahead <= 0
    assert utilisation(RATE, batches) >= 0.995

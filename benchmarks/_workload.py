"""What the benchmarks share: the generated rows, the heartbeat, peak RSS, child processes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from analytex_async import AsyncAnalytex

API_KEY = "bench-key"
GOVERNOR_OFF = 10**12
"""A ``rows_per_minute`` so high that the governor never waits."""
BATCH = 10_000
_PLANS = ("free", "pro", "enterprise")


def user_row(i: int) -> dict[str, Any]:
    """The ``i``-th generated user: about 190 bytes of NDJSON, six metadata fields."""
    return {
        "user_id": f"user-{i:08d}",
        "company_id": f"company-{i % 997:05d}",
        "metadata": {
            "name": f"User {i}",
            "email": f"user{i}@example.com",
            "plan": _PLANS[i % 3],
            "seats": i % 250,
            "active": i % 7 != 0,
            "score": i % 1000 / 10,
        },
    }


def user_rows(count: int) -> Iterator[dict[str, Any]]:
    """``count`` generated users, lazily."""
    return map(user_row, range(count))


def mostly_invalid_rows(count: int, valid_every: int = 100) -> Iterator[dict[str, Any]]:
    """``count`` generated users, lazily, of which only every ``valid_every``-th is valid.

    The others carry a list in their metadata (``"tags": ["a", "b"]``), which bulk metadata
    does not accept (primitives only), so validation rejects them; they are otherwise the same
    users as ``user_row``.
    """
    for i in range(count):
        row = user_row(i)
        if i % valid_every:
            row["metadata"]["tags"] = ["a", "b"]
        yield row


def write_ndjson(path: Path, count: int) -> None:
    """Write ``count`` generated users to an NDJSON file."""
    with path.open("w", encoding="utf-8") as file:
        for row in user_rows(count):
            file.write(json.dumps(row, separators=(",", ":")) + "\n")


def client(base_url: str, rows_per_minute: float = GOVERNOR_OFF) -> AsyncAnalytex:
    """A client of the server at ``base_url``; by default with the governor off."""
    return AsyncAnalytex(API_KEY, base_url=base_url, rows_per_minute=rows_per_minute)


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux's ``VmHWM`` (the peak of this process's own memory map). Not ``ru_maxrss``: Linux
    carries that across ``exec``, so a child started by a big parent would report the parent's
    peak. Elsewhere ``ru_maxrss`` is the best there is.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


class Heartbeat:
    """Wakes every ``interval`` seconds and records how late each wake-up was (the stall).

    Each beat also records the CPU time the whole process used meanwhile: a late beat during
    which the process hardly ran was held up by other processes on the machine, not by the
    event loop (``own_worst``). Every thread of the process counts, so a worker thread holding
    the GIL still shows.

    Args:
        interval: The intended period in seconds.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.lateness: list[float] = []
        self.own_lateness: list[float] = []
        self.starts: list[float] = []  # the perf_counter reading at which each beat began

    @property
    def beats(self) -> int:
        """How many beats were recorded."""
        return len(self.lateness)

    @property
    def worst(self) -> float:
        """The longest stall in seconds."""
        return max(self.lateness, default=0.0)

    @property
    def own_worst(self) -> float:
        """The longest stall counting only the time this process was running, in seconds."""
        return max(self.own_lateness, default=0.0)

    @property
    def p99(self) -> float:
        """The 99th percentile of the stalls in seconds."""
        if not self.lateness:
            return 0.0
        ordered = sorted(self.lateness)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    async def _run(self, limit: float) -> None:
        deadline = time.perf_counter() + limit
        while True:
            before, cpu_before = time.perf_counter(), time.process_time()
            if before > deadline:
                return
            await anyio.sleep(self.interval)
            gap = time.perf_counter() - before
            cpu = time.process_time() - cpu_before
            self._record(before, gap - self.interval, min(gap, cpu) - self.interval)

    def _record(self, began: float, late: float, own: float) -> None:
        self.starts.append(began)
        self.lateness.append(late)
        self.own_lateness.append(own)

    @property
    def worst_span(self) -> tuple[float, float]:
        """The perf_counter readings at which the latest beat began and woke up."""
        if not self.lateness:
            return (0.0, 0.0)
        index = max(range(len(self.lateness)), key=self.lateness.__getitem__)
        began = self.starts[index]
        return (began, began + self.interval + self.lateness[index])

    def without(self, start: float, end: float) -> Heartbeat:
        """The beats that did not overlap ``start``..``end`` (perf_counter readings).

        A benchmark's own burst (hundreds of handlers run back to back) holds the loop by
        design; leaving its span out keeps the figure about what the SDK does meanwhile.
        """
        kept = Heartbeat(self.interval)
        for began, late, own in zip(self.starts, self.lateness, self.own_lateness, strict=True):
            if began + self.interval + late < start or began > end:
                kept.starts.append(began)
                kept.lateness.append(late)
                kept.own_lateness.append(own)
        return kept


class SummaryHeartbeat(Heartbeat):
    """A ``Heartbeat`` that keeps no beat, only what its figures need, in constant memory.

    For a run of minutes whose memory is measured: a list of every beat would grow by some
    100 kB a second. It keeps the worst stall (and its span), the worst on-CPU stall, the count
    and a histogram of the stalls in ``BUCKET`` steps (``p99`` to that resolution).
    """

    BUCKET = 0.0001

    def __init__(self, interval: float = 0.001) -> None:
        super().__init__(interval)
        self._count = 0
        self._worst = self._own_worst = 0.0
        self._worst_span = (0.0, 0.0)
        self._histogram: dict[int, int] = {}

    def _record(self, began: float, late: float, own: float) -> None:
        self._count += 1
        if late > self._worst:
            self._worst, self._worst_span = late, (began, began + self.interval + late)
        self._own_worst = max(self._own_worst, own)
        bucket = math.ceil(late / self.BUCKET)
        self._histogram[bucket] = self._histogram.get(bucket, 0) + 1

    @property
    def beats(self) -> int:
        """How many beats were recorded."""
        return self._count

    @property
    def worst(self) -> float:
        """The longest stall in seconds."""
        return self._worst

    @property
    def own_worst(self) -> float:
        """The longest stall counting only the time this process was running, in seconds."""
        return self._own_worst

    @property
    def worst_span(self) -> tuple[float, float]:
        """The perf_counter readings at which the latest beat began and woke up."""
        return self._worst_span

    @property
    def p99(self) -> float:
        """The 99th percentile of the stalls in seconds (rounded up to ``BUCKET``)."""
        rank, seen = math.ceil(0.99 * self._count), 0
        for bucket in sorted(self._histogram):
            seen += self._histogram[bucket]
            if seen >= rank:
                return bucket * self.BUCKET
        return 0.0


@asynccontextmanager
async def heartbeat(
    interval: float = 0.001, limit: float = 900.0, *, keep: bool = True
) -> AsyncIterator[Heartbeat]:
    """Run a ``Heartbeat`` for the duration of the block (``limit`` seconds at most).

    With ``keep=False`` it is a ``SummaryHeartbeat``: constant memory, no ``without``.
    """
    beat = Heartbeat(interval) if keep else SummaryHeartbeat(interval)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(beat._run, limit)
        try:
            yield beat
        finally:
            tasks.cancel_scope.cancel()


def run_child(script: str, args: Sequence[str], timeout: float = 600.0) -> dict[str, Any]:
    """Run ``script`` with ``args`` in a fresh interpreter; return the JSON of its last line.

    The child's stderr goes to a file, not into this process's memory: a peer that logs a
    warning per dropped record writes megabytes of it.
    """
    with tempfile.TemporaryFile() as errors:
        done = subprocess.run(  # our own script, no shell
            [sys.executable, script, *args],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            errors.seek(max(0, errors.tell() - 4000))
            tail = errors.read().decode(errors="replace")
            raise RuntimeError(f"{script} {' '.join(args)} failed:\n{tail}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def describe_machine() -> str:
    """One line: cores and Python version."""
    return f"{os.cpu_count()} cores, Python {platform.python_version()} ({sys.platform})"

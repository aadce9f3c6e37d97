"""The time request handlers spend inside an SDK, and what made the slowest calls slow."""

from __future__ import annotations

import contextlib
import gc
import time
from typing import Any

OFF_CPU_SHARE = 0.5
"""A call whose thread ran for less than this share of its wall time was held off the CPU."""


class Timings:
    """The SDK time of each handler, and what may explain the slowest ones."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []  # (start ns, end ns, thread CPU ns)
        self.collections: list[tuple[int, int, int]] = []  # (start ns, end ns, generation)
        self._gc_started = 0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter_ns()
        if phase == "start":
            self._gc_started = now
        else:
            self.collections.append((self._gc_started, now, info["generation"]))

    @contextlib.contextmanager
    def watching_gc(self) -> Any:
        gc.callbacks.append(self._on_gc)
        try:
            yield
        finally:
            gc.callbacks.remove(self._on_gc)

    def collected(self, start: int, end: int) -> tuple[int, int]:
        """The collections' time within ``start``..``end`` (ns) and their highest generation.

        Returns:
            The nanoseconds, and the generation (-1 when no collection ran then).
        """
        spans = [(min(e, end) - max(s, start), g) for s, e, g in self.collections]
        spans = [(ns, g) for ns, g in spans if ns > 0]
        return sum(ns for ns, _ in spans), max((g for _, g in spans), default=-1)

    def stall_cause(self, span: tuple[float, float], own: float, target: float) -> str:
        """What made a heartbeat stall over ``target`` seconds: a collection, the machine, or work.

        A collection is the cause when the stall would have met ``target`` without it, or when
        it took half the stall or more; the machine when the process ran for less than
        ``target`` or less than half the stall.

        Args:
            span: The late beat's perf_counter readings (its sleep's start and its wake-up).
            own: The stall counting only the time the process ran, in seconds.
            target: The stall target in seconds.
        """
        late = span[1] - span[0]
        gc_ns, generation = self.collected(int(span[0] * 1e9), int(span[1] * 1e9))
        if generation >= 0 and (late - gc_ns / 1e9 <= target or gc_ns / 1e9 >= late / 2):
            return f"a garbage collection (generation {generation}: {gc_ns / 1e6:,.1f} ms of it)"
        if own <= target or own < late / 2:
            return (
                f"off the CPU (the process ran {own * 1000:,.1f} ms of it: the machine is shared)"
            )
        return f"the process's own work ({gc_ns / 1e6:,.1f} ms of collection in it)"

    def cause(self, index: int, slow_ns: int) -> str:
        """What made call ``index`` slower than ``slow_ns``: a collection, the machine, or itself.

        A collection is the cause when the call would have been under ``slow_ns`` without the
        collection's time; the machine when the thread ran less than half of the call's time.
        """
        start, end, cpu = self.calls[index]
        duration = end - start
        gc_ns, generation = self.collected(start, end)
        if generation >= 0 and duration - gc_ns <= slow_ns:
            return f"garbage collection (generation {generation}: {gc_ns / 1000:,.0f} us of it)"
        if cpu < OFF_CPU_SHARE * duration:
            return f"off the CPU (ran {cpu / 1000:,.0f} us of it: the machine is shared)"
        first = ", the burst's first call" if index == 0 else ""
        return f"its own work ({gc_ns / 1000:,.0f} us of collection in it{first})"

    def summary(self, slow_ns: int) -> dict[str, Any]:
        """The durations in ns, the slowest call's cause, the causes of those over ``slow_ns``."""
        durations = [end - start for start, end, _ in self.calls]
        slowest = max(range(len(durations)), key=durations.__getitem__)
        causes: dict[str, int] = {}
        for index, duration in enumerate(durations):
            if duration > slow_ns:
                kind = self.cause(index, slow_ns).split(" (")[0]
                causes[kind] = causes.get(kind, 0) + 1
        return {
            "durations_ns": durations,
            "slowest_cause": self.cause(slowest, slow_ns),
            "slow_causes": causes,
            "collections": len(self.collections),
            "longest_collection_ms": max(
                ((end - start) / 1e6 for start, end, _ in self.collections), default=0.0
            ),
            "full_collections": sum(generation == 2 for _, _, generation in self.collections),
        }

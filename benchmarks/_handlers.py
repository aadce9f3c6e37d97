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

    def cause(self, index: int, slow_ns: int) -> str:
        """What made call ``index`` slower than ``slow_ns``: a collection, the machine, or itself.

        A collection is the cause when the call would have been under ``slow_ns`` without the
        collection's time; the machine when the thread ran less than half of the call's time.
        """
        start, end, cpu = self.calls[index]
        duration = end - start
        collected = [(min(e, end) - max(s, start), g) for s, e, g in self.collections]
        collected = [(ns, g) for ns, g in collected if ns > 0]
        gc_ns = sum(ns for ns, _ in collected)
        if collected and duration - gc_ns <= slow_ns:
            generation = max(g for _, g in collected)
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
        }

"""Rate rules, as pure functions of the clock readings and limits they are given.

The limits are passed on every call, so changing them on a running emulator applies at once.
"""

from __future__ import annotations

from collections import deque

import attrs

__all__ = ["AccountLimits", "MinimumInterval", "SlidingWindow"]


class SlidingWindow:
    """At most ``limit`` admissions in any ``window`` seconds (a true sliding window).

    Args:
        window: Window length in seconds.
    """

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._admitted: deque[float] = deque()

    def admit(self, now: float, limit: int) -> float | None:
        """Admit one request at ``now`` if fewer than ``limit`` were admitted in the window.

        Returns:
            ``None`` when admitted (and counted), otherwise the seconds until a slot frees;
            a refused request is not counted.
        """
        while self._admitted and self._admitted[0] <= now - self.window:
            self._admitted.popleft()
        if len(self._admitted) >= limit:
            return self._admitted[0] + self.window - now
        self._admitted.append(now)
        return None


class MinimumInterval:
    """At most one admission per interval."""

    def __init__(self) -> None:
        self._last: float | None = None

    def admit(self, now: float, interval: float) -> float | None:
        """Admit one request at ``now`` if ``interval`` seconds passed since the last one.

        Returns:
            ``None`` when admitted, otherwise the seconds until the next admission is possible;
            a refused request is not counted.
        """
        if self._last is not None and now - self._last < interval:
            return self._last + interval - now
        self._last = now
        return None


@attrs.define
class AccountLimits:
    """The rate counters of one account: identify and track windows, the delete interval."""

    identify: SlidingWindow = attrs.Factory(SlidingWindow)
    track: SlidingWindow = attrs.Factory(SlidingWindow)
    delete: MinimumInterval = attrs.Factory(MinimumInterval)

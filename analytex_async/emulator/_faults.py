"""Fault injection: make the next matching requests fail, stall, or lose their connection."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import attrs

__all__ = ["ConnectionDropped", "Fault", "FaultBody", "Faults"]

FaultBody = bytes | str | Mapping[str, object] | list[object]


class ConnectionDropped(Exception):
    """Raised inside the app to abort a response a fault marked ``drop_connection``.

    Over a socket, uvicorn closes the connection after the status line and headers, so the
    client sees an incomplete response. In process (``httpx.ASGITransport``), this exception
    propagates out of the client's ``send`` call. With ``after_handling=True`` the request was
    handled first (a job created, a user stored): only the answer is lost.
    """


@attrs.define
class Fault:
    """One injected fault and how often it has fired.

    Attributes:
        path: The path it matches: a string compared with the decoded path exactly, or a
            compiled pattern that must match the whole path.
        method: The method it matches (upper case), ``None`` for any.
        status: Answer with this status instead of handling the request (``None``: handle it).
        headers: Extra response headers for ``status``.
        body: Response body for ``status``: bytes or text sent as is, a mapping or list sent as
            JSON; ``None`` sends the documented error body for ``status``.
        delay: Seconds to wait (``anyio.sleep``) before answering or handling; with
            ``after_handling``, between handling and answering.
        drop_connection: Start the response, then abort it (see :class:`ConnectionDropped`).
        after_handling: Handle the request normally first (the store changes, the rates
            count), then apply the fault to its answer: delay it, replace it with ``status``,
            or drop it.
        remaining: Requests it still applies to (``None``: every request, until removed).
        hits: Requests it has applied to so far.
    """

    path: str | re.Pattern[str]
    method: str | None = None
    status: int | None = None
    headers: Mapping[str, str] = attrs.Factory(dict)
    body: FaultBody | None = None
    delay: float | None = None
    drop_connection: bool = False
    after_handling: bool = False
    remaining: int | None = 1
    hits: int = 0

    def __attrs_post_init__(self) -> None:
        if self.remaining is not None and self.remaining < 1:
            raise ValueError("times must be at least 1, or None for every request")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        if self.delay is not None and self.delay < 0:
            raise ValueError("delay must not be negative")
        if self.status is None and self.delay is None and not self.drop_connection:
            raise ValueError("a fault needs a status, a delay or drop_connection=True")

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault still applies to a request."""
        if self.remaining == 0:
            return False
        if self.method is not None and self.method != method:
            return False
        if isinstance(self.path, str):
            return self.path == path
        return self.path.fullmatch(path) is not None


class Faults:
    """The emulator's fault list; the first fault that matches a request takes it.

    Examples:
        >>> from analytex_async.emulator import Emulator
        >>> emulator = Emulator()
        >>> fault = emulator.faults.add("/v1/users/bulk_identify", status=503, times=2)
        >>> fault.remaining
        2
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(
        self,
        path: str | re.Pattern[str],
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: FaultBody | None = None,
        delay: float | None = None,
        drop_connection: bool = False,
        after_handling: bool = False,
        times: int | None = 1,
        method: str | None = None,
    ) -> Fault:
        """Inject a fault for the next ``times`` requests to ``path``.

        Faults act before authentication and every other rule, and a request a fault answers
        (``status`` or ``drop_connection``) changes nothing in the store or the rate counters.
        A fault with only ``delay`` stalls the request, which is then handled normally.

        With ``after_handling=True`` the request is handled first, exactly as without a fault,
        and the fault then applies to the answer: the server did the work, the client never
        learns it (``drop_connection=True``), learns it late (``delay``, for a client read
        timeout), or is told otherwise (``status``).

        Args:
            path: The decoded request path (``"/v1/identify"``), or a compiled regular
                expression matched against the whole path
                (``re.compile(r"/v1/background_jobs/.*")``).
            status: Answer with this status instead of handling the request.
            headers: Extra headers for that answer, e.g. ``{"Retry-After": "1"}``.
            body: Body for that answer; by default the documented error body.
            delay: Seconds to wait first, through ``anyio.sleep`` (a mocked clock applies).
            drop_connection: Start the response and abort it, so the client sees the connection
                close mid-response.
            after_handling: Handle the request first, then apply the fault to its answer.
            times: How many requests it applies to; ``None`` for all until removed.
            method: Only requests with this method (any case); ``None`` for any method.

        Returns:
            The :class:`Fault`, whose ``hits`` and ``remaining`` show what it did.

        Raises:
            ValueError: When the fault would do nothing, or a value is out of range.
        """
        fault = Fault(
            path,
            method=method.upper() if method is not None else None,
            status=status,
            headers=dict(headers or {}),
            body=body,
            delay=delay,
            drop_connection=drop_connection,
            after_handling=after_handling,
            remaining=times,
        )
        self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        """Remove one fault (``ValueError`` if it is not in the list)."""
        self._faults.remove(fault)

    def clear(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """Return the first fault matching the request and count the hit, or ``None``."""
        for fault in self._faults:
            if fault.matches(method, path):
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self._faults))

    def __len__(self) -> int:
        return len(self._faults)

"""What a client holds for one event loop in one process, rebuilt when either changes.

A connection pool, the locks of the rate windows and of the in-process governor all belong to
the event loop that first used them: reused from another loop they fail ("Event loop is
closed"), and inherited through ``fork`` they share sockets with the parent. A client keeps
them in a ``Runtime`` tagged with the process id and the loop, and builds a fresh one when a
call comes from another loop (a module-level client used by one ``asyncio.run`` after another)
or from a forked child. The process id is checked on each call rather than with
``os.register_at_fork``: a registration cannot be undone, so every client ever made would stay
referenced for the life of the process.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import anyio.lowlevel
import attrs
import httpx

from ._transport import Transport
from .governors._local import Governor
from .governors._windows import ClientWindows

TWO_LOOPS = (
    "this AsyncAnalytex client is in use by another event loop right now; a client may move "
    "from one loop to the next, but two loops (or two threads each running one) cannot share "
    "it at once: create one client per loop"
)


def current_loop() -> object:
    """The running event loop (asyncio's loop object, trio's run token).

    Returns:
        An object that identifies the loop for as long as it runs.

    Raises:
        RuntimeError: No event loop runs in this thread.
    """
    try:
        return anyio.lowlevel.current_token().native_token
    except RuntimeError:
        raise RuntimeError(
            "AsyncAnalytex is used outside a running event loop: call it from async code "
            "(asyncio, trio)"
        ) from None


def loop_finished(loop: object) -> bool:
    """Whether an event loop a runtime was built for can no longer run anything of it.

    A call still in flight when its loop ended (``asyncio.run`` returned while a request of
    this client was out) leaves its counts behind; they must not block the next loop.

    Args:
        loop: An asyncio loop, or trio's run token.

    Returns:
        True for an asyncio loop that is closed or no longer running, and for a trio token
        whose run has finished.
    """
    is_closed = getattr(loop, "is_closed", None)
    if callable(is_closed):  # asyncio
        return bool(is_closed()) or not loop.is_running()  # type: ignore[attr-defined]
    run_sync_soon = getattr(loop, "run_sync_soon", None)
    if callable(run_sync_soon):  # trio: a finished run refuses new callbacks
        try:
            run_sync_soon(_nothing)
        except RuntimeError:  # trio.RunFinishedError
            return True
    return False


def _nothing() -> None:
    """A callback that does nothing (to ask a trio run whether it still runs)."""


@attrs.define
class Runtime:
    """The loop-bound part of a client.

    Attributes:
        pid: The process it was built in.
        loop: The event loop it was built for.
        http_client: The connection pool.
        transport: Sends the requests.
        windows: The real-time budgets.
        governor: The bulk row governor.
        open_here: The client was opened (``async with``) on this loop and not closed yet.
    """

    pid: int
    loop: object
    http_client: httpx.AsyncClient
    transport: Transport
    windows: ClientWindows
    governor: Governor
    open_here: bool = False

    @property
    def busy(self) -> bool:
        """Whether a request is in flight, or the client is open on this loop."""
        return self.open_here or self.transport.busy


class RuntimeSlot:
    """Holds a client's current ``Runtime`` and builds the next one when the loop changes.

    The first runtime adopts what the client made at construction (its connection pool and
    governor), so a client used from one loop only keeps exactly those; later ones are fresh.

    Args:
        build: Makes a ``Runtime`` for a process id and a loop (``None`` before any loop ran),
            told whether to adopt the construction-time objects.
    """

    def __init__(self, build: Callable[[int, object | None, bool], Runtime]) -> None:
        self._build = build
        self._current: Runtime | None = None

    def get(self) -> Runtime:
        """The runtime for the running loop in this process, built if needed.

        Returns:
            The runtime.

        Raises:
            RuntimeError: No loop runs, or another loop of this process uses the client now.
        """
        loop = current_loop()
        pid = os.getpid()
        current = self._current
        if current is not None and current.pid == pid:
            if current.loop is loop:
                return current
            if current.loop is None:  # made before any loop ran: this loop is its first
                current.loop = loop
                return current
            if current.busy and not loop_finished(current.loop):
                raise RuntimeError(TWO_LOOPS)
        self._current = self._build(pid, loop, current is None)
        return self._current

    def peek(self) -> Runtime:
        """The runtime of this process, without a running loop (for inspection).

        Returns:
            The latest runtime, or a first one (bound to the first loop that uses it).
        """
        pid = os.getpid()
        current = self._current
        if current is None or current.pid != pid:
            current = self._current = self._build(pid, None, current is None)
        return current

    def forked(self) -> bool:
        """Whether the latest runtime was built in another process (this is a forked child)."""
        return self._current is not None and self._current.pid != os.getpid()

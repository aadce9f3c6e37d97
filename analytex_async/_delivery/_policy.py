"""What background delivery is told (``DeliveryPolicy``) and what it tells (``DeliveryStats``)."""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import attrs

from .._errors import ConfigurationError

DeliveryKind = Literal["identify", "identify_company", "track"]
"""Which real-time call a background record stands for."""

OnError = Callable[[DeliveryKind, Mapping[str, Any], Exception], Awaitable[None] | None]
"""Called with the kind, the request body and the exception of a record that failed for good."""


def _positive(name: str) -> Callable[[Any, Any, Any], None]:
    def check(instance: object, attribute: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigurationError(f"{name} must be finite, got {value!r}")

    return check


def _queue_size(instance: object, attribute: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"queue_size must be a positive integer, got {value!r}")


def _on_full(instance: object, attribute: object, value: Any) -> None:
    if value not in ("drop", "raise"):
        raise ConfigurationError(f"on_full must be 'drop' or 'raise', got {value!r}")


def _outbox(instance: object, attribute: object, value: Any) -> None:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(
            f"outbox must be a directory path or a redis:// URL, got {type(value).__name__}"
        )


def _on_error(instance: object, attribute: object, value: Any) -> None:
    if value is not None and not callable(value):
        raise ConfigurationError("on_error must be callable")


@attrs.frozen
class DeliveryPolicy:
    """How ``client.background`` delivers: its queue, shutdown, outbox and routing.

    Attributes:
        queue_size: Records not yet settled at most: waiting, in flight, retrying, or inside
            a bulk job that has not completed (so memory stays bounded whatever the server
            does). Records replayed from the outbox may take it past this; new records are then
            refused (``on_full``) until it falls below.
        on_full: ``"drop"`` the new record (counted, a warning at most once a minute) or
            ``"raise"`` ``QueueFullError`` in the caller. A coalesced identify is never new.
        drain_timeout: Seconds the client delivers what is queued when it closes, before it
            spills the rest to the outbox (or counts it dropped).
        outbox: A directory where records still undelivered at shutdown are written (with
            the windows' send times of the last minute), and from which the next client that
            opens with it replays them. Shared safely by many processes. Or a ``redis://`` /
            ``rediss://`` URL (extra ``redis``, asyncio only): the same on a Redis stream shared
            by a fleet, namespaced by the API key's hash and the URL's ``?name=``.
        bulk_overflow: Send user and company identifies that would wait longer than
            ``max_delay`` for the real-time window through the bulk API instead.
        max_delay: Seconds an identify may wait for the real-time window before it overflows to
            bulk.
        on_error: Called (sync or async) as ``on_error(kind, payload, exception)`` for every
            record that failed for good (a 4xx other than 408 and 429, or a failed bulk job).

    Examples:
        ```python
        from analytex_async import AsyncAnalytex, DeliveryPolicy

        policy = DeliveryPolicy(outbox="analytex-outbox/", drain_timeout=5)
        async with AsyncAnalytex(delivery=policy) as client:
            client.background.track("u1", "Signed Up")
        ```
    """

    queue_size: int = attrs.field(default=10_000, validator=_queue_size)
    on_full: Literal["drop", "raise"] = attrs.field(default="drop", validator=_on_full)
    drain_timeout: float = attrs.field(default=10.0, validator=_positive("drain_timeout"))
    outbox: str | os.PathLike[str] | None = attrs.field(default=None, validator=_outbox)
    bulk_overflow: bool = True
    max_delay: float = attrs.field(default=60.0, validator=_positive("max_delay"))
    on_error: OnError | None = attrs.field(default=None, validator=_on_error, eq=False)


@attrs.frozen
class DeliveryStats:
    """A snapshot of background delivery's counters.

    At every instant ``queued == delivered + coalesced + dropped + failed + spilled + pending``.

    Attributes:
        queued: Records handed to ``client.background`` without an exception (dropped ones
            included) plus those replayed from the outbox.
        pending: Records not yet settled: waiting, in flight, retrying, or in a bulk job not
            yet completed (the count ``queue_size`` bounds).
        delivered: Records the server accepted (for bulk, whose job completed).
        coalesced: Identifies merged into an earlier one still waiting.
        via_bulk: The part of ``delivered`` that went through the bulk API.
        dropped: Records dropped: the queue was full, or the client closed without an outbox.
        failed: Records that failed for good (see ``DeliveryPolicy.on_error``).
        spilled: Records written to the outbox at shutdown.
        replayed: Records read back from the outbox (also counted in ``queued``).
    """

    queued: int = 0
    pending: int = 0
    delivered: int = 0
    coalesced: int = 0
    via_bulk: int = 0
    dropped: int = 0
    failed: int = 0
    spilled: int = 0
    replayed: int = 0

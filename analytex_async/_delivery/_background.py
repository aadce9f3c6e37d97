"""``client.background``: hand a record over and return at once; the worker delivers it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._bodies import checked_json, identify_body, identify_company_body, track_body
from .._models import Company
from ._policy import DeliveryStats
from ._session import DeliverySession

NOT_OPEN = (
    "client.background works while the client is open: use it inside "
    "`async with AsyncAnalytex(...) as client:` (in a web app, open the client in the app's "
    "lifespan)"
)


class BackgroundDelivery:
    """Delivery that never makes the caller wait: for request handlers.

    ``identify``, ``identify_company`` and ``track`` validate their arguments at once (bad
    input raises ``ValidationError`` here, before anything is queued) and return ``None``
    without awaiting anything; the client's senders deliver the record within the account's
    budgets, each user's (and company's) records in the order they were handed over, merging
    an identify into its user's earlier one while that one is not sent yet. See
    ``DeliveryPolicy`` for the queue, shutdown and outbox, and ``DeliveryStats`` for the
    counters.

    Not created by users: it is ``AsyncAnalytex.background``.

    Examples:
        ```python
        from analytex_async import AsyncAnalytex

        async with AsyncAnalytex() as client:
            client.background.identify("u1", metadata={"plan": "pro"})
            client.background.track("u1", "Signed Up")
            stats = await client.background.flush(timeout=10)
        ```
    """

    def __init__(
        self,
        session: Callable[[], DeliverySession | None],
        stats: Callable[[], DeliveryStats],
    ) -> None:
        self._session = session
        self._stats = stats

    def __repr__(self) -> str:
        return f"BackgroundDelivery({self.stats!r})"

    def _open(self) -> DeliverySession:
        session = self._session()
        if session is None or not session.ledger.open:
            raise RuntimeError(NOT_OPEN)
        return session

    def identify(
        self,
        user_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        company: str | Company | Mapping[str, Any] | None = None,
    ) -> None:
        """Queue an identify (``POST /v1/identify``) and return at once.

        Args:
            user_id: The user's id (a non-empty string).
            metadata: Profile properties.
            company: The user's company: its id, a ``Company``, or a mapping with an ``id``.

        Raises:
            ValidationError: Bad input; nothing was queued.
            QueueFullError: The queue is full and ``DeliveryPolicy(on_full="raise")``.
            RuntimeError: The client is not open.
        """
        session = self._open()
        body = identify_body(user_id, metadata, company)
        size = len(checked_json(body, "metadata"))
        session.ledger.admit("identify", body["user_id"], body, size)

    def identify_company(
        self, company_id: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Queue a company identify (``POST /v1/companies/identify``) and return at once.

        Args:
            company_id: The company's id (a non-empty string).
            metadata: Profile properties.

        Raises:
            ValidationError: Bad input; nothing was queued.
            QueueFullError: The queue is full and ``DeliveryPolicy(on_full="raise")``.
            RuntimeError: The client is not open.
        """
        session = self._open()
        body = identify_company_body(company_id, metadata)
        size = len(checked_json(body, "metadata"))
        session.ledger.admit("identify_company", body["company_id"], body, size)

    def track(
        self, user_id: str, event_name: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Queue an event (``POST /v1/track``) and return at once; tracks never merge.

        Args:
            user_id: The user's id.
            event_name: The event's name.
            metadata: Event properties.

        Raises:
            ValidationError: Bad input; nothing was queued.
            QueueFullError: The queue is full and ``DeliveryPolicy(on_full="raise")``.
            RuntimeError: The client is not open.
        """
        session = self._open()
        body = track_body(user_id, event_name, metadata)
        size = len(checked_json(body, "metadata"))
        session.ledger.admit("track", body["user_id"], body, size)

    async def flush(self, timeout: float | None = None) -> DeliveryStats:
        """Wait until every record handed over before this call is delivered or failed.

        Args:
            timeout: Seconds to wait at most; ``None``: no limit.

        Returns:
            The counters.

        Raises:
            TimeoutError: Not everything was delivered after ``timeout`` seconds (the counters
                stay readable in ``stats``).
            RuntimeError: The client is not open.
        """
        return await self._open().flush(timeout)

    @property
    def stats(self) -> DeliveryStats:
        """A snapshot of the counters (all zero before the client opens; kept after it closes)."""
        return self._stats()

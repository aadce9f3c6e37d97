"""How failed requests are retried: the policy, and reading a server's ``Retry-After``.

``min(initial_delay * 2**n, max_delay)`` less up to ``jitter`` of it at random, or what the
server asks for (seconds, or an HTTP date), capped: the shape the anyio / openai SDKs use.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable

import attrs
import httpx


@attrs.frozen
class RetryPolicy:
    """How failed requests are retried.

    A retry waits ``min(initial_delay * 2**n, max_delay)`` seconds, less up to ``jitter`` of
    it at random (n counts retries from 0), or the server's ``Retry-After`` when it sends one,
    capped at ``max_retry_after``.

    Attributes:
        max_retries: Retries after the first attempt (so ``max_retries + 1`` attempts at most).
        initial_delay: The first backoff in seconds.
        max_delay: The longest backoff in seconds.
        max_retry_after: The longest ``Retry-After`` honoured, in seconds.
        jitter: The fraction of a backoff that is randomised away (0 to 1).
        random: A source of floats in ``[0, 1)``; inject one for deterministic tests.

    Examples:
        >>> RetryPolicy(max_retries=2).backoff(10) <= 8.0
        True
    """

    max_retries: int = attrs.field(default=4, validator=attrs.validators.ge(0))
    initial_delay: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=8.0, validator=attrs.validators.ge(0))
    max_retry_after: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    jitter: float = attrs.field(
        default=0.25, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    random: Callable[[], float] = attrs.field(default=random.random, eq=False, repr=False)

    def backoff(self, retry_number: int) -> float:
        """The delay before retry ``retry_number`` (0-based) when the server gave none.

        Args:
            retry_number: How many retries came before this one.

        Returns:
            Seconds to wait.
        """
        base = min(self.initial_delay * 2 ** min(retry_number, 30), self.max_delay)
        return float(base * (1 - self.jitter * self.random()))

    def delay(self, retry_number: int, retry_after: float | None) -> float:
        """The delay before a retry, honouring the server's ``Retry-After``.

        Args:
            retry_number: How many retries came before this one.
            retry_after: The server's ``Retry-After`` in seconds, if any.

        Returns:
            Seconds to wait.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return self.backoff(retry_number)


def parse_retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Read ``Retry-After-Ms`` or ``Retry-After`` (seconds or an HTTP date) as seconds.

    Args:
        headers: The response headers.
        now: The current Unix time, for an HTTP date (defaults to ``time.time()``).

    Returns:
        Seconds to wait (never negative), or ``None`` when there is no usable header.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            pass
        else:
            if value == value and value not in (float("inf"), float("-inf")):  # noqa: PLR0124
                return max(value / 1000, 0.0)
    text = headers.get("retry-after")
    if text is None:
        return None
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        current = time.time() if now is None else now
        return max(when.timestamp() - current, 0.0)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # noqa: PLR0124
        return None
    return max(seconds, 0.0)

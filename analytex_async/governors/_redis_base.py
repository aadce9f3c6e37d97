"""What the Redis classes share: the connection, the checks on their settings, the fallback signal.

:class:`~._redis.RedisGovernor`, :class:`~._redis_windows.RedisRequestWindow`, the Redis outbox
(``analytex_async._redis_outbox``) and the Redis sync state (``analytex_async._redis_sync_state``)
connect the same way, take the same kind of settings (names that become Redis keys, positive
rates and periods), refuse trio the same way, and show the Redis URL without its password in
every message.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

import sniffio

from .._errors import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Added to every sleep so a worker wakes just after the time a script gave it rather than a
# rounding error before it (the script would then only send it back to sleep for a microsecond).
WAKE_MARGIN = 1e-6

_NAME = re.compile(r"[^\s{}]{1,200}")


class UseLocal(Exception):
    """Redis failed and the governor falls back to its in-process budget."""


def require_asyncio(what: str, instead: str = "the in-process RowGovernor") -> None:
    """Refuse to run under anything but asyncio.

    redis-py's asyncio client is built on asyncio streams: under trio it fails deep inside with
    "no running event loop". This says so plainly instead.

    Args:
        what: The class name, for the message.
        instead: What to use under trio, for the message.

    Raises:
        ConfigurationError: The running async library is not asyncio.
    """
    if sniffio.current_async_library() != "asyncio":
        raise ConfigurationError(
            f"{what} uses redis-py's asyncio client, which needs the asyncio event loop and "
            f"does not run under trio; run this worker under asyncio, or use {instead} under "
            "trio"
        )


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, parts.query, ""))


def hide_password(url: str, message: str) -> str:
    """``message`` with the URL's password, if it has one, replaced by ``***``."""
    password = urlsplit(url).password
    for secret in {password, unquote(password or "")} - {None, ""}:
        message = message.replace(str(secret), "***")
    return message


def redis_client(what: str, url: str, timeout: float) -> Redis:
    """A redis-py asyncio client for ``url``; nothing connects until its first command.

    A couple of quick retries ride over a dropped connection; more would only delay the error
    (or a governor's fallback) when Redis is really away.

    Args:
        what: The class name, for the message when the ``redis`` extra is missing.
        url: A ``redis://``, ``rediss://`` or ``unix://`` URL.
        timeout: Seconds to connect and to wait for an answer.

    Returns:
        The client (the caller closes it).

    Raises:
        ConfigurationError: The ``redis`` extra is not installed, or redis-py refuses the URL
            (the message shows it without its password).
    """
    try:
        import redis.asyncio  # noqa: PLC0415 -- the optional ``redis`` extra
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import ExponentialBackoff  # noqa: PLC0415
    except ImportError:  # pragma: no cover - exercised without the extra only
        raise ConfigurationError(
            f'{what} needs redis-py: pip install "analytex-async[redis]"'
        ) from None
    try:
        shown = safe_url(url)
    except ValueError as exc:  # a port that is not a number
        raise ConfigurationError(f"invalid Redis URL: {hide_password(url, str(exc))}") from None
    try:
        return redis.asyncio.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
        )
    except ValueError as exc:
        reason = hide_password(url, str(exc))
        raise ConfigurationError(f"invalid Redis URL {shown!r}: {reason}") from None


def check_rate(name: str, value: float) -> float:
    """``value`` as a float, or ``ConfigurationError`` unless it is a positive finite number."""
    # ``not x > 0`` also refuses NaN.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
    if not value > 0 or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_name(what: str, value: str) -> str:
    """``value``, or ``ConfigurationError`` unless it can be part of a Redis key."""
    # Braces would break the Redis Cluster hash tag that keeps one governor's keys together.
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigurationError(
            f"{what} must be 1 to 200 characters without white space or braces, got {value!r}"
        )
    return value


def text(value: object) -> str | None:
    """A Redis reply as text (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)

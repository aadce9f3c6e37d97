"""The bulk budget shared through Redis by every process and host that imports for one account.

The account has one row rate however many workers spend it, so the schedule lives in Redis (or
Valkey), where every worker's :class:`RedisGovernor` reads and moves the same one.

How it works, and why:

* **One clock.** Every decision is taken inside one atomic Lua script that reads the Redis
  server's own ``TIME``: hosts whose clocks disagree still agree on the schedule.
* **GCRA by reservation.** The script keeps the bulk schedule's *theoretical arrival time*
  ``tat`` (microseconds, server time). A batch of ``n`` rows reserves the start
  ``max(now, tat)`` and moves ``tat`` to that start plus ``n * 60 / rows_per_minute`` seconds;
  the worker sleeps until its start. Batches therefore start in the order their reservations
  reached Redis (first come, first served: no worker starves), with the same spacing as the
  in-process :class:`~analytex_async.RowGovernor`, and a worker sleeping in its own process
  costs Redis nothing.
* **Cancellation.** A worker cancelled while it waits hands its reservation back when nobody
  has reserved behind it (the common case). Otherwise the gap stays empty: the account is
  then briefly under its rate, never over it.
* **429s.** ``push_back`` (called by the pipeline when the server answers 429 anyway) moves the
  shared schedule for everyone; a worker already asleep on an earlier reservation re-reserves
  behind the pause when it wakes.
* **One job at a time.** The governor remembers the account's latest bulk job in Redis
  (``SET`` with an expiry, see :class:`~analytex_async.JobSlot`), so workers wait for the
  running job instead of collecting 409s. A 409 is still handled safely.
* **Real-time budgets.** :meth:`RedisGovernor.request_window` gives the same kind of shared
  limit for identify and track requests (:class:`RedisRequestWindow`).

Keys are namespaced by ``name`` and a hash of the API key (:func:`api_key_hash`), never the
key itself. redis-py's asyncio client needs the asyncio event loop: these classes raise
``ConfigurationError`` under trio. Needs the ``redis`` extra: ``pip install
"analytex-async[redis]"``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

from .._config import api_key_hash
from .._errors import ConfigurationError, GovernorUnavailableError
from ._local import RowGovernor
from ._lua import MICROS, Scripts, row_cost
from ._redis_base import (
    WAKE_MARGIN,
    UseLocal,
    check_name,
    check_rate,
    redis_client,
    require_asyncio,
    safe_url,
    text,
)
from ._redis_windows import RedisRequestWindow

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

logger = logging.getLogger("analytex_async")

_T = TypeVar("_T")
Fallback = Literal["error", "local"]


class RedisGovernor:
    """A bulk rate governor shared through Redis by every process and host that uses it.

    Pass one to each client, in every worker, with the same ``redis_url``, ``name`` and
    ``rows_per_minute``: all of them then keep to one budget, batches starting first come,
    first served. It implements :class:`~analytex_async.Governor` and
    :class:`~analytex_async.JobSlot`.

    The budget is namespaced by ``name`` and a hash of the API key (never the key itself).
    ``AsyncAnalytex(governor=...)`` tells the governor its key's hash; to use the governor
    without a client, pass ``api_key`` or ``key_hash``.

    It needs asyncio (redis-py's asyncio client): under trio every call raises
    ``ConfigurationError``. Nothing connects until the first call. Close it with ``aclose()``
    or ``async with`` when it made its own client (from a URL).

    Works with Redis 5 or later and with Valkey (both run the same Lua). The keys of one
    governor share a Redis Cluster hash tag.

    Args:
        redis_url: ``redis://``, ``rediss://`` or ``unix://`` URL of the server, or a
            ``redis.asyncio.Redis`` client you own (it is not closed by ``aclose``).
        rows_per_minute: The account's bulk row rate. Give every worker the same value
            (a mismatch is logged as a warning).
        name: Separates budgets that share a Redis and an API key (for example, one per
            environment).
        api_key: The API key, when the governor is used without a client. Only its hash is
            kept.
        key_hash: ``api_key_hash(api_key)``, computed elsewhere, instead of ``api_key``.
        fallback: What to do when Redis cannot be used: ``"error"`` (default) raises
            :class:`GovernorUnavailableError`; ``"local"`` logs a warning and keeps going on an
            in-process ``RowGovernor``, trying Redis again every ``retry_interval`` seconds.
            With ``"local"``, every worker spends the whole budget on its own while Redis is
            away: set ``fallback_rows_per_minute`` to its share.
        fallback_rows_per_minute: The rate of the in-process fallback (default:
            ``rows_per_minute``).
        key_prefix: The first part of every Redis key.
        timeout: Seconds to connect to and wait for Redis (for a client made from a URL).
        retry_interval: Seconds between attempts to get back to Redis after a fallback.

    Raises:
        ConfigurationError: A setting is wrong, or the ``redis`` extra is not installed.

    Examples:
        <!-- example: redis -->
        ```python
        import os

        from analytex_async import AsyncAnalytex
        from analytex_async.governors import RedisGovernor

        redis_url = os.environ["REDIS_URL"]  # e.g. "redis://localhost:6379/0"
        governor = RedisGovernor(redis_url, rows_per_minute=1200)
        async with governor, AsyncAnalytex(governor=governor) as client:
            await client.import_users("users.ndjson")
        ```
    """

    def __init__(
        self,
        redis_url: str | Redis,
        *,
        rows_per_minute: float = 1200,
        name: str = "default",
        api_key: str | None = None,
        key_hash: str | None = None,
        fallback: Fallback = "error",
        fallback_rows_per_minute: float | None = None,
        key_prefix: str = "analytex",
        timeout: float = 5.0,
        retry_interval: float = 30.0,
    ) -> None:
        try:
            import redis.asyncio  # noqa: PLC0415 -- the optional ``redis`` extra
            import redis.exceptions  # noqa: PLC0415
        except ImportError:  # pragma: no cover - exercised without the extra only
            raise ConfigurationError(
                'RedisGovernor needs redis-py: pip install "analytex-async[redis]"'
            ) from None
        self._rows_per_minute = check_rate("rows_per_minute", rows_per_minute)
        local_rate = check_rate(
            "fallback_rows_per_minute",
            rows_per_minute if fallback_rows_per_minute is None else fallback_rows_per_minute,
        )
        self._timeout = check_rate("timeout", timeout)
        self._retry_interval = check_rate("retry_interval", retry_interval)
        if fallback not in ("error", "local"):
            raise ConfigurationError(f"fallback must be 'error' or 'local', got {fallback!r}")
        if api_key is not None and key_hash is not None:
            raise ConfigurationError("pass api_key or key_hash, not both")
        self._fallback: Fallback = fallback
        self._name = check_name("name", name)
        self._prefix = check_name("key_prefix", key_prefix)
        self._key_hash: str | None = None
        if api_key is not None:
            self.bind_key_hash(api_key_hash(api_key))
        elif key_hash is not None:
            self.bind_key_hash(key_hash)

        if isinstance(redis_url, str):
            self._client: Redis = redis_client("RedisGovernor", redis_url, self._timeout)
            self._url = safe_url(redis_url)
            self._owns_client = True
        elif isinstance(redis_url, redis.asyncio.Redis):
            self._client = redis_url
            self._url = repr(redis_url)
            self._owns_client = False
        else:
            raise ConfigurationError(
                f"redis_url must be a URL or a redis.asyncio.Redis client, got {redis_url!r:.80}"
            )
        self._redis_errors: tuple[type[Exception], ...] = (redis.exceptions.RedisError, OSError)
        self._scripts = Scripts(self._client)
        self._local = RowGovernor(local_rate)
        self._local_rate = local_rate
        # When the last rows went out on the local fallback, the shared schedule knows nothing
        # of them: back on Redis, the next batch first waits for them to be paid for.
        self._local_busy_until = -math.inf
        self._down_since: float | None = None
        self._rate_warned = False
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"RedisGovernor({self._url!r}, rows_per_minute={self._rows_per_minute:g}, "
            f"name={self._name!r})"
        )

    # -- configuration -------------------------------------------------------------------------

    @property
    def rows_per_minute(self) -> float:
        """The row rate this governor keeps to."""
        return self._rows_per_minute

    @property
    def name(self) -> str:
        """The budget's name."""
        return self._name

    @property
    def key_hash(self) -> str | None:
        """The API key's hash the budget is kept under, once known."""
        return self._key_hash

    @property
    def using_fallback(self) -> bool:
        """Whether the governor is running on its in-process fallback (Redis is away)."""
        return self._down_since is not None

    def bind_key_hash(self, key_hash: str) -> None:
        """Tell the governor which API key's budget it keeps.

        ``AsyncAnalytex`` calls this with ``api_key_hash(api_key)`` when it is given the
        governor. Binding the same hash again is harmless (several clients of one account may
        share a governor); a different one is refused.

        Args:
            key_hash: ``api_key_hash(api_key)``, or any stable id of the account (no white
                space or braces).

        Raises:
            ConfigurationError: The hash is malformed, or the governor is already bound to
                another key.
        """
        key_hash = check_name("key_hash", key_hash)
        if self._key_hash is not None and self._key_hash != key_hash:
            raise ConfigurationError(
                "this RedisGovernor already keeps the budget of another API key; "
                "use one governor per API key"
            )
        self._key_hash = key_hash

    def _key(self, suffix: str) -> str:
        if self._key_hash is None:
            raise ConfigurationError(
                "RedisGovernor does not know the API key yet: pass it as "
                "AsyncAnalytex(governor=...), or give it api_key= or key_hash="
            )
        # The braces make a Redis Cluster hash tag: one governor's keys live on one node,
        # so a script may touch several of them.
        return f"{self._prefix}:{{{self._name}:{self._key_hash}}}:{suffix}"

    # -- lifecycle -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the Redis connections, when the governor made its own client.

        Safe to call more than once.
        """
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> RedisGovernor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- talking to Redis, with the fallback policy --------------------------------------------

    def _shared(self) -> bool:
        """Whether the next operation should go to Redis (else to the local fallback)."""
        if self._closed:
            raise RuntimeError("this RedisGovernor is closed")
        if self._down_since is None:
            return True
        return anyio.current_time() - self._down_since >= self._retry_interval

    async def _call(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Run one Redis operation; on failure raise, or signal the fallback, by the policy."""
        try:
            result = await operation()
        except self._redis_errors as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if self._fallback == "error":
                raise GovernorUnavailableError(
                    f"the rate governor's Redis at {self._url} cannot be used ({reason}); "
                    "check that it runs and the URL, or pass fallback='local' to keep going "
                    "on an in-process budget"
                ) from exc
            if self._down_since is None:
                logger.warning(
                    "the rate governor's Redis at %s cannot be used (%s): this process now "
                    "keeps to %g rows a minute on its own, which other workers do not see; "
                    "trying Redis again every %g s",
                    self._url,
                    reason,
                    self._local_rate,
                    self._retry_interval,
                )
            self._down_since = anyio.current_time()
            raise UseLocal from exc
        if self._down_since is not None:
            logger.warning(
                "the rate governor's Redis at %s is back: budget shared again", self._url
            )
            self._down_since = None
        return result

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._call(lambda: script(keys=keys, args=args))

    async def _shielded(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a clean-up script even while cancelled; a failure only costs budget."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._timeout):
            try:
                return await script(keys=keys, args=args)
            except self._redis_errors as exc:
                logger.debug("rate governor clean-up failed: %s", exc)
        return None

    # -- Governor ------------------------------------------------------------------------------

    async def acquire(self, rows: int) -> float:
        """Wait until a batch of ``rows`` rows may start, and count it as started.

        The batch reserves its start in the shared schedule (after every batch reserved
        before it, by any worker) and holds the next one back by
        ``rows * 60 / rows_per_minute`` seconds.

        Args:
            rows: The number of rows in the batch (at least 1).

        Returns:
            The seconds spent waiting.

        Raises:
            ValueError: ``rows`` is less than 1.
            GovernorUnavailableError: Redis cannot be used and ``fallback="error"``.
            ConfigurationError: Running under trio, or no API key is known.
        """
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows!r}")
        require_asyncio("RedisGovernor")
        called_at = anyio.current_time()
        if self._shared():
            try:
                await self._acquire_shared(rows)
            except UseLocal:
                await self._acquire_local(rows)
        else:
            await self._acquire_local(rows)
        return anyio.current_time() - called_at

    async def _acquire_local(self, rows: int) -> None:
        await self._local.acquire(rows)
        self._local_busy_until = anyio.current_time() + rows * 60.0 / self._local_rate

    async def _acquire_shared(self, rows: int) -> None:
        key = self._key("rows")
        if self._local_busy_until > anyio.current_time():
            await anyio.sleep(self._local_busy_until - anyio.current_time())
        cost = row_cost(rows, self._rows_per_minute)
        rate = repr(self._rows_per_minute)
        now, start, finish, previous = await self._run(
            self._scripts.rows_reserve, [key], [cost, rate, ""]
        )
        self._check_shared_rate(text(previous))
        try:
            while start > now:
                await anyio.sleep((start - now) / MICROS + WAKE_MARGIN)
                now, start, finish = await self._run(
                    self._scripts.rows_confirm, [key], [start, cost, ""]
                )
        except BaseException:
            # Cancelled (or Redis failed) while waiting: give the reservation back if nobody
            # reserved behind it yet. Re-raised as is.
            await self._shielded(self._scripts.rows_release, [key], [start, finish])
            raise

    def _check_shared_rate(self, previous: str | None) -> None:
        if not previous or self._rate_warned or previous == repr(self._rows_per_minute):
            return
        self._rate_warned = True
        logger.warning(
            "workers sharing the rate governor %r disagree on rows_per_minute (%s here, %s "
            "elsewhere): give them all the same value, or the account may go over its rate",
            self._name,
            f"{self._rows_per_minute:g}",
            previous,
        )

    async def push_back(self, seconds: float) -> None:
        """Hold every batch of every worker back for ``seconds`` from now: a 429 came back.

        Never brings a start earlier. Workers already waiting reserve again behind the pause.

        Args:
            seconds: How long nothing may start (zero or more, finite).

        Raises:
            ValueError: ``seconds`` is negative or not finite.
            GovernorUnavailableError: Redis cannot be used and ``fallback="error"``.
        """
        if not seconds >= 0 or not math.isfinite(seconds):
            raise ValueError(f"seconds must be zero or more and finite, got {seconds!r}")
        require_asyncio("RedisGovernor")
        # The local budget is held back too, in case this process falls back to it.
        await self._local.push_back(seconds)
        if self._shared():
            with contextlib.suppress(UseLocal):
                await self._run(
                    self._scripts.rows_push_back,
                    [self._key("rows")],
                    [math.ceil(seconds * MICROS), ""],
                )

    # -- JobSlot -------------------------------------------------------------------------------

    async def latest_job(self) -> str | None:
        """The latest bulk job any worker sharing this governor recorded, if not expired.

        Returns:
            The job id, or ``None``.

        Raises:
            GovernorUnavailableError: Redis cannot be used and ``fallback="error"``.
        """
        require_asyncio("RedisGovernor")
        if self._shared():
            key = self._key("job")
            try:
                return text(await self._call(lambda: self._client.get(key)))
            except UseLocal:
                pass
        return await self._local.latest_job()

    async def set_latest_job(self, job_id: str, ttl: float) -> None:
        """Record a bulk job just accepted by the server, for every worker to see.

        Args:
            job_id: The job's id.
            ttl: Seconds after which the record is forgotten.

        Raises:
            GovernorUnavailableError: Redis cannot be used and ``fallback="error"``.
        """
        require_asyncio("RedisGovernor")
        await self._local.set_latest_job(job_id, ttl)
        if self._shared():
            key = self._key("job")
            millis = max(1, math.ceil(ttl * 1000))
            with contextlib.suppress(UseLocal):
                await self._call(lambda: self._client.set(key, job_id, px=millis))

    # -- real-time budgets ---------------------------------------------------------------------

    def request_window(self, rule: str, limit: int, period: float = 60.0) -> RedisRequestWindow:
        """A request limit shared like the row budget: at most ``limit`` per ``period``.

        For the real-time calls: ``request_window("identify", 600)`` and
        ``request_window("track", 600)`` give every worker one shared budget per rule.
        It uses this governor's Redis, namespace and fallback policy.

        Args:
            rule: The budget's name (``"identify"``, ``"track"``, ``"delete"``).
            limit: Requests allowed in any ``period`` (at least 1).
            period: The window's length in seconds.

        Returns:
            The window; use ``async with window.slot(): ...`` around each request.

        Raises:
            ConfigurationError: ``rule``, ``limit`` or ``period`` is malformed.
        """
        return RedisRequestWindow(self, rule, limit, period)

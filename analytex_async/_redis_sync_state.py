"""A sync state shared through Redis: ``RedisSyncState`` (``state="redis://..."``).

The same digests as ``SQLiteSyncState``, kept where every host of a fleet reaches them, so a
nightly sync may run on whichever worker a scheduler picks and still send only what changed.

Keys (one Redis Cluster hash tag per state, so a script may touch several of them)::

    analytex:sync:{NAME}:meta            hash: format, kind, host (the binding)
    analytex:sync:{NAME}:lock            the running sync's holder, with an expiry
    analytex:sync:{NAME}:digests         hash: record id -> digest as last completed
    analytex:sync:{NAME}:marks:TOKEN     hash: ids marked present in this run
    analytex:sync:{NAME}:missing:TOKEN   set: stored ids not marked, once ``missing`` runs

Rules, and why:

* **One run at a time.** ``begin`` takes the lock with ``SET NX PX`` inside the script that
  checks the binding, so a second run is refused at once. A worker thread extends the lock
  (and this run's marks) every third of ``lock_ttl`` while the run lives, even while the event
  loop waits minutes for a job; a run that crashed stops extending it and its lock expires
  within ``lock_ttl`` seconds (at most a minute).
* **A run that lost its lock writes nothing.** Every write checks the holder inside Redis. A
  lock that expired (Redis restarted, the process stalled past ``lock_ttl``) makes the run
  fail with ``ConfigurationError``: what it stored before is kept; the next run sends the rest.
  A lost lock also means the marks may be gone, so ``missing`` never runs on it (deleting ids
  the source still holds would be the one unforgivable outcome).
* **Few round trips, small replies.** ``present`` is one script per thousand records,
  pipelined (one round trip a call), its answers packed in one string; ``missing`` scans the
  digests a page at a time inside Redis; ``store`` and ``forget`` are one script per thousand
  ids, pipelined.

redis-py's asyncio client needs asyncio: under trio ``begin`` raises ``ConfigurationError``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio

from ._bulk._sync_state import FORMAT, KIND_NAMES
from ._errors import ConfigurationError
from ._redis_sync_lock import BEGIN, RELEASE, Keys, LockKeeper
from ._types import RecordKind
from .governors._redis_base import (
    check_name,
    check_rate,
    redis_client,
    require_asyncio,
    safe_url,
    text,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

logger = logging.getLogger("analytex_async")


SCHEMES = ("redis://", "rediss://")
"""The URL schemes that name a Redis sync state."""
LOCK_TTL = 30.0
"""Seconds a crashed run's lock outlives it at most (by default)."""
CHUNK = 1_000
"""Ids per lookup or write command: small enough never to stall Redis for long."""

_MARK = b"="  # a mark with a digest: b"=" + digest
_MARK_REJECTED = b"-"  # a rejected record's id: present, with no digest of its own

# KEYS: lock, digests, marks. ARGV: holder, ttl (ms), the (id, mark) pairs packed in one string
# (each as its length, ":" and itself). The answers come back packed the same way (per id: "-",
# or the digest's length, ":" and the digest): thousands of arguments and reply elements would
# cost redis-py more to encode and parse than the lookups cost Redis.
_PRESENT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local packed, at, out = ARGV[3], 1, {}
local function field()
  local colon = string.find(packed, ':', at, true)
  local size = tonumber(string.sub(packed, at, colon - 1))
  at = colon + size + 1
  return string.sub(packed, colon + 1, colon + size)
end
while at <= #packed do
  local id = field()
  local mark = field()
  local before = redis.call('HGET', KEYS[3], id)
  if before and string.sub(before, 1, 1) == '=' then
    before = string.sub(before, 2)
  else
    before = redis.call('HGET', KEYS[2], id)
  end
  if before then out[#out + 1] = #before .. ':' .. before else out[#out + 1] = '-' end
  if mark == '-' then
    redis.call('HSETNX', KEYS[3], id, mark)
  else
    redis.call('HSET', KEYS[3], id, mark)
  end
end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return table.concat(out)
"""

# KEYS: lock, digests, marks, missing. ARGV: holder, cursor, count, ttl (ms). One page of the
# digests' scan: the ids this run did not mark go to the missing set. Returns the next cursor.
_MISSING_PAGE = """
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local page = redis.call('HSCAN', KEYS[2], ARGV[2], 'COUNT', ARGV[3])
local entries = page[2]
for i = 1, #entries, 2 do
  if redis.call('HEXISTS', KEYS[3], entries[i]) == 0 then
    redis.call('SADD', KEYS[4], entries[i])
  end
end
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return page[1]
"""

# KEYS: lock, digests. ARGV: holder, id, digest, id, digest, ...
_STORE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
return 1
"""

# KEYS: lock, digests. ARGV: holder, id, id, ...
_FORGET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[2], unpack(ARGV, 2))
return 1
"""


def is_redis_url(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a ``redis://`` or ``rediss://`` URL (a Redis sync state)."""
    return isinstance(value, str) and value[:9].lower().startswith(SCHEMES)


def _split_name(url: str) -> tuple[str, str | None]:
    """The URL without its ``name=`` query parameter (redis-py would refuse it), and the name."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [value for key, value in query if key == "name"]
    if not names:
        return url, None
    rest = urlencode([(key, value) for key, value in query if key != "name"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), names[-1]


def _pack(record_id: str, mark: bytes) -> bytes:
    """One ``(id, mark)`` pair for ``_PRESENT``: each as its length, ``:`` and itself."""
    raw = record_id.encode("utf-8", "surrogatepass")
    return b"%d:%b%d:%b" % (len(raw), raw, len(mark), mark)


def _unpack(packed: bytes, answers: list[bytes | None]) -> None:
    """Append the answers of one ``_PRESENT`` reply to ``answers``."""
    at, end = 0, len(packed)
    while at < end:
        if packed[at] == 45:  # "-": nothing stored or marked
            answers.append(None)
            at += 1
            continue
        colon = packed.index(b":", at)
        start = colon + 1
        at = start + int(packed[at:colon])
        answers.append(packed[start:at])


class _Run:
    """What one begun run holds: its client, scripts, lock holder and the lock's keeper."""

    def __init__(self, client: Redis, holder: str, keys: Keys, keeper: LockKeeper) -> None:
        self.client = client
        self.holder = holder
        self.keys = keys
        self.keeper = keeper
        self.present: AsyncScript = client.register_script(_PRESENT)
        self.missing_page: AsyncScript = client.register_script(_MISSING_PAGE)
        self.store: AsyncScript = client.register_script(_STORE)
        self.forget: AsyncScript = client.register_script(_FORGET)
        self.release: AsyncScript = client.register_script(RELEASE)


class RedisSyncState:
    """A sync state in Redis, shared by every host that syncs the same records.

    Give ``sync_users`` / ``sync_companies`` the same URL and name on every host (or simply
    ``state="redis://host:6379/0"``): the next run, wherever it runs, compares against what
    the last one completed and sends only what changed. The rules are those of
    ``SQLiteSyncState``: one kind and one API host per state (a state holding users refuses
    companies: give each its own ``name``, or ``?name=`` in the URL), and one sync at a time.
    A second sync started while one runs gets ``ConfigurationError`` at once; the lock of a run
    that crashed expires by itself within ``lock_ttl`` seconds.

    Lookups go a few thousand ids per round trip; digests are written only after their job
    completes, each write checked against the run's lock. If Redis becomes unreachable (or
    restarts and forgets the lock) during a run, the run fails with ``ConfigurationError``;
    what it stored before is kept and the next run sends the rest.

    It uses redis-py's asyncio client (the ``redis`` extra): under trio ``begin`` raises
    ``ConfigurationError``. The URL's password never appears in its repr, logs or errors.
    Nothing connects before a sync begins.

    Args:
        url: ``redis://`` or ``rediss://`` URL of the server (a ``?name=`` in it sets
            ``name``).
        name: Separates states that share a Redis (one per kind, API host or data set).
        lock_ttl: Seconds after which a crashed run's lock expires (at most 60); a live run
            extends it every third of that time.
        timeout: Seconds to connect to and wait for Redis.

    Raises:
        ConfigurationError: The URL, the name or a number is not usable.

    Examples:
        <!-- example: redis -->
        ```python
        import os

        state = RedisSyncState(os.environ["REDIS_URL"], name="users")  # "redis://redis:6379/0"
        result = await client.sync_users("users.ndjson", state=state)
        ```
    """

    def __init__(
        self,
        url: str,
        name: str = "default",
        *,
        lock_ttl: float = LOCK_TTL,
        timeout: float = 5.0,
    ) -> None:
        if not is_redis_url(url):
            shown = safe_url(url) if isinstance(url, str) else repr(url)
            raise ConfigurationError(
                f"a Redis sync state needs a redis:// or rediss:// URL, got {shown[:80]!r}"
            )
        url, named = _split_name(url)
        if named is not None and name not in ("default", named):
            raise ConfigurationError(
                f"the URL names the sync state {named!r} and name= says {name!r}: give one"
            )
        self._url = url
        self._shown = safe_url(url)
        self._name = check_name("name", named if named is not None else name)
        self._lock_ttl = check_rate("lock_ttl", lock_ttl)
        if self._lock_ttl > 60:
            raise ConfigurationError(
                f"lock_ttl must be at most 60 seconds (a crashed run's lock expires within a "
                f"minute), got {lock_ttl!r}"
            )
        self._timeout = check_rate("timeout", timeout)
        self._ttl_ms = max(1, round(self._lock_ttl * 1000))
        self._prefix = f"analytex:sync:{{{self._name}}}"
        self._run: _Run | None = None

    def __repr__(self) -> str:
        return f"RedisSyncState({self._shown!r}, name={self._name!r})"

    @property
    def url(self) -> str:
        """The server's URL, without its password."""
        return self._shown

    @property
    def name(self) -> str:
        """The state's name within the Redis."""
        return self._name

    # -- the run -----------------------------------------------------------------------------

    async def begin(self, kind: RecordKind, host: str) -> None:
        """Check the state's kind and host (recording them if new), and take its lock.

        Args:
            kind: ``"user"`` or ``"company"``.
            host: The API host.

        Raises:
            ConfigurationError: Another kind or host, another sync holds the state, Redis
                cannot be reached, or this runs under trio.
        """
        if self._run is not None:
            raise RuntimeError("this sync state is already in use by a run")
        require_asyncio("RedisSyncState", "a SQLite sync state file")
        import redis.exceptions  # noqa: PLC0415 -- the optional ``redis`` extra

        client = redis_client("RedisSyncState", self._url, self._timeout)
        holder = f"{secrets.token_hex(8)} {socket.gethostname()} pid {os.getpid()}"
        keys = Keys(self._prefix, holder.split(maxsplit=1)[0])
        args: list[str | int] = [holder, self._ttl_ms, FORMAT, KIND_NAMES[kind], host]
        try:
            begin = client.register_script(BEGIN)
            answer = [text(item) for item in await begin(keys=[keys.meta, keys.lock], args=args)]
            if answer[0] == "ok":
                keeper = LockKeeper(self._url, keys, holder, self._lock_ttl, self._timeout)
                self._run = _Run(client, holder, keys, keeper)
                return
        except (redis.exceptions.RedisError, OSError) as exc:
            await client.aclose()
            raise ConfigurationError(
                f"cannot open the sync state {self}: {type(exc).__name__}: {exc}"
            ) from None
        except BaseException:
            await client.aclose()
            raise
        await client.aclose()
        raise self._refusal(answer, KIND_NAMES[kind], host)

    def _refusal(self, answer: list[str | None], kind: str, host: str) -> ConfigurationError:
        if answer[0] == "busy":
            holder = (answer[1] or "").partition(" ")[2]  # after the run's token
            return ConfigurationError(
                f"the sync state {self} is in use by another sync (on {holder}); run one sync "
                "per state at a time (a crashed run's lock expires by itself within a minute)"
            )
        if answer[0] == "foreign":
            return ConfigurationError(f"the key {self._prefix}:meta is not a sync state's")
        format_, known_kind, known_host = answer[1:4]
        if format_ != FORMAT:
            return ConfigurationError(f"{self} is a sync state of another format ({format_!r})")
        if known_kind != kind:
            return ConfigurationError(
                f"the sync state {self} holds {known_kind}, not {kind}: use one state name "
                f"per kind (name=, or ?name= in the URL)"
            )
        return ConfigurationError(
            f"the sync state {self} belongs to the API at {known_host}, not {host}: use one "
            f"state name per API host"
        )

    async def end(self) -> None:
        """Release the lock and drop this run's marks (safe to call more than once)."""
        run, self._run = self._run, None
        if run is None:
            return
        import redis.exceptions  # noqa: PLC0415

        with anyio.CancelScope(shield=True):
            await run.keeper.stop()
            keys = run.keys
            try:
                with anyio.move_on_after(self._timeout):
                    await run.release(keys=[keys.lock, keys.marks, keys.missing], args=[run.holder])
            except (redis.exceptions.RedisError, OSError) as exc:
                logger.warning(
                    "the sync state %s could not release its lock (%s): it expires within %g s",
                    self,
                    exc,
                    self._lock_ttl,
                )
            await run.client.aclose()

    # -- lookups and writes ------------------------------------------------------------------

    async def _call(self, work: Callable[[_Run], Any]) -> Any:
        """Run ``work`` against this run's Redis; a Redis failure or a lost lock says so."""
        run = self._run
        if run is None:
            raise RuntimeError("the sync state is not in use: call begin() first")
        import redis.exceptions  # noqa: PLC0415

        if run.keeper.lost.is_set():
            raise self._lost()
        try:
            return await work(run)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise ConfigurationError(
                f"the sync state {self} cannot be used ({type(exc).__name__}: {exc}); what "
                "the sync stored before is kept, and the same sync run again sends the rest"
            ) from exc

    def _lost(self) -> ConfigurationError:
        return ConfigurationError(
            f"the sync state {self} lost this run's lock (Redis restarted, or the run stalled "
            f"longer than lock_ttl={self._lock_ttl:g} s); nothing more is written: run the "
            "sync again"
        )

    def _check_holder(self, run: _Run, holder: object) -> None:
        if text(holder) != run.holder:
            run.keeper.lost.set()
            raise self._lost()

    async def present(self, records: Sequence[tuple[str, bytes | None]]) -> list[bytes | None]:
        """Mark records present in this run; the digest each is compared against.

        One script per thousand records, pipelined (one round trip): it reads this run's
        mark of each id, else its stored digest, and marks it.

        Args:
            records: ``(id, digest)`` pairs in source order (``None``: a rejected record).

        Returns:
            Per record: the digest marked earlier in this run, else the stored one, else
            ``None``.
        """
        return list(await self._call(lambda run: self._present(run, records)))

    async def _present(
        self, run: _Run, records: Sequence[tuple[str, bytes | None]]
    ) -> list[bytes | None]:
        keys = [run.keys.lock, run.keys.digests, run.keys.marks]
        pipe = run.client.pipeline(transaction=False)
        for start in range(0, len(records), CHUNK):
            packed = b"".join(
                _pack(record_id, _MARK_REJECTED if digest is None else _MARK + digest)
                for record_id, digest in records[start : start + CHUNK]
            )
            await run.present(keys=keys, args=[run.holder, self._ttl_ms, packed], client=pipe)
        answers: list[bytes | None] = []
        for packed in await pipe.execute():
            if packed is None:
                run.keeper.lost.set()
                raise self._lost()
            _unpack(packed, answers)
        return answers

    async def store(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Record completed records' digests (a later pair for an id wins).

        Args:
            records: ``(id, digest)`` pairs.
        """
        if records:
            latest = list(dict(records).items())
            await self._call(lambda run: self._write(run, run.store, latest))

    async def forget(self, ids: Sequence[str]) -> None:
        """Drop deleted ids.

        Args:
            ids: The ids.
        """
        if ids:
            await self._call(lambda run: self._write(run, run.forget, list(ids)))

    async def _write(self, run: _Run, script: AsyncScript, items: Sequence[object]) -> None:
        pipe = run.client.pipeline(transaction=False)
        for start in range(0, len(items), CHUNK):
            args: list[Any] = [run.holder]
            for item in items[start : start + CHUNK]:
                if isinstance(item, tuple):
                    args.extend(item)
                else:
                    args.append(item)
            await script(keys=[run.keys.lock, run.keys.digests], args=args, client=pipe)
        if not all(await pipe.execute()):
            run.keeper.lost.set()
            raise self._lost()

    async def missing(self, chunk_size: int) -> AsyncIterator[list[str]]:
        """The stored ids not marked present in this run, from a snapshot taken first.

        Args:
            chunk_size: Ids per chunk at most.

        Yields:
            Chunks of ids.
        """
        await self._call(self._snapshot_missing)
        while True:
            chunk = await self._call(lambda run: self._pop_missing(run, chunk_size))
            if not chunk:
                return
            yield chunk

    async def _snapshot_missing(self, run: _Run) -> None:
        keys = run.keys
        await run.client.delete(keys.missing)
        cursor: bytes | str = "0"
        while True:
            cursor = await run.missing_page(
                keys=[keys.lock, keys.digests, keys.marks, keys.missing],
                args=[run.holder, cursor, CHUNK, self._ttl_ms],
            )
            if cursor is None:
                run.keeper.lost.set()
                raise self._lost()
            if cursor in (b"0", "0"):
                return

    async def _pop_missing(self, run: _Run, chunk_size: int) -> list[str]:
        pipe = run.client.pipeline(transaction=False)
        pipe.get(run.keys.lock)
        pipe.spop(run.keys.missing, chunk_size)
        holder, popped = await pipe.execute()
        self._check_holder(run, holder)
        return sorted(record_id.decode("utf-8") for record_id in popped or ())

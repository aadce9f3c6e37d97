"""The lock of a Redis sync state's run: taken with the binding check, kept alive, released.

``begin`` runs one script that checks the state's binding (format, kind, API host) and takes the
lock with ``SET NX PX``: a second run is refused at once. A worker thread (``LockKeeper``)
extends the lock, and the run's marks, every third of the lock's time to live while the run
lives: a thread rather than a task, because ``SyncState`` has no scope for a task to live in
between ``begin`` and ``end``, and a thread keeps the lock even while the event loop waits
minutes for a job. A run that crashed extends nothing, and its lock expires by itself.
"""

from __future__ import annotations

import logging
import threading

import anyio
import anyio.to_thread

logger = logging.getLogger("analytex_async")

# KEYS: meta, lock. ARGV: holder, ttl (ms), format, kind, host.
BEGIN = """
local meta = redis.call('HMGET', KEYS[1], 'format', 'kind', 'host')
if meta[1] and (meta[1] ~= ARGV[3] or meta[2] ~= ARGV[4] or meta[3] ~= ARGV[5]) then
  return {'other', meta[1], meta[2] or '', meta[3] or ''}
end
if not meta[1] and redis.call('EXISTS', KEYS[1]) == 1 then return {'foreign'} end
local holder = redis.call('GET', KEYS[2])
if holder then return {'busy', holder} end
if not meta[1] then
  redis.call('HSET', KEYS[1], 'format', ARGV[3], 'kind', ARGV[4], 'host', ARGV[5])
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {'ok'}
"""

# KEYS: lock, marks, missing. ARGV: holder, ttl (ms). 1 while the run holds the lock.
_EXTEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 1
"""

# KEYS: lock, marks, missing. ARGV: holder. The run's keys go with its lock.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2], KEYS[3])
return 1
"""


class Keys:
    """The Redis keys of one state, and of one run of it."""

    def __init__(self, prefix: str, token: str = "") -> None:
        self.meta = f"{prefix}:meta"
        self.lock = f"{prefix}:lock"
        self.digests = f"{prefix}:digests"
        self.marks = f"{prefix}:marks:{token}"
        self.missing = f"{prefix}:missing:{token}"


class LockKeeper:
    """A worker thread that extends a run's lock while the run lives.

    It has its own (blocking) connection and stops when ``stop`` is called or when it finds
    the lock held by another run (``lost`` is then set).

    Args:
        url: The Redis URL (with its password: never shown).
        keys: The run's keys.
        holder: The run's lock value.
        ttl: The lock's time to live, in seconds.
        timeout: Seconds to connect to and wait for Redis.
    """

    def __init__(self, url: str, keys: Keys, holder: str, ttl: float, timeout: float) -> None:
        import redis  # noqa: PLC0415 -- the optional ``redis`` extra, present once a run began

        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        self._extend = self._client.register_script(_EXTEND)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._keys = [keys.lock, keys.marks, keys.missing]
        self._args: list[str | int] = [holder, max(1, round(ttl * 1000))]
        self._interval = ttl / 3
        self._stopping = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(
            target=self._keep, name="analytex-sync-state-lock", daemon=True
        )
        self._thread.start()

    def _keep(self) -> None:
        try:
            while not self._stopping.wait(self._interval):
                try:
                    held = self._extend(keys=self._keys, args=self._args)
                except self._errors as exc:
                    # Redis away for a moment: the lock lasts lock_ttl, the next try may do.
                    logger.debug("extending the sync state's lock failed: %s", exc)
                    continue
                if not held:
                    self.lost.set()
                    return
        finally:
            self._client.close()

    async def stop(self) -> None:
        """Stop extending the lock; returns once the thread ended."""
        self._stopping.set()
        await anyio.to_thread.run_sync(self._thread.join)

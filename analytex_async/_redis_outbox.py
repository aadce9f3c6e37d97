"""The outbox on Redis: one stream shared by a fleet of processes and hosts without disks.

``DeliveryPolicy(outbox="redis://host:6379/0?name=web")`` is the same ``OutboxStore`` as the
directory outbox (``_delivery._outboxes``), on a Redis stream:

* **Spill**: one ``MULTI`` of ``XADD`` s (kept whole or not at all), in the order given; each
  entry holds one record in the outbox's JSON format.
* **Claim**: every client is a consumer of one consumer group. A claim reads the entries nobody
  read yet (``XREADGROUP``) and takes over those of dead consumers (``XCLAIM``); they are then
  this client's until it acknowledges them (``XACK`` + ``XDEL``) or lets them go at close.
  Records come back sorted by stream id, the order they were spilled in: each chain in order.
* **Who is dead**: a claim also renews the client's *lease* (a deadline in server time, in a
  hash beside the stream), and the session claims every ``claim_interval`` seconds while open.
  A consumer whose lease ran out (killed, host gone) or that let go at close is dead: the next
  claim by any client takes its records over. Defaults: a claim every 15 s, a 40 s lease, so a
  takeover within 55 s of the dead client's last claim. The lease, the takeover and the read are
  one Lua script on the server's clock: two claimers never take one record.
* **Send times**: a sorted set (score: the Unix time) that expires a minute after its last write.

Keys are ``analytex:outbox:{<name>:<key hash>}:records`` (``:leases``, ``:times``): the URL's
``?name=`` and the API key's hash, never the key; the braces keep them in one Cluster slot. The
URL's password never appears in a message or a repr. Under trio: ``ConfigurationError``.
Redis away: a claim logs a WARNING once and returns what it has (the rest stays for the next
claim); a spill raises ``OutboxError`` (the session counts the records dropped); a removal that
fails is tried again at the next claim and at close (else the records are replayed again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio

from ._delivery._outbox import (
    OutboxError,
    OutboxRecord,
    Replayed,
    encode_record,
    record_from_json,
)
from ._errors import ConfigurationError
from .governors._redis_base import (
    check_name,
    check_rate,
    hide_password,
    redis_client,
    require_asyncio,
    safe_url,
    text,
)

logger = logging.getLogger("analytex_async")

GROUP = "delivery"
"""The consumer group every client on one outbox joins."""

_FIELD = "r"  # the entry's one field: the record, as the outbox's JSON line
_TIMES_KEPT = 60.0  # seconds: the server's window is a minute long
_ACK_CHUNK = 1_000  # ids per XACK/XDEL transaction

# KEYS[1]: the stream, KEYS[2]: the leases hash (consumer -> deadline, server ms).
# ARGV: group, this consumer, lease (ms), most entries to return.
# Renews this consumer's lease; takes over the pending entries of every consumer whose lease
# ended, then reads new entries. Returns {entries, more}: more is 1 when it stopped at the limit.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], string.format('%.0f', now + lease))
redis.call('PEXPIRE', KEYS[2], string.format('%.0f', 2 * lease))
if redis.call('EXISTS', KEYS[1]) == 0 then return {{}, 0} end
pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
local room = tonumber(ARGV[4])
local out = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local deadline = redis.call('HGET', KEYS[2], info.name)
  if info.name ~= ARGV[2] and (not deadline or tonumber(deadline) < now) then
    if room == 0 then return {out, 1} end
    local ids = {}
    if info.pending > 0 then
      for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', room, info.name)) do
        ids[#ids + 1] = p[1]
      end
      for i = 1, #ids, 500 do
        local part = {unpack(ids, i, math.min(i + 499, #ids))}
        for _, e in ipairs(redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(part))) do
          out[#out + 1] = e
        end
      end
      room = room - #ids
    end
    if #ids >= info.pending then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info.name)
      redis.call('HDEL', KEYS[2], info.name)
    end
  end
end
if room == 0 then return {out, 1} end
local more = 0
local fresh = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', room,
  'STREAMS', KEYS[1], '>')
if fresh then
  for _, e in ipairs(fresh[1][2]) do out[#out + 1] = e end
  if #fresh[1][2] >= room then more = 1 end
end
return {out, more}
"""

# KEYS[1]: the stream, KEYS[2]: the leases hash. ARGV: group, this consumer.
# Ends this consumer's lease: what it still holds is claimable at once; an empty consumer goes.
_RELEASE = """
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  local ok, held = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
  if ok and #held == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  end
end
return 0
"""


def _without_name(url: str) -> tuple[str, str]:
    """The URL without its ``name`` query parameter (redis-py does not know it), and the name."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [value for key, value in query if key == "name"]
    if len(names) > 1:
        raise ConfigurationError("the outbox URL names the outbox more than once (?name=)")
    kept = urlencode([(key, value) for key, value in query if key != "name"])
    return urlunsplit(parts._replace(query=kept)), names[0] if names else "default"


def _stream_order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RedisOutbox:
    """The Redis outbox (``DeliveryPolicy(outbox="redis://...")``) as an ``OutboxStore``.

    Made by ``open_outbox`` when a client opens; nothing connects until the first call.

    Args:
        url: ``redis://`` or ``rediss://`` URL; ``?name=`` separates outboxes that share a
            Redis and an API key.
        key_hash: ``api_key_hash(api_key)``: the outbox is namespaced by it.
        claim_interval: Seconds between two claims while the client is open.
        lease: Seconds a client counts as alive after its last claim; then what it holds is
            taken over. Longer than ``claim_interval``.
        timeout: Seconds to connect to and wait for Redis.
        batch: Records read from Redis in one step of a claim at most.

    Raises:
        ConfigurationError: Not running under asyncio, the ``redis`` extra is missing, or a
            setting is wrong.
    """

    def __init__(
        self,
        url: str,
        *,
        key_hash: str,
        claim_interval: float = 15.0,
        lease: float = 40.0,
        timeout: float = 5.0,
        batch: int = 500,
    ) -> None:
        require_asyncio("The Redis outbox", "an outbox directory")
        try:
            import redis.exceptions  # noqa: PLC0415 -- the optional ``redis`` extra
        except ImportError:  # pragma: no cover - exercised without the extra only
            raise ConfigurationError(
                'an outbox on Redis needs redis-py: pip install "analytex-async[redis]"'
            ) from None
        self._secret_url = url  # only to hide its password from messages
        self.claim_interval: float | None = check_rate("claim_interval", claim_interval)
        self._lease = check_rate("lease", lease)
        if self._lease <= claim_interval:
            raise ConfigurationError(
                f"lease ({lease:g} s) must be longer than claim_interval ({claim_interval:g} s): "
                "a live client renews its lease at each claim"
            )
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigurationError(f"batch must be a positive integer, got {batch!r}")
        self._batch = batch
        connect_url, name = _without_name(url)
        tag = f"{{{check_name('the outbox ?name=', name)}:{check_name('key_hash', key_hash)}}}"
        self._stream = f"analytex:outbox:{tag}:records"
        self._leases = f"analytex:outbox:{tag}:leases"
        self._times = f"analytex:outbox:{tag}:times"
        self.consumer = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        self._client = redis_client("RedisOutbox", connect_url, check_rate("timeout", timeout))
        self._url = safe_url(url)
        self._errors: tuple[type[Exception], ...] = (redis.exceptions.RedisError, OSError)
        self._claim = self._client.register_script(_CLAIM)
        self._release = self._client.register_script(_RELEASE)
        self._owed: list[str] = []  # receipts whose removal failed, to try again
        self._away = False
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisOutbox({self._url!r})"

    def _reason(self, exc: BaseException) -> str:
        return hide_password(self._secret_url, f"{type(exc).__name__}: {exc}")

    def _unreachable(self, action: str, exc: BaseException, then: str) -> None:
        """Log that Redis failed, once until it answers again."""
        if not self._away:
            logger.warning(
                "background delivery could not %s its Redis outbox at %s (%s); %s",
                action,
                self._url,
                self._reason(exc),
                then,
            )
        self._away = True

    def _reachable(self) -> None:
        if self._away:
            logger.warning("background delivery reaches its Redis outbox at %s again", self._url)
        self._away = False

    async def claim(self) -> list[Replayed]:
        """Renew this client's lease, take over dead clients' records and read new ones.

        Never raises for Redis: when it cannot be reached, a WARNING says so (once until it
        answers again) and what was claimed so far is returned; the rest stays in Redis for the
        next claim.

        Returns:
            The records, in the order they were spilled.
        """
        entries: list[tuple[str, Any]] = []
        try:
            # Shielded: entries the script moved to this client are always handed over.
            with anyio.CancelScope(shield=True):
                await self._pay_owed()
                more = True
                while more:
                    reply = await self._claim(
                        keys=[self._stream, self._leases],
                        args=[GROUP, self.consumer, round(self._lease * 1000), self._batch],
                    )
                    found, more = reply[0], bool(reply[1])
                    entries += [(text(e[0]) or "", e[1]) for e in found if e]
        except self._errors as exc:
            self._unreachable(
                "claim records from",
                exc,
                f"its records stay there, the next claim is in {self.claim_interval:g} s",
            )
        else:
            self._reachable()
        entries.sort(key=lambda entry: _stream_order(entry[0]))
        replayed, unreadable = self._decode(entries)
        if unreadable:
            logger.warning(
                "background delivery skipped %d unreadable record(s) in its Redis outbox at %s",
                len(unreadable),
                self._url,
            )
            with contextlib.suppress(*self._errors):
                await self._forget(unreadable)  # else they stay, and are skipped again
        if replayed:
            logger.info(
                "background delivery replays %d record(s) from its Redis outbox at %s",
                len(replayed),
                self._url,
            )
        return replayed

    @staticmethod
    def _decode(entries: list[tuple[str, Any]]) -> tuple[list[Replayed], list[str]]:
        replayed: list[Replayed] = []
        unreadable: list[str] = []
        for entry_id, fields in entries:
            values = dict(zip(fields[::2], fields[1::2], strict=False))
            raw = values.get(_FIELD.encode(), values.get(_FIELD))  # bytes, or text if decoded
            try:
                record = record_from_json(json.loads(raw)) if raw is not None else None
            except ValueError:
                record = None
            if record is None:
                unreadable.append(entry_id)
            else:
                replayed.append(Replayed(record, entry_id))
        return replayed, unreadable

    async def _forget(self, ids: Sequence[str]) -> None:
        with anyio.CancelScope(shield=True):
            for chunk in _chunks(ids, _ACK_CHUNK):
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.xack(self._stream, GROUP, *chunk)
                    pipe.xdel(self._stream, *chunk)
                    await pipe.execute()

    async def _pay_owed(self) -> None:
        if self._owed:
            await self._forget(self._owed)
            self._owed = []

    async def acknowledge(self, receipts: Sequence[object]) -> None:
        """Remove records from the stream: they were delivered, failed, or spilled again.

        Raises:
            OutboxError: Redis could not be reached; the removal is tried again at the next
                claim and at close (records never removed are replayed again: at least once).
        """
        self._owed += [str(receipt) for receipt in receipts]
        try:
            await self._pay_owed()
        except self._errors as exc:
            raise OutboxError(
                f"the Redis outbox at {self._url} could not remove {len(self._owed):,} finished "
                f"record(s) yet ({self._reason(exc)}); it tries again at its next claim and at "
                "close, and records it never removes are replayed again (at least once)"
            ) from None

    async def spill(self, records: Sequence[OutboxRecord]) -> None:
        """Append the records to the stream in one transaction, in the order given.

        Raises:
            OutboxError: Redis could not be reached or refused them; nothing was kept.
            TypeError: A payload is not JSON-compatible; nothing was kept.
        """
        if not records:
            return
        lines = [encode_record(record) for record in records]
        try:
            with anyio.CancelScope(shield=True):
                async with self._client.pipeline(transaction=True) as pipe:
                    for line in lines:
                        pipe.xadd(self._stream, {_FIELD: line})
                    await pipe.execute()
        except self._errors as exc:
            raise OutboxError(
                f"the Redis outbox at {self._url} could not keep {len(records):,} record(s) "
                f"({self._reason(exc)})"
            ) from None

    async def save_send_times(self, times: Mapping[str, Sequence[float]]) -> None:
        """Keep this closing client's answer times for a minute; a WARNING if Redis is away."""
        members = {
            f"{window}:{self.consumer}:{n}": float(answered)
            for window, answers in times.items()
            for n, answered in enumerate(answers)
        }
        if not members:
            return
        try:
            with anyio.CancelScope(shield=True):
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.zadd(self._times, members)
                    pipe.zremrangebyscore(self._times, "-inf", f"({time.time() - _TIMES_KEPT}")
                    pipe.pexpire(self._times, round(_TIMES_KEPT * 1000) + 1000)
                    await pipe.execute()
        except self._errors as exc:
            logger.warning(
                "background delivery could not keep its send times in its Redis outbox at %s (%s)",
                self._url,
                self._reason(exc),
            )

    async def load_send_times(self) -> dict[str, list[float]]:
        """The answer times closing clients left within the last minute, by window.

        Never raises for Redis: when it cannot be reached, a WARNING says so and the windows
        start empty.
        """
        try:
            found: list[Any] = await self._client.zrangebyscore(
                self._times, time.time() - _TIMES_KEPT, "+inf", withscores=True
            )
        except self._errors as exc:
            self._unreachable("read send times from", exc, "the windows start empty")
            return {}
        times: dict[str, list[float]] = {}
        for member, score in found:
            window = (text(member) or "").partition(":")[0]
            times.setdefault(window, []).append(float(score))
        return times

    async def aclose(self) -> None:
        """End this client's lease (what it still holds is claimable at once) and disconnect."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            try:
                await self._pay_owed()
                await self._release(keys=[self._stream, self._leases], args=[GROUP, self.consumer])
            except self._errors as exc:
                logger.warning(
                    "background delivery could not let go of its Redis outbox at %s (%s); what "
                    "it still holds is taken over once its lease ends, within %g s",
                    self._url,
                    self._reason(exc),
                    self._lease,
                )
            await self._client.aclose()

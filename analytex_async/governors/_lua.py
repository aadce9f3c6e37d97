"""The Lua scripts that keep the shared budgets, one atomic step each.

Every decision about the shared budgets is taken inside Redis by one of these scripts, so
workers never race each other between a read and a write, and every script reads one clock:
the Redis server's ``TIME``. :mod:`._redis` (the row schedule) and :mod:`._redis_windows`
(the request windows) only call them and sleep until the time they return.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

# The scripts count in integer microseconds.
MICROS = 1_000_000


def row_cost(rows: int, rows_per_minute: float) -> int:
    """Microseconds of schedule a batch takes, rounded up: a hair slow, never fast."""
    return math.ceil(rows * 60 * MICROS / rows_per_minute)


# All times are integer microseconds of the Redis server's clock: integers stay exact in Lua's
# doubles (2**53 µs is 285 years), compare exactly, and come back to Python as integer replies.
# Every script takes an optional last argument "now" so tests can drive the arithmetic with
# explicit times; the library always leaves it empty, and the script then reads TIME.

_PRELUDE = """
local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function int(x) return string.format('%.0f', x) end
local function num(v) if v then return tonumber(v) end return 0 end
-- Expire state once it can no longer matter, but never shorten an expiry another caller set.
local function keep(key, micros)
  local ms = math.ceil(micros / 1000) + 60000
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, int(ms)) end
end
"""

# KEYS[1]: the schedule hash {tat, pause, rate}. ARGV: cost (µs), rate, [now].
# Returns {now, start, finish, previous rate}.
_ROWS_RESERVE = (
    _PRELUDE
    + """
local now = clock(ARGV[3])
local tat = num(redis.call('HGET', KEYS[1], 'tat'))
local pause = num(redis.call('HGET', KEYS[1], 'pause'))
local start = math.max(now, tat, pause)
local finish = start + tonumber(ARGV[1])
local rate = redis.call('HGET', KEYS[1], 'rate')
redis.call('HSET', KEYS[1], 'tat', int(finish), 'rate', ARGV[2])
keep(KEYS[1], math.max(finish, pause) - now)
return {now, start, finish, rate or ''}
"""
)

# Called by a waiter when it wakes. A push_back after the reservation (pause beyond its start)
# invalidates it: the waiter reserves again behind the pause. Its first slot is not given back
# (others may have reserved behind it); the schedule only gets slower, which is what a 429 asks.
# KEYS[1]: the schedule hash. ARGV: start, cost, [now]. Returns {now, start, finish}.
_ROWS_CONFIRM = (
    _PRELUDE
    + """
local now = clock(ARGV[3])
local start = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local pause = num(redis.call('HGET', KEYS[1], 'pause'))
if pause > start then
  local tat = num(redis.call('HGET', KEYS[1], 'tat'))
  start = math.max(now, tat, pause)
  redis.call('HSET', KEYS[1], 'tat', int(start + cost))
  keep(KEYS[1], start + cost - now)
end
return {now, start, start + cost}
"""
)

# A cancelled waiter gives its reservation back, but only if it is still the latest one:
# anyone who reserved after it was scheduled behind it and sleeps on that time already.
# KEYS[1]: the schedule hash. ARGV: start, finish. Returns 1 when given back.
_ROWS_RELEASE = (
    _PRELUDE
    + """
if num(redis.call('HGET', KEYS[1], 'tat')) == tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'tat', ARGV[1])
  return 1
end
return 0
"""
)

# KEYS[1]: the schedule hash. ARGV: seconds (µs), [now]. Returns {now, pause}.
_ROWS_PUSH_BACK = (
    _PRELUDE
    + """
local now = clock(ARGV[2])
local hold = now + tonumber(ARGV[1])
local tat = math.max(num(redis.call('HGET', KEYS[1], 'tat')), hold)
local pause = math.max(num(redis.call('HGET', KEYS[1], 'pause')), hold)
redis.call('HSET', KEYS[1], 'tat', int(tat), 'pause', int(pause))
keep(KEYS[1], tat - now)
return {now, pause}
"""
)

# The request window: at most `limit` requests in any `period`, a request counting from its
# start until `period` after its response (the server saw it somewhere in between).
#
# KEYS[1] `sched`: every live request by time: its reserved start while waiting, its start
#   while in flight, its response time once finished.
# KEYS[2] `pending`: waiters, scored by the time after which they count as gone.
# KEYS[3] `inflight`: requests in flight, scored likewise.
#
# A new request reserves the start `period` after the limit-th latest entry (waiters queue
# first come, first served, each asleep until its own time: no thundering herd). When it is due
# it checks the window again, because requests before it may have finished later than they
# started: it goes if fewer than `limit` others can still count (finished within the period,
# in flight, or waiting ahead of it), else it waits until enough finished ones age out.
#
# ARGV: token, limit, period, grace, lease, [now]. Returns {now, start, 1 if it may go}.
_WINDOW_TAKE = (
    _PRELUDE
    + """
local sched, pending, inflight = KEYS[1], KEYS[2], KEYS[3]
local token = ARGV[1]
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local now = clock(ARGV[6])

local function leased(m)
  return redis.call('ZSCORE', pending, m) or redis.call('ZSCORE', inflight, m)
end
local function save(horizon)
  for _, key in ipairs({sched, pending, inflight}) do keep(key, horizon - now + period) end
end
local function go()
  redis.call('ZADD', sched, int(now), token)
  redis.call('ZREM', pending, token)
  redis.call('ZADD', inflight, int(now + lease), token)
  save(now + lease)
  return {now, now, 1}
end
local function wait_until(start)
  redis.call('ZADD', sched, int(start), token)
  redis.call('ZADD', pending, int(start + grace), token)
  save(start + grace)
  return {now, start, 0}
end

-- Forget holders that went away: waiters that never came, requests that never finished.
for _, set in ipairs({pending, inflight}) do
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. int(now))) do
    redis.call('ZREM', sched, m)
    redis.call('ZREM', set, m)
  end
end
-- Finished requests stop counting `period` after their response.
for _, m in ipairs(redis.call('ZRANGEBYSCORE', sched, '-inf', int(now - period))) do
  if not leased(m) then redis.call('ZREM', sched, m) end
end

local n = redis.call('ZCARD', sched)
local mine = redis.call('ZSCORE', sched, token)
if not mine then
  if n < limit then return go() end
  local e = redis.call('ZRANGE', sched, n - limit, n - limit, 'WITHSCORES')
  local start = math.max(now, tonumber(e[2]) + period)
  if start > now then return wait_until(start) end
  redis.call('ZADD', sched, int(start), token)
  redis.call('ZADD', pending, int(start + grace), token)
  n = n + 1
  mine = start
end
mine = tonumber(mine)
if mine > now then return {now, mine, 0} end

-- Due: count what the server may still count against us. Waiters ranked after us do not
-- count: they will count us.
local behind = 0
for _, m in ipairs(redis.call('ZRANGE', pending, 0, -1)) do
  if m ~= token then
    local s = tonumber(redis.call('ZSCORE', sched, m))
    if s > mine or (s == mine and m > token) then behind = behind + 1 end
  end
end
local others = n - 1 - behind
if others < limit then return go() end

-- Full: wait until enough finished requests age out. Requests in flight or waiting free
-- nothing before `period` from now, whenever they finish.
local need = others - limit + 1
local start = now + period
local seen = 0
local entries = redis.call('ZRANGE', sched, 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  if not leased(entries[i]) then
    seen = seen + 1
    if seen == need then
      start = math.min(start, tonumber(entries[i + 1]) + period)
      break
    end
  end
end
return wait_until(math.max(start, now + 1))
"""
)

# The response arrived: the request counts from now until `period` from now.
# ARGV: token, period, [now]. Returns now.
_WINDOW_FINISH = (
    _PRELUDE
    + """
local now = clock(ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], int(now), ARGV[1])
keep(KEYS[1], tonumber(ARGV[2]))
return now
"""
)

# A waiter cancelled before it sent anything: it never counted. ARGV: token.
_WINDOW_CANCEL = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


# What a window holds now, for an estimate of its reach. KEYS: sched, pending, inflight.
# ARGV: period (µs), [now]. Returns {now, free-at times (µs) of every slot in use or promised}:
# a request in flight frees `period` after now at the earliest, a finished one `period` after its
# answer, a waiter's `period` after its turn.
_WINDOW_LOAD = (
    _PRELUDE
    + """
local period = tonumber(ARGV[1])
local now = clock(ARGV[2])
local out = {now}
local held = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #held, 2 do
  local at = tonumber(held[i + 1])
  if redis.call('ZSCORE', KEYS[3], held[i]) then
    table.insert(out, int(math.max(at, now) + period))
  elseif at > now - period then
    table.insert(out, int(at + period))
  end
end
return out
"""
)


class Scripts:
    """The Lua scripts, registered on one client (redis-py loads each once, by its SHA)."""

    def __init__(self, client: Redis) -> None:
        self.rows_reserve: AsyncScript = client.register_script(_ROWS_RESERVE)
        self.rows_confirm: AsyncScript = client.register_script(_ROWS_CONFIRM)
        self.rows_release: AsyncScript = client.register_script(_ROWS_RELEASE)
        self.rows_push_back: AsyncScript = client.register_script(_ROWS_PUSH_BACK)
        self.window_take: AsyncScript = client.register_script(_WINDOW_TAKE)
        self.window_finish: AsyncScript = client.register_script(_WINDOW_FINISH)
        self.window_cancel: AsyncScript = client.register_script(_WINDOW_CANCEL)
        self.window_load: AsyncScript = client.register_script(_WINDOW_LOAD)

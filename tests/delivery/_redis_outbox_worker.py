"""A web worker whose outbox is on Redis, in a process of its own (takeover tests).

Run as ``python -m tests.delivery._redis_outbox_worker MODE BASE_URL OUTBOX LEASE INTERVAL
[N]`` with the repository on ``PYTHONPATH``; the outbox's lease and claim interval are
shortened to LEASE and INTERVAL seconds so a takeover takes seconds, not a minute:

* ``hold``: open a client (it claims what the outbox holds), print one JSON line (its stats)
  once it replays something, then keep it until killed: against a server that is down, what
  it claimed stays claimed by it.
* ``await``: open a client, print ``open``, wait until it replayed N records, then print one
  JSON line: its stats once flushed and closed, and ``reached``, the Unix time it had them all.

Spilling and plain replaying are ``_worker_process``'s ``spill`` and ``replay``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time

import attrs

from analytex_async import AsyncAnalytex, DeliveryPolicy
from analytex_async import _redis_outbox as redis_outbox_module

from ._worker_process import KEY


async def hold(base_url: str, outbox: str) -> None:
    async with AsyncAnalytex(
        api_key=KEY, base_url=base_url, delivery=DeliveryPolicy(outbox=outbox)
    ) as client:
        while not client.background.stats.replayed:  # noqa: ASYNC110 -- polling stats
            await asyncio.sleep(0.02)
        print(json.dumps(attrs.asdict(client.background.stats)), flush=True)
        await asyncio.sleep(3600)


async def wait_for(base_url: str, outbox: str, count: int) -> None:
    async with AsyncAnalytex(
        api_key=KEY, base_url=base_url, delivery=DeliveryPolicy(outbox=outbox)
    ) as client:
        print("open", flush=True)
        deadline = time.monotonic() + 30
        while client.background.stats.replayed < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        reached = time.time()
        await client.background.flush(timeout=30)
    print(json.dumps({**attrs.asdict(client.background.stats), "reached": reached}), flush=True)


def main(argv: list[str]) -> None:
    mode, base_url, outbox, lease, interval, *rest = argv
    redis_outbox_module.RedisOutbox = functools.partial(  # type: ignore[misc]
        redis_outbox_module.RedisOutbox, lease=float(lease), claim_interval=float(interval)
    )
    if mode == "hold":
        asyncio.run(hold(base_url, outbox))
    elif mode == "await":
        asyncio.run(wait_for(base_url, outbox, int(rest[0])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

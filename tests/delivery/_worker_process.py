"""A web worker's use of ``client.background`` in a process of its own (multi-process tests).

Run as ``python -m tests.delivery._worker_process MODE ...`` from the repository root; each mode
prints one JSON line, the client's ``DeliveryStats`` once it closed:

* ``spill BASE_URL OUTBOX TAG USERS DRAIN``: open a client with the outbox, queue an identify
  and a track for each of USERS users ``TAG-<n>``, and close after DRAIN seconds of draining
  (against a server that is down, everything is spilled).
* ``replay BASE_URL OUTBOX``: open a client with the outbox (it replays what it finds), flush,
  close.
* ``burst BASE_URL REDIS_URL NAME WORKER USERS RATE START_AT DRAIN OUTBOX GAP``: with a
  ``RedisGovernor`` shared by every worker and ``requests_per_minute=RATE``, wait until the wall
  clock reads START_AT, queue an identify for each of USERS users ``w<WORKER>-<n>``, GAP seconds
  apart (``0``: at once), then flush for DRAIN seconds and close after DRAIN more seconds of
  draining (OUTBOX ``-`` for none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time

import attrs

from analytex_async import AsyncAnalytex, DeliveryPolicy, DeliveryStats

KEY = "sk_test_worker_processes"


def report(stats: DeliveryStats) -> None:
    print(json.dumps(attrs.asdict(stats)), flush=True)


async def spill(base_url: str, outbox: str, tag: str, users: int, drain: float) -> DeliveryStats:
    policy = DeliveryPolicy(outbox=outbox, drain_timeout=drain)
    async with AsyncAnalytex(api_key=KEY, base_url=base_url, delivery=policy) as client:
        for n in range(users):
            client.background.identify(f"{tag}-{n}", metadata={"n": n, "tag": tag})
            client.background.track(f"{tag}-{n}", "Signed Up", metadata={"tag": tag})
        await asyncio.sleep(0.2)  # the worker tries, and finds no server
    return client.background.stats


async def replay(base_url: str, outbox: str) -> DeliveryStats:
    policy = DeliveryPolicy(outbox=outbox)
    async with AsyncAnalytex(api_key=KEY, base_url=base_url, delivery=policy) as client:
        await client.background.flush(timeout=30)
    return client.background.stats


async def burst(
    base_url: str,
    redis_url: str,
    name: str,
    worker: str,
    users: int,
    rate: int,
    start_at: float,
    drain: float,
    outbox: str,
    gap: float,
) -> DeliveryStats:
    from analytex_async.governors import RedisGovernor  # noqa: PLC0415 -- the redis extra

    policy = DeliveryPolicy(
        outbox=None if outbox == "-" else outbox, drain_timeout=drain, bulk_overflow=False
    )
    governor = RedisGovernor(redis_url, name=name, api_key=KEY)
    async with (
        governor,
        AsyncAnalytex(
            api_key=KEY,
            base_url=base_url,
            governor=governor,
            requests_per_minute=rate,
            delivery=policy,
        ) as client,
    ):
        await asyncio.sleep(max(start_at - time.time(), 0))  # every worker bursts together
        for n in range(users):
            client.background.identify(f"w{worker}-{n}", metadata={"worker": worker})
            if gap:
                await asyncio.sleep(gap)
        # What the shared window holds back is spilled (or dropped) at close.
        with contextlib.suppress(TimeoutError):
            await client.background.flush(timeout=drain)
    return client.background.stats


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "spill":
        base_url, outbox, tag, users, drain = args
        report(asyncio.run(spill(base_url, outbox, tag, int(users), float(drain))))
    elif mode == "replay":
        base_url, outbox = args
        report(asyncio.run(replay(base_url, outbox)))
    elif mode == "burst":
        base_url, redis_url, name, worker, users, rate, start_at, drain, outbox, gap = args
        stats = asyncio.run(
            burst(
                base_url,
                redis_url,
                name,
                worker,
                int(users),
                int(rate),
                float(start_at),
                float(drain),
                outbox,
                float(gap),
            )
        )
        report(stats)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

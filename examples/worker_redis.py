"""A worker that imports user files from a Redis queue, sharing one rate budget with its peers.

Run as many copies as you like, on one host or many: they take files from the same Redis list,
and a ``RedisGovernor`` keeps all of them, together, within the account's 1,200 bulk rows a
minute and its one-job-at-a-time rule. Without it, each process would spend the whole budget.

What it shows:

* a plain anyio task-group worker: ``--concurrency`` tasks per process, each taking the next
  file from the queue (``BLPOP``), one governor and one client shared by all of them;
* a journal per file: a worker stopped mid-file (SIGTERM, a deploy) puts the file back on the
  queue, and whoever takes it next resumes from the journal instead of sending it again;
* a clean stop on SIGTERM / Ctrl-C.

Run it (``ANALYTEX_API_KEY`` and ``ANALYTEX_BASE_URL`` from the environment, ``REDIS_URL`` for
the queue and the budget)::

    pip install "analytex-async[redis]"
    export REDIS_URL=redis://localhost:6379/0
    python examples/worker_redis.py --enqueue exports/users-*.ndjson
    python examples/worker_redis.py --concurrency 2 &   # as many of these as you like
    python examples/worker_redis.py --concurrency 2 &
"""

import argparse
import os
import signal
from pathlib import Path

import anyio
from redis.asyncio import Redis

from analytex_async import AnalytexError, AsyncAnalytex
from analytex_async.governors import RedisGovernor

QUEUE = "analytex-example:user-files"
ROWS_PER_MINUTE = 1200  # the account's bulk rate: every worker must use the same value


async def enqueue(redis: Redis, paths: list[str]) -> None:
    """Queue files for the workers (absolute paths: a worker may run elsewhere)."""
    await redis.rpush(QUEUE, *paths)
    print(f"queued {len(paths)} file(s)", flush=True)


# --8<-- [start:worker]
async def work(number: int, redis: Redis, client: AsyncAnalytex, idle_exit: float) -> None:
    """Import the queue's files one after another, until idle for ``idle_exit`` seconds."""
    while True:
        # Blocks until a file is queued; None once the queue stayed empty for idle_exit
        # seconds (0 waits forever, as a long-running worker does).
        item = await redis.blpop([QUEUE], timeout=idle_exit)
        if item is None:
            return
        path = str(item[1])  # (queue name, value), as text: decode_responses=True
        try:
            result = await client.import_users(path, journal=f"{path}.journal")
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):  # stopping: hand the file to another worker
                await redis.rpush(QUEUE, path)
            raise
        except AnalytexError as exc:  # this file failed for good; the worker carries on
            print(f"worker {number}: {path}: failed: {exc}", flush=True)
            continue
        print(
            f"worker {number}: {path}: {result.rows_sent} sent, "
            f"{result.rows_skipped} already sent, {result.rows_rejected} rejected",
            flush=True,
        )


# --8<-- [end:worker]


async def stop_on_signal(scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` on SIGTERM or Ctrl-C."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def main(args: argparse.Namespace) -> None:
    """Queue files (``--enqueue``), or run ``--concurrency`` workers until stopped."""
    redis_url = os.environ["REDIS_URL"]
    async with Redis.from_url(redis_url, decode_responses=True) as redis:
        if args.enqueue:
            await enqueue(redis, args.enqueue)
            return
        governor = RedisGovernor(redis_url, rows_per_minute=ROWS_PER_MINUTE)
        async with (
            governor,
            AsyncAnalytex(governor=governor) as client,
            anyio.create_task_group() as group,
        ):
            group.start_soon(stop_on_signal, group.cancel_scope)
            async with anyio.create_task_group() as workers:
                for number in range(args.concurrency):
                    workers.start_soon(work, number, redis, client, args.idle_exit)
            group.cancel_scope.cancel()  # every worker went idle: stop listening


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--enqueue",
        nargs="+",
        metavar="FILE",
        type=lambda path: str(Path(path).resolve()),
        help="queue files, then exit",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="tasks in this process")
    parser.add_argument(
        "--idle-exit", type=float, default=0, help="exit after this many idle seconds (0: never)"
    )
    # The Redis governor needs asyncio (redis-py's asyncio client), anyio's default backend.
    anyio.run(main, parser.parse_args())

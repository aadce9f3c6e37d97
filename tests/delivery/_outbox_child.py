"""A process that uses an outbox directory, for the multi-process outbox tests.

Run as ``python -m tests.delivery._outbox_child MODE DIRECTORY [ARGS]`` from the repository root:

* ``hold DIR TAG N``: spill N records, print the spill file's path, then keep it (and its lock)
  until stdin closes or the process is killed.
* ``exit DIR TAG N``: spill N records and exit without closing the outbox (the kernel drops the
  lock, as in a crash).
* ``claim DIR remove|hold``: print ``ready``, wait for a line on stdin, claim; print one JSON line
  ``{"paths": [...], "ids": [...]}``; then remove the claimed files, or keep them claimed until
  stdin closes.
* ``fork DIR``: spill and claim an orphan file, then ``os.fork()``; the child tries to claim with
  a new ``Outbox`` and with the inherited one, removes the inherited claimed file, spills through
  the inherited outbox, closes it and exits; another child stays alive without touching the
  outbox until the end; the parent prints one JSON line with what the child
  saw and what a fresh claimer can take before and after the parent closes its outbox.
"""

from __future__ import annotations

import json
import os
import sys

import anyio

from analytex_async._delivery._outbox import ClaimedFile, Outbox, OutboxRecord


def records(tag: str, count: int) -> list[OutboxRecord]:
    """``count`` distinct track records whose user ids start with ``tag``."""
    return [
        OutboxRecord("track", {"user_id": f"{tag}-{i}", "event_name": "Signed Up"})
        for i in range(count)
    ]


async def hold(directory: str, tag: str, count: int) -> None:
    outbox = Outbox(directory)
    await outbox.spill(records(tag, count))
    print(outbox.spill_path, flush=True)
    await anyio.to_thread.run_sync(sys.stdin.read)
    await outbox.aclose()


async def spill_and_exit(directory: str, tag: str, count: int) -> None:
    outbox = Outbox(directory)
    half = count // 2
    await outbox.spill(records(tag, count)[:half])
    await outbox.spill(records(tag, count)[half:])


async def claim(directory: str, then: str) -> None:
    outbox = Outbox(directory)
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    claimed = await outbox.claim()
    ids = [record.payload["user_id"] for file in claimed for record in file.records]
    print(json.dumps({"paths": [str(file.path) for file in claimed], "ids": ids}), flush=True)
    if then == "remove":
        for file in claimed:
            await file.remove()
    else:
        await anyio.to_thread.run_sync(sys.stdin.read)
    await outbox.aclose()


def fork(directory: str) -> None:
    outbox = Outbox(directory)

    async def before() -> list[ClaimedFile]:
        orphan = Outbox(directory)  # a file left by a closed outbox, which the parent claims
        await orphan.spill(records("orphan", 2))
        await orphan.aclose()
        await outbox.spill(records("parent", 3))
        return await outbox.claim()

    [claimed] = anyio.run(before)
    # A child that never touches the outbox keeps copies of the parent's locked descriptors
    # for as long as it lives: the parent's aclose() must release the locks all the same.
    hold_read, hold_write = os.pipe()
    bystander = os.fork()
    if bystander == 0:
        os.close(hold_write)
        os.read(hold_read, 1)
        os._exit(0)
    os.close(hold_read)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)

        async def child() -> dict[str, object]:
            own = len(await Outbox(directory).claim())
            inherited = len(await outbox.claim())
            await claimed.remove()  # the parent's claim: must not delete it
            await outbox.spill(records("child", 1))  # into a file of the child's own
            spill_path = str(outbox.spill_path)
            await outbox.aclose()  # must not unlock the parent's files
            return {"own": own, "inherited": inherited, "spill_path": spill_path}

        try:
            os.write(write_end, json.dumps(anyio.run(child)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        seen = json.loads(pipe.read())

    async def after() -> dict[str, object]:
        while_held = [str(file.path) for file in await Outbox(directory).claim()]
        parent_files = sorted([str(outbox.spill_path), str(claimed.path)])
        await outbox.aclose()
        claimer = Outbox(directory)
        after_close = await claimer.claim()
        await claimer.aclose()
        return {
            "child_pid": pid,
            "while_held": while_held,
            "parent_files": parent_files,
            "after_close": sorted(str(file.path) for file in after_close),
            "records": sum(len(file.records) for file in after_close),
        }

    report = anyio.run(after)
    os.close(hold_write)
    os.waitpid(bystander, 0)
    print(json.dumps({"child": seen, **report}), flush=True)


def main(argv: list[str]) -> None:
    mode, directory, *rest = argv
    if mode == "hold":
        anyio.run(hold, directory, rest[0], int(rest[1]))
    elif mode == "exit":
        anyio.run(spill_and_exit, directory, rest[0], int(rest[1]))
    elif mode == "claim":
        anyio.run(claim, directory, rest[0])
    elif mode == "fork":
        fork(directory)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""One client across event loops, two loops at once, and a real ``os.fork()`` child.

A module-level client is used from one ``asyncio.run`` after another and from ``trio.run``; a
client used by two loops at the same time fails with a clear error; a child forked from a
process whose client is open and busy starts fresh. Against an emulator in a process of its
own (``_emulator_process``): the server outlives every loop, and the forking process holds no
server thread.

These are plain (not anyio) tests: each one starts and ends its own event loops, as scripts,
Celery tasks and pre-forking servers do.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio

from analytex_async import AsyncAnalytex, DeliveryStats

from ._emulator_process import EmulatorProcess, emulator_process

KEY = "sk_test_loops_and_fork"

# A pool made on one loop holds sockets of that loop; once the loop is finished it cannot be
# closed from the next loop (its transports belong to a closed loop), so the client drops it and
# the garbage collector closes the sockets with a ResourceWarning.
IGNORE_DEAD_LOOP_POOLS = pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")
# Python 3.12+ warns on fork() in a process with threads (asyncio's resolver pool); the child
# here only runs its own event loop and exits, it takes no lock a thread could hold.
IGNORE_FORK_WITH_THREADS = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


@pytest.fixture(autouse=True)
def collect_dead_loop_pools() -> Iterator[None]:
    """Collect the pools of finished loops here, where their ResourceWarnings are expected.

    Left to the garbage collector's own time, they would be collected during a later test (or
    at the end of the session), where ``filterwarnings = error`` turns them into failures.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with emulator_process(tmp_path, slow={"/v1/companies/identify": 2.0}) as running:
        yield running


def new_client(emulator: EmulatorProcess, **options: Any) -> AsyncAnalytex:
    return AsyncAnalytex(api_key=KEY, base_url=emulator.base_url, **options)


# -- one loop after another ----------------------------------------------------------------------


@IGNORE_DEAD_LOOP_POOLS
def test_a_module_level_client_serves_three_asyncio_runs_then_trio(
    emulator: EmulatorProcess,
) -> None:
    client = new_client(emulator)

    async def identify(user_id: str) -> None:
        await client.identify(user_id, metadata={"loop": user_id})

    for n in range(3):
        asyncio.run(identify(f"asyncio-{n}"))  # no "Event loop is closed" on the 2nd and 3rd
    trio.run(identify, "trio-0")
    asyncio.run(identify("asyncio-after-trio"))
    seen = emulator.stop()
    assert sorted(seen.users) == sorted(
        ["asyncio-0", "asyncio-1", "asyncio-2", "trio-0", "asyncio-after-trio"]
    )
    assert set(seen.statuses()) == {202}


@IGNORE_DEAD_LOOP_POOLS
def test_aclose_on_a_later_loop_closes_the_client_without_touching_the_finished_loop(
    emulator: EmulatorProcess,
) -> None:
    client = new_client(emulator)
    asyncio.run(client.identify("u1"))
    asyncio.run(client.aclose())  # a script's last step: close the module-level client
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(client.identify("u2"))


@IGNORE_DEAD_LOOP_POOLS
def test_a_client_used_awaited_on_one_loop_opens_for_background_on_the_next(
    emulator: EmulatorProcess,
) -> None:
    client = new_client(emulator)
    asyncio.run(client.identify("first-loop"))

    async def open_and_deliver() -> DeliveryStats:
        async with client:
            client.background.identify("second-loop", metadata={"plan": "pro"})
            client.background.track("second-loop", "Signed Up")
            return await client.background.flush(timeout=10)

    stats = trio.run(open_and_deliver)
    assert stats == DeliveryStats(queued=2, delivered=2)
    seen = emulator.stop()
    assert sorted(seen.users) == ["first-loop", "second-loop"]
    assert [e["event_name"] for e in seen.events] == ["Signed Up"]


def test_closing_is_final_on_every_later_loop(emulator: EmulatorProcess) -> None:
    """``async with`` closes the client for good: a later loop gets errors naming the fix."""
    client = new_client(emulator)

    async def open_once() -> DeliveryStats:
        async with client:
            client.background.identify("u1")
            return await client.background.flush(timeout=10)

    assert asyncio.run(open_once()).delivered == 1

    async def use_again() -> list[str]:
        errors = []
        with pytest.raises(RuntimeError) as background:
            client.background.identify("u2")
        errors.append(str(background.value))
        with pytest.raises(RuntimeError) as awaited:
            await client.identify("u2")
        errors.append(str(awaited.value))
        with pytest.raises(RuntimeError) as reopened:
            async with client:
                pass
        errors.append(str(reopened.value))
        return errors

    background, awaited, reopened = asyncio.run(use_again())
    assert "async with" in background
    assert "closed" in awaited
    assert "create a new one" in awaited
    assert "closed" in reopened
    assert client.background.stats == DeliveryStats(queued=1, delivered=1)
    assert sorted(emulator.stop().users) == ["u1"]


# -- two loops at once ---------------------------------------------------------------------------


def in_a_thread(target: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # handed to the test, which re-raises it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


@IGNORE_DEAD_LOOP_POOLS
def test_a_second_loop_gets_a_clear_error_while_the_first_has_a_request_in_flight(
    emulator: EmulatorProcess,
) -> None:
    client = new_client(emulator)
    in_flight = threading.Event()

    async def slow_call() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client.identify_company, "slow-co")  # the server takes 2 s
            await anyio.sleep(0.3)
            in_flight.set()

    first, first_errors = in_a_thread(lambda: asyncio.run(slow_call()))
    assert in_flight.wait(10)

    def second_loop() -> None:
        asyncio.run(client.identify("second-loop"))

    second, second_errors = in_a_thread(second_loop)
    second.join(10)
    first.join(10)
    assert not first_errors, first_errors
    [error] = second_errors
    assert isinstance(error, RuntimeError)
    assert "another event loop" in str(error)
    assert "one client per loop" in str(error)
    # Once the first loop is done, the next one may take the client over.
    asyncio.run(client.identify("third-loop"))
    seen = emulator.stop()
    assert sorted(seen.users) == ["third-loop"]
    assert seen.statuses("/v1/companies/identify") == [202]


@IGNORE_DEAD_LOOP_POOLS
def test_a_second_loop_gets_a_clear_error_while_the_first_holds_the_client_open(
    emulator: EmulatorProcess,
) -> None:
    client = new_client(emulator)
    opened, release = threading.Event(), threading.Event()

    async def hold_open() -> DeliveryStats:
        async with client:
            client.background.identify("first-loop")
            opened.set()
            await anyio.to_thread.run_sync(release.wait)
            return await client.background.flush(timeout=10)

    results: list[DeliveryStats] = []
    first, first_errors = in_a_thread(lambda: results.append(asyncio.run(hold_open())))
    assert opened.wait(10)

    async def from_another_loop() -> list[str]:
        messages = []
        for call in (
            lambda: client.background.identify("second-loop"),
            lambda: client.background.stats,  # reading the counters is always fine
        ):
            try:
                call()
            except RuntimeError as exc:
                messages.append(str(exc))
        try:
            await client.identify("second-loop")
        except RuntimeError as exc:
            messages.append(str(exc))
        return messages

    try:
        messages = trio.run(from_another_loop)
    finally:
        release.set()
        first.join(10)
    assert not first_errors, first_errors
    assert len(messages) == 2
    assert all("another event loop" in message for message in messages)
    assert results[0].delivered == 1
    assert sorted(emulator.stop().users) == ["first-loop"]


# -- fork ----------------------------------------------------------------------------------------


def child_report(read_end: int) -> dict[str, Any]:
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    return dict(json.loads(data)) if data else {}


def run_child(client: AsyncAnalytex, write_end: int) -> None:
    """In the forked child: use the inherited client, report, and leave with ``os._exit``."""
    code = 1
    report: dict[str, Any] = {}
    try:

        async def child() -> None:
            report["stats_at_start"] = repr(client.background.stats)
            await client.identify("child-awaited")  # awaited calls work at once
            try:
                client.background.identify("child-not-open")
            except RuntimeError as exc:
                report["before_open"] = str(exc)
            async with client:
                client.background.identify("child-background", metadata={"from": "child"})
                client.background.track("child-background", "Child Event")
                report["flushed"] = repr(await client.background.flush(timeout=10))

        asyncio.run(child())
        report["stats_at_end"] = repr(client.background.stats)
        code = 0
    except BaseException as exc:  # the child reports everything, then exits
        report["error"] = repr(exc)
    finally:
        try:
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(code)


@IGNORE_FORK_WITH_THREADS
def test_a_forked_child_starts_fresh_and_the_parent_keeps_its_own(
    emulator: EmulatorProcess,
) -> None:
    client = new_client(emulator)

    async def parent() -> tuple[int, dict[str, Any], DeliveryStats, DeliveryStats]:
        async with client:
            client.background.identify("parent", metadata={"from": "parent"})
            assert (await client.background.flush(timeout=10)).delivered == 1
            # In flight at the fork (the server takes 2 s): the child must not send it again.
            client.background.identify_company("parent-co", metadata={"seats": 3})
            await anyio.sleep(0.2)
            at_fork = client.background.stats
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                run_child(client, write_end)
            os.close(write_end)
            _, status = await anyio.to_thread.run_sync(os.waitpid, pid, 0)
            report = child_report(read_end)
            await client.identify("parent-awaited-after-fork")
            client.background.track("parent", "Parent Event")
            stats = await client.background.flush(timeout=10)
        return os.waitstatus_to_exitcode(status), report, at_fork, stats

    exit_code, report, at_fork, stats = asyncio.run(parent())
    assert exit_code == 0, report
    assert at_fork == DeliveryStats(queued=2, pending=1, delivered=1)
    assert report["stats_at_start"] == repr(DeliveryStats())
    assert "async with" in report["before_open"]
    assert report["flushed"] == repr(DeliveryStats(queued=2, delivered=2))
    assert report["stats_at_end"] == repr(DeliveryStats(queued=2, delivered=2))
    assert stats == DeliveryStats(queued=3, delivered=3)
    seen = emulator.stop()
    assert sorted(seen.users) == [
        "child-awaited",
        "child-background",
        "parent",
        "parent-awaited-after-fork",
    ]
    assert sorted(e["event_name"] for e in seen.events) == ["Child Event", "Parent Event"]
    assert seen.statuses("/v1/companies/identify") == [202]  # sent once, by the parent


@IGNORE_FORK_WITH_THREADS
@IGNORE_DEAD_LOOP_POOLS
def test_a_child_forked_between_loops_uses_the_inherited_client_at_once(
    emulator: EmulatorProcess,
) -> None:
    """gunicorn --preload: the client was made (and used) in the master before the fork."""
    client = new_client(emulator)
    asyncio.run(client.identify("master"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        run_child(client, write_end)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = child_report(read_end)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report["flushed"] == repr(DeliveryStats(queued=2, delivered=2))
    asyncio.run(client.identify("master-after-fork"))
    seen = emulator.stop()
    assert sorted(seen.users) == [
        "child-awaited",
        "child-background",
        "master",
        "master-after-fork",
    ]

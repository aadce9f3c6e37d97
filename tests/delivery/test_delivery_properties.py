"""Properties of background delivery over random interleavings of what an app and a server do.

Hypothesis draws a sequence of operations -- identifies, company identifies and tracks for a few
users, flushes, pauses, and server faults (503, 400, a slow answer) -- then a close with or
without an outbox, and runs it against the in-process emulator on trio's MockClock (retries and
slow answers cost no real time). After every step the counters balance; at the end every
accepted record is delivered, failed (only through a permanent fault), coalesced, dropped (only
by a full queue, or at a close without an outbox) or spilled, the server holds exactly the
delivered ones, and what was spilled is delivered by the next client that opens the outbox.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from analytex_async import AsyncAnalytex, DeliveryPolicy, DeliveryStats
from analytex_async.emulator import Emulator
from analytex_async.testing import EMULATED_BASE_URL, EmulatorTransport

REALTIME = ("/v1/identify", "/v1/companies/identify", "/v1/track")
USERS = ("u0", "u1", "u2")
COMPANIES = ("c0", "c1")

operations = st.one_of(
    st.tuples(st.just("identify"), st.sampled_from(USERS), st.integers(0, 3)),
    st.tuples(st.just("identify_company"), st.sampled_from(COMPANIES), st.integers(0, 3)),
    st.tuples(st.just("track"), st.sampled_from(USERS), st.integers(0, 3)),
    st.tuples(st.just("flush"), st.none(), st.none()),
    st.tuples(st.just("pause"), st.none(), st.sampled_from([0, 0.5, 3])),
    st.tuples(st.just("fault"), st.sampled_from(REALTIME), st.sampled_from([503, 400, "slow"])),
)


@attrs.define
class Run:
    stats: list[DeliveryStats] = attrs.Factory(list)
    full_drops: int = 0
    final: DeliveryStats = attrs.Factory(DeliveryStats)
    replayed: DeliveryStats | None = None


def balanced(stats: DeliveryStats) -> bool:
    settled = stats.delivered + stats.coalesced + stats.dropped + stats.failed + stats.spilled
    return stats.queued == settled + stats.pending


def answered(emulator: Emulator, status: int) -> int:
    return sum(1 for r in emulator.requests if r.path in REALTIME and r.status == status)


def opened(emulator: Emulator, http: httpx.AsyncClient, policy: DeliveryPolicy) -> AsyncAnalytex:
    return AsyncAnalytex(
        api_key="sk_test", base_url=EMULATED_BASE_URL, http_client=http, delivery=policy
    )


async def scenario(
    emulator: Emulator, ops: list[tuple[str, Any, Any]], policy: DeliveryPolicy
) -> Run:
    run = Run()
    async with httpx.AsyncClient(transport=EmulatorTransport(emulator)) as http:
        async with opened(emulator, http, policy) as client:
            for op, target, value in ops:
                before = client.background.stats
                if op == "identify":
                    client.background.identify(target, metadata={"v": value}, company="c0")
                elif op == "identify_company":
                    client.background.identify_company(target, metadata={"seats": value})
                elif op == "track":
                    client.background.track(target, f"Event {value}")
                elif op == "flush":
                    # Past the timeout the counters must balance all the same.
                    with contextlib.suppress(TimeoutError):
                        await client.background.flush(timeout=30)
                elif op == "pause":
                    await anyio.sleep(value)
                elif value == "slow":
                    emulator.faults.add(target, delay=5.0, times=2)
                else:
                    emulator.faults.add(target, status=value, times=1)
                after = client.background.stats
                if op in ("identify", "identify_company", "track"):
                    assert after.queued == before.queued + 1
                    run.full_drops += after.dropped - before.dropped
                run.stats.append(after)
        run.final = client.background.stats
        if policy.outbox is not None:
            emulator.faults.clear()
            async with opened(emulator, http, DeliveryPolicy(outbox=policy.outbox)) as replayer:
                await replayer.background.flush(timeout=600)
            run.replayed = replayer.background.stats
    return run


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(operations, max_size=25),
    queue_size=st.sampled_from([2, 5, 1000]),
    with_outbox=st.booleans(),
    drain_timeout=st.sampled_from([0.1, 2.0, 30.0]),
)
def test_every_accepted_record_ends_counted_and_the_counters_always_balance(
    ops: list[tuple[str, Any, Any]], queue_size: int, with_outbox: bool, drain_timeout: float
) -> None:
    emulator = Emulator()
    with tempfile.TemporaryDirectory() as directory:
        outbox = Path(directory) / "outbox" if with_outbox else None
        policy = DeliveryPolicy(queue_size=queue_size, drain_timeout=drain_timeout, outbox=outbox)
        run = trio.run(scenario, emulator, ops, policy, clock=MockClock(autojump_threshold=0))

    assert all(balanced(stats) for stats in run.stats), run.stats
    for outcome in ("coalesced", "dropped", "failed", "spilled"):
        if getattr(run.final, outcome):
            event(outcome)
    final = run.final
    assert balanced(final)
    assert final.pending == 0
    accepted = sum(1 for op, _, _ in ops if op in ("identify", "identify_company", "track"))
    assert final.queued == accepted
    # Every body is valid: a 400 comes only from an injected fault, and fails one record.
    assert final.failed == answered(emulator, 400)
    if with_outbox:
        assert final.dropped == run.full_drops  # only a full queue drops
        assert run.replayed is not None
        assert run.replayed.replayed == run.replayed.queued == final.spilled
        assert run.replayed.delivered == final.spilled
        delivered = final.delivered + run.replayed.delivered
    else:
        assert final.spilled == 0
        assert final.dropped >= run.full_drops
        delivered = final.delivered
    # In process, a send cancelled at close never reaches the store: exactly once.
    assert answered(emulator, 202) == delivered

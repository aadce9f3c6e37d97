"""The outbox on Redis, against a real ``redis-server`` these tests start themselves.

First the store (``RedisOutbox``) on its own: order, leases and takeover, namespaces, send
times, and a model-based property over claims, acknowledgements, closes and crashes. Then
through the client with the in-process emulator: per-user order across a spill and a replay and
across a takeover, applications kept apart, a restart within the minute, trio refused, and
Redis away or restarted mid-run. Across real processes (SIGKILL): ``test_redis_outbox_processes``.

Redis keeps its own clock, so the lease tests run on real time with leases of a fraction of a
second.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytex_async import AsyncAnalytex, ConfigurationError, DeliveryPolicy
from analytex_async import _redis_outbox as redis_outbox_module
from analytex_async._config import api_key_hash
from analytex_async._delivery._outbox import OutboxError, OutboxRecord, Replayed
from analytex_async._redis_outbox import RedisOutbox
from analytex_async.emulator import Emulator
from analytex_async.governors._windows import RequestWindow
from analytex_async.testing import EMULATED_BASE_URL, EmulatorTransport
from tests._net import free_port
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.anyio

KEY = "sk_test_REDIS_OUTBOX_5d1e"
HASH = api_key_hash(KEY)
PASSWORD = "pw-S3cret-outbox-77"
FAST = {"claim_interval": 0.2, "lease": 0.6}  # a lease that ends in real time, quickly


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client; the trio refusal is tested on its own


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    """The server's URL with an outbox name of its own for each test: tests never share."""
    return f"{redis_server.url}?name=t-{uuid.uuid4().hex[:12]}"


class Outboxes:
    """Makes outboxes on one URL, and closes every one of them at the end of the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[RedisOutbox] = []

    def __call__(self, url: str | None = None, **options: Any) -> RedisOutbox:
        outbox = RedisOutbox(url or self.url, key_hash=options.pop("key_hash", HASH), **options)
        self.made.append(outbox)
        return outbox


@pytest.fixture
async def new(url: str) -> AsyncIterator[Outboxes]:
    outboxes = Outboxes(url)
    try:
        yield outboxes
    finally:
        for outbox in outboxes.made:
            await outbox.aclose()


@pytest.fixture
def fast_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients opened in this test get the short lease of ``FAST`` (and a 1 s Redis timeout)."""
    fast = functools.partial(RedisOutbox, **FAST, timeout=1)
    monkeypatch.setattr(redis_outbox_module, "RedisOutbox", fast)


def server_down(emulator: Emulator) -> None:
    """Every real-time request answers 503 (retried) until ``emulator.faults.clear()``."""
    for path in REALTIME:
        emulator.faults.add(path, status=503, times=None)


def tracks(tag: str, count: int) -> list[OutboxRecord]:
    return [
        OutboxRecord("track", {"user_id": f"{tag}-{n}", "event_name": "Signed Up"})
        for n in range(count)
    ]


def ids(replayed: list[Replayed]) -> list[str]:
    return [str(item.record.payload["user_id"]) for item in replayed]


async def left(raw: redis.asyncio.Redis, outbox: RedisOutbox) -> tuple[int, int]:
    """Entries in the outbox's stream, and how many of them some client holds."""
    length = await raw.xlen(outbox._stream)
    if not length:
        return 0, 0
    pending = await raw.xpending(outbox._stream, redis_outbox_module.GROUP)
    return length, int(pending["pending"])


# --- the store --------------------------------------------------------------------------------


async def test_records_come_back_in_their_order_and_go_once_acknowledged(
    new: Outboxes, raw: redis.asyncio.Redis
) -> None:
    first = new()
    await first.spill(tracks("a", 3))
    await first.spill(tracks("b", 2))
    await first.aclose()

    second = new()
    claimed = await second.claim()
    assert ids(claimed) == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    assert claimed[0].record == tracks("a", 1)[0]
    assert await new().claim() == []  # held by the second
    assert await left(raw, second) == (5, 5)
    await second.acknowledge([item.receipt for item in claimed[:2]])
    assert await left(raw, second) == (3, 3)
    await second.acknowledge([item.receipt for item in claimed[2:]])
    await second.aclose()
    assert await left(raw, second) == (0, 0)
    assert await new().claim() == []


async def test_a_big_spill_is_claimed_step_by_step_in_its_order(new: Outboxes) -> None:
    await new().spill(tracks("a", 50))
    claimed = await new(batch=7).claim()
    assert ids(claimed) == [f"a-{n}" for n in range(50)]


async def test_a_live_clients_records_stay_its_own_and_a_dead_ones_are_taken_over(
    new: Outboxes,
) -> None:
    await new().spill(tracks("a", 4))
    holder = new(**FAST)
    other = new(**FAST)
    assert len(await holder.claim()) == 4
    for _ in range(4):  # 0.8 s, longer than the lease: the holder renews it at each claim
        await anyio.sleep(0.2)
        assert await holder.claim() == []
        assert await other.claim() == []
    # The holder stops claiming, as a killed process does: once its lease ends, it is dead.
    await anyio.sleep(0.7)
    taken = await other.claim()
    assert ids(taken) == ["a-0", "a-1", "a-2", "a-3"]
    assert await new(**FAST).claim() == []


async def test_a_closed_client_lets_go_at_once_of_what_it_still_holds(new: Outboxes) -> None:
    await new().spill(tracks("a", 3))
    holder = new()  # a 40 s lease
    claimed = await holder.claim()
    await holder.acknowledge([claimed[1].receipt])
    await holder.aclose()
    assert ids(await new().claim()) == ["a-0", "a-2"]


async def test_by_default_a_dead_clients_records_are_taken_over_within_a_minute(
    new: Outboxes,
) -> None:
    outbox = new()
    # Its last claim (renewing its lease) came before its death; the lease runs out; the next
    # claim of a client open on the URL (one every claim_interval) takes the records over.
    assert outbox.claim_interval is not None
    assert outbox._lease + outbox.claim_interval < 60


async def test_an_open_client_claims_what_others_spill_meanwhile(new: Outboxes) -> None:
    reader = new()
    assert await reader.claim() == []
    await new().spill(tracks("late", 2))
    assert ids(await reader.claim()) == ["late-0", "late-1"]


async def test_other_api_keys_and_other_names_are_other_outboxes(
    redis_server: RedisServer, raw: redis.asyncio.Redis, new: Outboxes
) -> None:
    name = f"t-{uuid.uuid4().hex[:12]}"
    web = f"{redis_server.url}?name={name}"
    await new(web).spill(tracks("mine", 1))
    await new(web, key_hash=api_key_hash("sk_test_other")).spill(tracks("theirs", 1))
    await new(f"{web}-jobs").spill(tracks("jobs", 1))

    assert ids(await new(web).claim()) == ["mine-0"]
    other = new(web, key_hash=api_key_hash("sk_test_other"))
    assert ids(await other.claim()) == ["theirs-0"]
    assert ids(await new(f"{web}-jobs").claim()) == ["jobs-0"]
    keys = [key.decode() for key in await raw.keys(f"analytex:outbox:*{name}*")]
    assert keys
    assert all(KEY not in key for key in keys)
    other_hash = api_key_hash("sk_test_other")
    assert all(HASH in key or other_hash in key for key in keys)


async def test_send_times_of_the_last_minute_come_back_by_window(new: Outboxes) -> None:
    now = time.time()
    first = new()
    await first.save_send_times({"identify": [now - 70, now - 2, now - 1], "track": [now - 5]})
    await new().save_send_times({"identify": [now - 1]})
    times = await new().load_send_times()
    assert sorted(times["identify"]) == pytest.approx([now - 2, now - 1, now - 1])
    assert times["track"] == pytest.approx([now - 5])
    await first.save_send_times({"identify": [], "track": []})  # nothing to keep: no error


async def test_an_unreadable_entry_is_skipped_with_a_warning_and_removed(
    new: Outboxes, raw: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = new()
    await outbox.spill(tracks("a", 1))
    await raw.xadd(outbox._stream, {"r": b"{not json"})
    await raw.xadd(outbox._stream, {"r": json.dumps({"v": 9, "kind": "track", "payload": {}})})
    await outbox.spill(tracks("b", 1))
    with caplog.at_level(logging.WARNING, logger="analytex_async"):
        claimed = await new().claim()
    assert ids(claimed) == ["a-0", "b-0"]
    assert "skipped 2 unreadable record(s)" in caplog.text
    assert await left(raw, outbox) == (2, 2)


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://127.0.0.1:1/0?name=a{b}", {}, "?name= must be 1 to 200 characters"),
        ("redis://127.0.0.1:1/0?name=a&name=b", {}, "more than once"),
        ("redis://127.0.0.1:1/0", {"lease": 10, "claim_interval": 10}, "longer than"),
        ("redis://127.0.0.1:1/0", {"batch": 0}, "batch must be a positive integer"),
        ("redis://127.0.0.1:1/0", {"claim_interval": -1}, "claim_interval must be"),
        (f"redis://:{PASSWORD}@127.0.0.1:1/0?db=x", {}, "invalid Redis URL"),
        (f"redis://:{PASSWORD}@127.0.0.1:port/0", {}, "invalid Redis URL"),
    ],
)
async def test_bad_settings_are_refused_by_name(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")) as caught:
        RedisOutbox(url, key_hash=HASH, **options)
    assert PASSWORD not in str(caught.value)


# Operations on one outbox by three clients that come and go, and three spilling origins.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("spill"), st.integers(0, 2), st.integers(1, 4)),
        st.tuples(st.just("claim"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("ack"), st.integers(0, 2), st.integers(1, 5)),
        st.tuples(st.just("close"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("crash"), st.integers(0, 2), st.just(0)),
    ),
    max_size=30,
)


async def model_run(url: str, ops: list[tuple[str, int, int]]) -> None:
    """Run ``ops``, checking the invariants after every claim and at the end."""
    raw = redis.asyncio.Redis.from_url(url.partition("?")[0])
    spilled: list[str] = []
    done: set[str] = set()
    clients: dict[int, RedisOutbox] = {}
    held: dict[int, list[Replayed]] = {}
    made: list[RedisOutbox] = []
    counts = [0, 0, 0]
    try:
        for op, who, n in ops:
            if op == "spill":
                records = [
                    OutboxRecord(
                        "track", {"user_id": f"o{who}-{counts[who] + k}", "event_name": "E"}
                    )
                    for k in range(n)
                ]
                counts[who] += n
                spiller = RedisOutbox(url, key_hash=HASH)
                made.append(spiller)
                await spiller.spill(records)
                spilled += ids([Replayed(record, None) for record in records])
            elif op == "claim":
                if who not in clients:
                    clients[who] = RedisOutbox(url, key_hash=HASH)
                    made.append(clients[who])
                    held[who] = []
                claimed = await clients[who].claim()
                got = ids(claimed)
                for origin in range(3):  # each origin's records in the order spilled
                    mine = [int(i.split("-")[1]) for i in got if i.startswith(f"o{origin}-")]
                    assert mine == sorted(mine)
                held[who] += claimed
                holding = [i for w in clients for i in ids(held[w])]
                assert len(holding) == len(set(holding))  # never held by two clients
                assert not set(holding) & done
                assert set(holding) | done == set(spilled)  # it took all nobody alive holds
            elif who in clients and op == "ack":
                acked, held[who] = held[who][:n], held[who][n:]
                await clients[who].acknowledge([item.receipt for item in acked])
                done.update(ids(acked))
            elif who in clients and op == "close":
                await clients.pop(who).aclose()
                held.pop(who)
            elif who in clients and op == "crash":
                # What a lease that ended looks like to the others: no deadline left.
                crashed = clients.pop(who)
                held.pop(who)
                await raw.hdel(crashed._leases, crashed.consumer)
        for outbox in made:
            await outbox.aclose()
        last = RedisOutbox(url, key_hash=HASH)
        made.append(last)
        # Everything not acknowledged, once, in the order it was spilled.
        assert ids(await last.claim()) == [i for i in spilled if i not in done]
    finally:
        for outbox in made:
            await outbox.aclose()
        await raw.aclose()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_every_record_is_held_by_one_live_client_at_most_and_none_is_lost(
    redis_server: RedisServer, ops: list[tuple[str, int, int]]
) -> None:
    url = f"{redis_server.url}?name=p-{uuid.uuid4().hex[:12]}"
    asyncio.run(model_run(url, ops))


# --- Redis away -------------------------------------------------------------------------------


async def test_an_unreachable_redis_is_logged_once_and_no_message_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0?name=away"
    outbox = RedisOutbox(url, key_hash=HASH, timeout=1)
    assert PASSWORD not in repr(outbox)
    assert "***" in repr(outbox)
    with caplog.at_level(logging.WARNING, logger="analytex_async"):
        assert await outbox.claim() == []
        assert await outbox.claim() == []
        assert await outbox.load_send_times() == {}
        with pytest.raises(OutboxError) as spilling:
            await outbox.spill(tracks("a", 2))
        with pytest.raises(OutboxError) as acknowledging:
            await outbox.acknowledge(["1-0"])
        await outbox.save_send_times({"identify": [time.time()]})
        await outbox.aclose()
    messages = [str(spilling.value), str(acknowledging.value), caplog.text]
    assert "could not keep 2 record(s)" in messages[0]
    assert "redis://:***@127.0.0.1" in messages[0]
    assert "ConnectionError" in messages[0]
    assert "tries again at its next claim" in messages[1]
    assert caplog.text.count("could not claim records from its Redis outbox") == 1  # once
    assert "could not keep its send times" in caplog.text
    assert "could not let go of" in caplog.text
    assert all(PASSWORD not in message for message in messages)


async def test_a_wrong_password_is_a_clear_error_that_does_not_show_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_redis(tmp_path) as server:
        admin = redis.asyncio.Redis.from_url(server.url)
        await admin.config_set("requirepass", "the-right-one")
        await admin.aclose()
        outbox = RedisOutbox(
            f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0", key_hash=HASH, timeout=2
        )
        with caplog.at_level(logging.WARNING, logger="analytex_async"):
            assert await outbox.claim() == []
            with pytest.raises(OutboxError) as caught:
                await outbox.spill(tracks("a", 1))
            await outbox.aclose()
    assert "AuthenticationError" in str(caught.value)
    assert PASSWORD not in str(caught.value) + caplog.text


# --- through the client -----------------------------------------------------------------------

REALTIME = ("/v1/identify", "/v1/track")


class Recording(EmulatorTransport):
    """The in-process emulator, noting each real-time body it accepted, in order."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(emulator)
        self.accepted: list[tuple[str, dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path in REALTIME and response.status_code < 300:
            self.accepted.append((request.url.path, json.loads(request.content)))
        return response


def app(
    transport: httpx.AsyncBaseTransport, outbox: str, key: str = KEY, **options: Any
) -> AsyncAnalytex:
    """A client on ``transport`` whose background delivery keeps its outbox at ``outbox``."""
    policy = DeliveryPolicy(outbox=outbox, drain_timeout=options.pop("drain_timeout", 10.0))
    return AsyncAnalytex(
        api_key=key,
        base_url=EMULATED_BASE_URL,
        http_client=httpx.AsyncClient(transport=transport),
        delivery=policy,
        **options,
    )


async def spill_signups(emulator: Emulator, outbox: str, users: int, key: str = KEY) -> None:
    """A client that closes while the server answers 503: an identify and a track per user."""
    server_down(emulator)
    async with app(EmulatorTransport(emulator), outbox, key, drain_timeout=0.3) as client:
        for n in range(users):
            client.background.identify(f"u{n}", metadata={"n": n})
            client.background.track(f"u{n}", "Signed Up")
    assert client.background.stats.spilled == 2 * users
    emulator.faults.clear()


def in_order(accepted: list[tuple[str, dict[str, Any]]], users: int) -> None:
    """Each user's identify, then its track, each accepted once."""
    for n in range(users):
        mine = [path for path, body in accepted if body["user_id"] == f"u{n}"]
        assert mine == ["/v1/identify", "/v1/track"], (n, mine)


async def test_each_users_records_replay_in_order_and_leave_the_stream(
    url: str, raw: redis.asyncio.Redis
) -> None:
    emulator = Emulator()
    await spill_signups(emulator, url, users=6)
    recording = Recording(emulator)
    async with app(recording, url) as client:
        stats = await client.background.flush(timeout=30)
    assert (stats.replayed, stats.delivered, stats.spilled) == (12, 12, 0)
    in_order(recording.accepted, users=6)
    assert await left(raw, RedisOutbox(url, key_hash=HASH)) == (0, 0)


async def test_a_dead_clients_records_are_taken_over_by_an_open_one_in_order(
    url: str, raw: redis.asyncio.Redis, fast_clients: None
) -> None:
    emulator = Emulator()
    await spill_signups(emulator, url, users=5)
    dead = RedisOutbox(url, key_hash=HASH, **FAST)
    assert len(await dead.claim()) == 10
    await dead._client.aclose()  # it never renews its lease nor lets go: killed
    recording = Recording(emulator)
    async with app(recording, url) as client:
        assert client.background.stats.replayed == 0  # its lease has not ended yet
        opened = time.monotonic()
        with anyio.fail_after(5):
            while client.background.stats.replayed < 10:  # noqa: ASYNC110 -- polling stats
                await anyio.sleep(0.02)
        took = time.monotonic() - opened
        stats = await client.background.flush(timeout=30)
    assert FAST["lease"] - 0.3 < took < FAST["lease"] + 2 * FAST["claim_interval"] + 0.5
    assert (stats.replayed, stats.delivered) == (10, 10)
    in_order(recording.accepted, users=5)
    assert await left(raw, dead) == (0, 0)


async def test_two_applications_on_one_redis_never_replay_each_others_records(
    url: str,
) -> None:
    emulator = Emulator()
    await spill_signups(emulator, url, users=2, key=KEY)
    async with app(EmulatorTransport(emulator), url, key="sk_test_another_app") as other:
        await other.background.flush(timeout=10)
    assert other.background.stats.replayed == 0
    async with app(EmulatorTransport(emulator), url) as mine:
        await mine.background.flush(timeout=10)
    assert (mine.background.stats.replayed, mine.background.stats.delivered) == (4, 4)


async def test_a_restart_within_the_minute_starts_from_the_send_times_left_in_redis(
    url: str, redis_server: RedisServer
) -> None:
    emulator = Emulator()
    async with app(EmulatorTransport(emulator), url, requests_per_minute=5) as first:
        for n in range(5):
            first.background.identify(f"u{n}", metadata={"n": n})
        await first.background.flush(timeout=10)
    assert first.background.stats.delivered == 5

    async with app(EmulatorTransport(emulator), url, requests_per_minute=5) as second:
        window = second._life.window_of("identify")
        assert isinstance(window, RequestWindow)
        assert len(window.answered_ages()) == 5  # the first client's, still counted
        with anyio.move_on_after(0.5) as waited:
            await second.identify("u9")  # the window is full: it waits for its minute
        assert waited.cancelled_caught
    elsewhere = f"{redis_server.url}?name=t-{uuid.uuid4().hex[:12]}"
    async with app(EmulatorTransport(emulator), elsewhere, requests_per_minute=5) as fresh:
        with anyio.fail_after(5):
            await fresh.identify("u9")  # another outbox: nothing counted, sent at once


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_under_trio_the_client_refuses_a_redis_outbox_by_name(
    url: str, tmp_path: Path
) -> None:
    client = app(EmulatorTransport(Emulator()), url)
    with pytest.raises(ConfigurationError, match="does not run under trio") as caught:
        async with client:
            pass
    assert "asyncio" in str(caught.value)
    assert "outbox directory" in str(caught.value)
    async with app(EmulatorTransport(Emulator()), str(tmp_path / "outbox")) as works:
        assert works.background.stats.queued == 0  # the client still opens with a directory


async def test_redis_restarted_mid_run_costs_a_warning_and_loses_nothing(
    tmp_path: Path, fast_clients: None, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = Emulator()
    with running_redis(tmp_path) as server:
        url = f"{server.url}?name=restart"
        await spill_signups(emulator, url, users=2)
        server_down(emulator)
        recording = Recording(emulator)
        caplog.set_level(logging.WARNING, logger="analytex_async")
        async with app(recording, url, drain_timeout=0.3) as client:
            with anyio.fail_after(5):
                while client.background.stats.replayed < 4:  # noqa: ASYNC110 -- polling stats
                    await anyio.sleep(0.02)
            admin = redis.asyncio.Redis.from_url(server.url)
            await admin.save()  # what a Redis with persistence keeps over a restart
            await admin.aclose()
            server.stop()
            emulator.faults.clear()
            client.background.track("u7", "During The Outage")
            await client.background.flush(timeout=10)  # delivered; the stream cannot be told
            await anyio.sleep(2 * FAST["claim_interval"])  # a claim or two fail meanwhile
            server.start()  # same port, same directory: the records are back
            await anyio.sleep(2 * FAST["claim_interval"])  # the next claim removes them
            server_down(emulator)
            client.background.identify("u8", metadata={"late": True})
        stats = client.background.stats
        assert (stats.replayed, stats.delivered, stats.spilled, stats.dropped) == (4, 5, 1, 0)
        emulator.faults.clear()
        async with app(recording, url) as after:
            await after.background.flush(timeout=10)
        assert (after.background.stats.replayed, after.background.stats.delivered) == (1, 1)
        admin = redis.asyncio.Redis.from_url(server.url)
        try:
            assert await left(admin, RedisOutbox(url, key_hash=HASH)) == (0, 0)
        finally:
            await admin.aclose()
    in_order(recording.accepted, users=2)
    assert sorted((body["user_id"], path) for path, body in recording.accepted) == [
        ("u0", "/v1/identify"),
        ("u0", "/v1/track"),
        ("u1", "/v1/identify"),
        ("u1", "/v1/track"),
        ("u7", "/v1/track"),
        ("u8", "/v1/identify"),
    ]  # each once: nothing lost, nothing replayed twice
    assert "could not claim records from its Redis outbox at redis://127.0.0.1" in caplog.text
    assert "reaches its Redis outbox at" in caplog.text
    assert "could not clear its outbox" in caplog.text


async def test_redis_away_at_close_counts_what_is_left_dropped_with_an_error(
    tmp_path: Path, fast_clients: None, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = Emulator()
    server_down(emulator)
    with running_redis(tmp_path) as server:
        admin = redis.asyncio.Redis.from_url(server.url)
        await admin.config_set("requirepass", PASSWORD)
        await admin.aclose()
        url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        caplog.set_level(logging.WARNING, logger="analytex_async")
        client = app(EmulatorTransport(emulator), url, drain_timeout=0.3)
        async with client:
            client.background.identify("u1", metadata={"n": 1})
            client.background.track("u1", "Signed Up")
            server.stop()
    stats = client.background.stats
    assert (stats.queued, stats.dropped, stats.spilled, stats.pending) == (2, 2, 0, 0)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("could not spill 2 record(s)" in m and "redis://:***@127.0.0.1" in m for m in errors)
    assert PASSWORD not in caplog.text

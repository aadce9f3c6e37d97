"""client.background: returns at once, coalesces, keeps the order rules, retries what is
transient, counts everything, drains and spills at close.

Timing-dependent tests run on trio's MockClock (time costs nothing); the rest on both backends.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

from analytex_async import (
    AsyncAnalytex,
    DeliveryPolicy,
    DeliveryStats,
    QueueFullError,
    ValidationError,
)

from ..conftest import API_KEY, BASE_URL, NO_WAIT, trio_mock_clock

pytestmark = pytest.mark.anyio


def balanced(stats: DeliveryStats) -> bool:
    return stats.queued == (
        stats.delivered
        + stats.coalesced
        + stats.dropped
        + stats.failed
        + stats.spilled
        + stats.pending
    )


def client(**options: Any) -> AsyncAnalytex:
    options.setdefault("retry_policy", NO_WAIT)
    return AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, **options)


def ok(router: respx.MockRouter) -> list[tuple[str, dict[str, Any]]]:
    """Every real-time route answers 200; the bodies are recorded in order."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={})

    for path in ("/v1/identify", "/v1/companies/identify", "/v1/track"):
        router.post(path).mock(side_effect=record)
    return seen


# -- the caller's side ------------------------------------------------------------------------


async def test_records_are_delivered_and_counted(router: respx.MockRouter) -> None:
    seen = ok(router)
    async with client() as analytex:
        assert analytex.background.identify("u1", metadata={"plan": "pro"}) is None
        analytex.background.identify_company("c1", metadata={"seats": 12})
        analytex.background.track("u1", "Signed Up", metadata={"source": "ads"})
        stats = await analytex.background.flush(timeout=10)
    assert stats == DeliveryStats(queued=3, delivered=3)
    assert sorted(path for path, _ in seen) == [
        "/v1/companies/identify",
        "/v1/identify",
        "/v1/track",
    ]
    assert ("/v1/track", {"user_id": "u1", "event_name": "Signed Up",
                          "metadata": {"source": "ads"}}) in seen  # fmt: skip


async def test_bad_input_raises_in_the_caller_and_queues_nothing(router: respx.MockRouter) -> None:
    ok(router)
    async with client() as analytex:
        with pytest.raises(ValidationError, match="user_id"):
            analytex.background.identify("")
        with pytest.raises(ValidationError, match="event_name"):
            analytex.background.track("u1", "")
        with pytest.raises(ValidationError):
            analytex.background.identify("u1", metadata={"bad": object()})
        assert analytex.background.stats == DeliveryStats()


async def test_a_client_that_is_not_open_says_how_to_open_it() -> None:
    analytex = client()
    with pytest.raises(RuntimeError, match="async with"):
        analytex.background.identify("u1")
    async with analytex:
        pass
    with pytest.raises(RuntimeError, match="async with"):
        analytex.background.track("u1", "x")
    assert analytex.background.stats.queued == 0


# -- coalescing and order ---------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_a_record_handed_over_after_the_lane_went_idle_is_delivered(
    router: respx.MockRouter,
) -> None:
    """Once a lane's send task has taken its record, the lane starts one for the next record.

    The lane counts tasks on their way to take a record (so no task holds a window slot only
    to find the lane empty); that count must be read afresh when the next record arrives.
    """
    seen = ok(router)
    async with client() as analytex:
        for n in range(3):
            analytex.background.identify(f"u{n}")
            analytex.background.identify_company(f"c{n}")
            analytex.background.track(f"u{n}", "Signed In")
            await analytex.background.flush(timeout=5)
        stats = analytex.background.stats
    assert stats == DeliveryStats(queued=9, delivered=9)
    assert len(seen) == 9


async def test_identifies_of_one_user_merge_while_waiting(router: respx.MockRouter) -> None:
    seen = ok(router)
    async with client() as analytex:
        # Handed over in one go (no await between): all still waiting when they merge.
        analytex.background.identify("u1", metadata={"a": 1, "b": 1}, company="c1")
        analytex.background.identify("u1", metadata={"b": 2})
        analytex.background.identify("u1", metadata={"c": 3})
        analytex.background.identify_company("c1", metadata={"x": 1})
        analytex.background.identify_company("c1", metadata={"y": 2})
        stats = await analytex.background.flush()
    assert stats.delivered == 2
    assert stats.coalesced == 3
    assert balanced(stats)
    identify = [body for path, body in seen if path == "/v1/identify"]
    assert identify == [
        {"user_id": "u1", "metadata": {"a": 1, "b": 2, "c": 3}, "company": {"id": "c1"}}
    ]
    company = [body for path, body in seen if path == "/v1/companies/identify"]
    assert company == [{"company_id": "c1", "metadata": {"x": 1, "y": 2}}]


async def test_a_later_company_replaces_the_earlier_one(router: respx.MockRouter) -> None:
    seen = ok(router)
    async with client() as analytex:
        analytex.background.identify("u1", company="c1")
        analytex.background.identify("u1", company={"id": "c2", "plan": "pro"})
        analytex.background.identify("u1", metadata={"k": "v"})
        await analytex.background.flush()
    assert seen == [
        ("/v1/identify", {"user_id": "u1", "metadata": {"k": "v"},
                          "company": {"id": "c2", "plan": "pro"}})
    ]  # fmt: skip


async def test_tracks_never_merge(router: respx.MockRouter) -> None:
    seen = ok(router)
    async with client() as analytex:
        for _ in range(3):
            analytex.background.track("u1", "Clicked")
        stats = await analytex.background.flush()
    assert stats.delivered == 3
    assert stats.coalesced == 0
    assert [path for path, _ in seen] == ["/v1/track"] * 3


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_a_track_waits_for_the_answer_to_its_users_identify(
    router: respx.MockRouter,
) -> None:
    events: list[str] = []

    async def slow_identify(request: httpx.Request) -> httpx.Response:
        events.append("identify sent")
        await anyio.sleep(5)
        events.append("identify answered")
        return httpx.Response(200, json={})

    def track(request: httpx.Request) -> httpx.Response:
        events.append(f"track {json.loads(request.content)['user_id']}")
        return httpx.Response(200, json={})

    router.post("/v1/identify").mock(side_effect=slow_identify)
    router.post("/v1/track").mock(side_effect=track)
    async with client() as analytex:
        analytex.background.identify("u1")
        analytex.background.track("u1", "A")
        analytex.background.track("u2", "B")  # another user: does not wait
        await analytex.background.flush()
    assert events.index("track u1") > events.index("identify answered")
    assert events.index("track u2") < events.index("identify answered")


# -- a full queue -----------------------------------------------------------------------------


async def test_a_full_queue_drops_new_records_and_warns_once(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    ok(router)
    caplog.set_level(logging.WARNING, logger="analytex_async")
    async with client(delivery=DeliveryPolicy(queue_size=2)) as analytex:
        analytex.background.track("u1", "a")
        analytex.background.track("u1", "b")
        analytex.background.track("u1", "c")  # dropped
        analytex.background.track("u1", "d")  # dropped
        analytex.background.identify("u9")  # dropped: new
        stats = analytex.background.stats
        assert (stats.queued, stats.dropped, stats.pending) == (5, 3, 2)
        assert balanced(stats)
        await analytex.background.flush()
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1
    assert API_KEY not in caplog.text


async def test_a_full_queue_can_raise_and_a_coalesced_identify_is_never_new(
    router: respx.MockRouter,
) -> None:
    ok(router)
    policy = DeliveryPolicy(queue_size=1, on_full="raise")
    async with client(delivery=policy) as analytex:
        analytex.background.identify("u1", metadata={"a": 1})
        analytex.background.identify("u1", metadata={"b": 2})  # merges: not new
        with pytest.raises(QueueFullError, match="queue is full"):
            analytex.background.track("u1", "x")
        stats = await analytex.background.flush()
    assert (stats.queued, stats.coalesced, stats.delivered, stats.dropped) == (2, 1, 1, 0)


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_transient_failures_are_retried_until_delivered(router: respx.MockRouter) -> None:
    route = router.post("/v1/track").mock(
        side_effect=[httpx.Response(503)] * 12 + [httpx.Response(429)] * 5
        + [httpx.Response(200, json={})]
    )  # fmt: skip
    async with client() as analytex:
        analytex.background.track("u1", "x")
        stats = await analytex.background.flush()
    assert stats == DeliveryStats(queued=1, delivered=1)
    assert route.call_count == 18


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_a_permanent_failure_is_counted_and_handed_to_on_error(
    router: respx.MockRouter, flavour: str
) -> None:
    router.post("/v1/identify").mock(
        return_value=httpx.Response(400, json={"errors": [{"message": "bad"}]})
    )
    ok_track = router.post("/v1/track").mock(return_value=httpx.Response(200, json={}))
    errors: list[tuple[str, dict[str, Any], Exception]] = []

    def on_error(kind: str, payload: Any, exc: Exception) -> None:
        errors.append((kind, dict(payload), exc))

    async def on_error_async(kind: str, payload: Any, exc: Exception) -> None:
        await anyio.lowlevel.checkpoint()
        on_error(kind, payload, exc)

    policy = DeliveryPolicy(on_error=on_error if flavour == "sync" else on_error_async)
    async with client(delivery=policy) as analytex:
        analytex.background.identify("u1", metadata={"plan": "pro"})
        analytex.background.track("u1", "still sent")
        stats = await analytex.background.flush()
    assert (stats.failed, stats.delivered) == (1, 1)
    assert ok_track.called
    [(kind, payload, exc)] = errors
    assert kind == "identify"
    assert payload == {"user_id": "u1", "metadata": {"plan": "pro"}}
    assert "400" in str(exc)


# -- shutdown and the outbox ------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_close_drains_then_counts_the_rest_dropped_without_an_outbox(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(3600)
        return httpx.Response(200, json={})

    router.post("/v1/track").mock(side_effect=never)
    caplog.set_level(logging.ERROR, logger="analytex_async")
    analytex = client(delivery=DeliveryPolicy(drain_timeout=2))
    async with analytex:
        for n in range(3):
            analytex.background.track("u1", f"e{n}")
        start = anyio.current_time()
    assert anyio.current_time() - start == pytest.approx(2, abs=0.1)
    stats = analytex.background.stats
    assert (stats.queued, stats.dropped, stats.pending) == (3, 3, 0)
    assert "dropped 3 undelivered" in caplog.text


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
@pytest.mark.parametrize("close_at_once", [False, True])
async def test_what_is_left_is_spilled_and_replayed_by_the_next_client(
    router: respx.MockRouter, tmp_path: Path, close_at_once: bool
) -> None:
    """Replayed once: the file goes once its records end, also when the client closes at once
    (a file left would be replayed, its records sent again, by the next start)."""
    outbox = tmp_path / "outbox"
    down = True
    delivered: list[dict[str, Any]] = []

    async def server(request: httpx.Request) -> httpx.Response:
        if down:
            await anyio.sleep(3600)
        delivered.append(json.loads(request.content))
        return httpx.Response(200, json={})

    router.post("/v1/track").mock(side_effect=server)
    router.post("/v1/identify").mock(side_effect=server)
    first = client(delivery=DeliveryPolicy(outbox=outbox, drain_timeout=1))
    async with first:
        first.background.identify("u1", metadata={"n": 1})
        first.background.track("u1", "Signed Up")
    assert first.background.stats.spilled == 2
    assert len(list(outbox.glob("outbox-*.ndjson"))) == 1

    down = False
    second = client(delivery=DeliveryPolicy(outbox=outbox))
    async with second:
        stats = await second.background.flush()
        assert (stats.replayed, stats.queued, stats.delivered) == (2, 2, 2)
        if not close_at_once:
            await anyio.sleep(1)  # the file is removed once its records are delivered
    assert delivered == [
        {"user_id": "u1", "metadata": {"n": 1}},
        {"user_id": "u1", "event_name": "Signed Up"},
    ]
    assert list(outbox.glob("outbox-*.ndjson")) == []

"""OpenTelemetry: a span per API call and per import batch, and the analytex.* metrics.

The SDK's in-memory span exporter and metric reader sit behind the global providers, which a
process can set only once: a module fixture sets them, and each test starts from an empty
exporter and a fresh collection (counters and histograms are read as deltas). What must run
without a provider, or without OpenTelemetry at all, runs in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from analytex_async import (
    APIConnectionError,
    AsyncAnalytex,
    BadRequestError,
    DeliveryPolicy,
    _otel,
)
from analytex_async.emulator import Emulator
from analytex_async.governors import RowGovernor
from analytex_async.testing import TEST_API_KEY, EmulatedAnalytex

from .conftest import API_KEY, BASE_URL, NO_WAIT, trio_mock_clock

pytestmark = pytest.mark.anyio

FAST = {"rows_per_minute": 1_000_000}
ROOT = Path(__file__).resolve().parents[1]


class Telemetry:
    """What the SDK recorded since the test began."""

    def __init__(self, exporter: InMemorySpanExporter, reader: InMemoryMetricReader) -> None:
        self.exporter = exporter
        self.reader = reader

    def clear(self) -> None:
        self.exporter.clear()
        self.reader.get_metrics_data()  # deltas: what was recorded so far is read away

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def points(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                if scope.scope.name != "analytex_async":
                    continue
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


def total(points: list[Any], **attributes: object) -> float:
    """The sum of the points (counter values, or histogram counts) matching ``attributes``."""
    matching = [p for p in points if all(p.attributes.get(k) == v for k, v in attributes.items())]
    return sum(getattr(p, "value", None) or getattr(p, "count", 0) for p in matching)


def every_attribute(spans: list[ReadableSpan]) -> str:
    parts = []
    for span in spans:
        parts += [span.name, repr(dict(span.attributes or {}))]
        parts += [repr(dict(event.attributes or {})) for event in span.events]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def providers() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(preferred_temporality={Counter: delta, Histogram: delta})
    meter_provider = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    assert trace.get_tracer_provider() is tracer_provider, "another test set the providers"
    yield Telemetry(exporter, reader)
    # The global providers stay set for the rest of the process: the tests after these ones
    # run as without OpenTelemetry, not recording every request into memory.
    _otel.use_opentelemetry(False)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def otel(providers: Telemetry) -> Telemetry:
    providers.clear()
    return providers


# -- a span per API call -----------------------------------------------------------------------


async def test_a_call_is_one_client_span_with_the_http_conventions_and_the_request_id(
    otel: Telemetry,
) -> None:
    async with EmulatedAnalytex(Emulator(request_id_factory=lambda: "req-7")) as analytex:
        await analytex.client.identify("u1", metadata={"email": "bob@example.com"})
    (span,) = otel.spans()
    assert span.name == "POST /v1/identify"
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.template"] == "/v1/identify"
    assert attributes["http.response.status_code"] in (200, 201, 202)
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["analytex.request_id"] == "req-7"
    assert span.status.status_code is not StatusCode.ERROR
    assert "bob@example.com" not in every_attribute([span])
    assert TEST_API_KEY not in every_attribute([span])
    requests = otel.points()["analytex.requests"]
    assert total(requests, **{"url.template": "/v1/identify"}) == 1


async def test_retries_are_events_of_one_span_and_counted_by_status(
    otel: Telemetry, router: respx.MockRouter
) -> None:
    router.post("/v1/track").mock(
        side_effect=[httpx.Response(503), httpx.Response(429), httpx.Response(202)]
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as c:
        await c.track("u1", "Signed Up")
    (span,) = otel.spans()
    assert span.attributes is not None
    assert span.attributes["http.request.resend_count"] == 2
    assert span.attributes["http.response.status_code"] == 202
    assert [e.name for e in span.events] == ["retry", "retry"]
    assert [e.attributes["error.type"] for e in span.events if e.attributes] == ["503", "429"]
    found = otel.points()
    route = {"url.template": "/v1/track"}
    assert total(found["analytex.requests"], **route) == 3
    assert total(found["analytex.requests"], **route, **{"http.response.status_code": 503}) == 1
    assert total(found["analytex.retries"], **route) == 2
    assert total(found["analytex.retries"], **{"error.type": "429"}) == 1
    assert API_KEY not in every_attribute([span])


async def test_a_failed_call_ends_its_span_with_an_error_and_no_server_text(
    otel: Telemetry, router: respx.MockRouter
) -> None:
    echo = f"bad email bob@example.com for key {API_KEY}"
    router.post("/v1/identify").respond(400, json={"errors": [{"message": echo}]})
    router.post("/v1/companies/identify").mock(side_effect=httpx.ConnectError(echo))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as c:
        with pytest.raises(BadRequestError):
            await c.identify("u1")
        with pytest.raises(APIConnectionError):
            await c.identify_company("c1")
    refused, unreachable = otel.spans()
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.attributes is not None
    assert refused.attributes["error.type"] == "400"
    assert unreachable.status.status_code is StatusCode.ERROR
    assert unreachable.attributes is not None
    assert unreachable.attributes["error.type"] == "APIConnectionError"
    printed = every_attribute([refused, unreachable]) + repr(
        [refused.status.description, unreachable.status.description]
    )
    assert "bob@example.com" not in printed
    assert API_KEY not in printed
    found = otel.points()
    assert total(found["analytex.requests"], **{"error.type": "APIConnectionError"}) == 5


# -- a span per import batch -------------------------------------------------------------------


async def test_each_import_batch_is_a_span_with_rows_bytes_job_and_waits(
    otel: Telemetry,
) -> None:
    emulator = Emulator(**FAST)
    users = [{"user_id": f"u{n}", "metadata": {"n": n}} for n in range(250)]
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        result = await analytex.client.import_users(users, batch_size=100)
    batches = otel.spans("analytex.import.batch")
    assert [s.attributes["analytex.batch.rows"] for s in batches if s.attributes] == [100, 100, 50]
    assert {s.attributes["analytex.job.id"] for s in batches if s.attributes} == {
        job.job_id for job in result.jobs
    }
    for batch in batches:
        attributes = dict(batch.attributes or {})
        assert attributes["analytex.record.kind"] == "user"
        assert int(str(attributes["analytex.batch.bytes"])) > 0
        assert float(str(attributes["analytex.batch.rate_wait"])) >= 0
        assert float(str(attributes["analytex.batch.job_wait"])) >= 0
    uploads = otel.spans("POST /v1/users/bulk_identify")
    assert len(uploads) == 3
    assert {u.parent.span_id for u in uploads if u.parent} == {
        b.context.span_id for b in batches if b.context
    }
    polls = otel.spans("GET /v1/background_jobs/{job_id}")
    assert polls, "the jobs were polled"
    assert all(p.attributes and p.attributes["url.template"] == JOB_ROUTE for p in polls)
    found = otel.points()
    assert total(found["analytex.rows.sent"], **{"analytex.record.kind": "user"}) == 250
    assert total(found["analytex.rate.wait"]) == 3  # one wait for the governor per batch
    assert total(found["analytex.job.wait"]) >= 2  # batches 2 and 3 wait for the one before


JOB_ROUTE = "/v1/background_jobs/{job_id}"


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_the_seconds_waited_for_the_rate_are_the_governors(otel: Telemetry) -> None:
    # A governor of 600 rows a minute: the second batch of 100 waits 10 s for it (mock clock);
    # the jobs, at the server's fast rate, hold nothing up.
    emulator = Emulator(**FAST)
    users = [{"user_id": f"u{n}"} for n in range(200)]
    async with EmulatedAnalytex(emulator, **FAST, governor=RowGovernor(600)) as analytex:
        await analytex.client.import_users(users, batch_size=100, wait=False)
    waits = sorted(
        float(str((s.attributes or {})["analytex.batch.rate_wait"]))
        for s in otel.spans("analytex.import.batch")
    )
    assert waits[0] == pytest.approx(0, abs=0.01)
    assert waits[1] == pytest.approx(10, abs=0.5)
    (point,) = otel.points()["analytex.rate.wait"]
    assert point.count == 2
    assert point.sum == pytest.approx(10, abs=0.5)


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_the_seconds_waited_for_a_real_time_window_are_counted(otel: Telemetry) -> None:
    # Two identifies a minute: the third waits a minute for the window (mock clock).
    emulator = Emulator(**FAST)
    async with EmulatedAnalytex(emulator, requests_per_minute=2) as analytex:
        for n in range(3):
            await analytex.client.identify(f"u{n}")
    (point,) = otel.points()["analytex.rate.wait"]
    assert point.count == 3
    assert point.sum == pytest.approx(60, abs=1)


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_background_delivery_waits_for_its_window_count_too(otel: Telemetry) -> None:
    # Two tracks a minute: the third one handed to client.background waits a minute.
    emulator = Emulator(**FAST)
    async with EmulatedAnalytex(emulator, requests_per_minute=2) as analytex:
        for n in range(3):
            analytex.client.background.track(f"u{n}", "Viewed")
        await analytex.client.background.flush(timeout=120)
    (point,) = otel.points()["analytex.rate.wait"]
    assert point.count >= 3
    assert point.sum == pytest.approx(60, abs=1)


async def test_every_wait_for_a_job_is_counted_also_outside_an_import(otel: Telemetry) -> None:
    emulator = Emulator(**FAST)
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        job = await analytex.client.bulk_identify([{"user_id": "u1"}])
        await analytex.client.wait_for_job(job.job_id)
    found = otel.points()
    assert total(found["analytex.job.wait"]) == 1
    assert total(found["analytex.rows.sent"], **{"analytex.record.kind": "user"}) == 1


async def test_rejected_and_unchanged_rows_are_counted(otel: Telemetry, tmp_path: Path) -> None:
    emulator = Emulator(**FAST)
    users: list[Any] = [{"user_id": f"u{n}"} for n in range(20)]
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        await analytex.client.import_users([*users, {"metadata": {}}, 7], on_invalid="skip")
        state = tmp_path / "sync.state"
        await analytex.client.sync_users(users, state=str(state))
        otel.clear()
        await analytex.client.sync_users(users, state=str(state))
    found = otel.points()
    assert total(found["analytex.rows.unchanged"], **{"analytex.record.kind": "user"}) == 20
    assert "analytex.rows.sent" not in found or total(found["analytex.rows.sent"]) == 0


async def test_invalid_rows_count_as_rejected(otel: Telemetry) -> None:
    emulator = Emulator(**FAST)
    users: list[Any] = [{"user_id": "u1"}, {"metadata": {}}, 7]
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        result = await analytex.client.import_users(users, on_invalid="skip")
    assert result.rows_rejected == 2
    found = otel.points()
    assert total(found["analytex.rows.rejected"], **{"analytex.record.kind": "user"}) == 2
    assert total(found["analytex.rows.sent"]) == 1


# -- background delivery -----------------------------------------------------------------------


async def test_background_queue_depth_and_drops(otel: Telemetry, router: respx.MockRouter) -> None:
    router.post("/v1/track").respond(202)
    policy = DeliveryPolicy(queue_size=2)
    async with AsyncAnalytex(
        api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT, delivery=policy
    ) as client:
        for name in "abcd":
            client.background.track("u1", name)  # c and d are dropped: the queue holds 2
        found = otel.points()
        assert [p.value for p in found["analytex.background.queue_depth"]] == [2]
        dropped = found["analytex.background.dropped"]
        assert total(dropped, **{"analytex.record.kind": "track"}) == 2
        await client.background.flush()
        assert [p.value for p in otel.points()["analytex.background.queue_depth"]] == [0]


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_records_left_at_shutdown_are_counted_spilled(
    otel: Telemetry, router: respx.MockRouter, tmp_path: Path
) -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(3600)
        return httpx.Response(202)

    router.post("/v1/track").mock(side_effect=never)
    policy = DeliveryPolicy(outbox=tmp_path / "outbox", drain_timeout=1)
    async with AsyncAnalytex(
        api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT, delivery=policy
    ) as client:
        client.background.track("u1", "a")
        client.background.track("u1", "b")
    found = otel.points()
    assert total(found["analytex.background.spilled"], **{"analytex.record.kind": "track"}) == 2


# -- without a provider, or without OpenTelemetry ----------------------------------------------


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_sdk_works_with_opentelemetry_absent() -> None:
    out = run_python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        import anyio
        from analytex_async import _otel
        from analytex_async.testing import EmulatedAnalytex
        from analytex_async.emulator import Emulator

        async def main():
            async with EmulatedAnalytex(Emulator(rows_per_minute=1e6), rows_per_minute=1e6) as a:
                await a.client.identify("u1")
                await a.client.import_users([{"user_id": f"u{n}"} for n in range(30)])
                a.client.background.track("u1", "e")
                await a.client.background.flush()

        anyio.run(main)
        assert not _otel.opentelemetry_available()
        assert not any(name.startswith("opentelemetry.") for name in sys.modules)
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_the_api_is_imported_when_the_client_is_made_not_at_its_first_request() -> None:
    """Importing OpenTelemetry takes milliseconds: not on the event loop, in a request."""
    out = run_python(
        """
        import sys
        import analytex_async
        assert "opentelemetry.trace" not in sys.modules  # importing the SDK costs nothing
        analytex_async.AsyncAnalytex(api_key="sk_test")
        assert "opentelemetry.trace" in sys.modules
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_an_application_that_configures_opentelemetry_after_the_client_gets_everything() -> None:
    out = run_python(
        """
        import anyio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from analytex_async.testing import EmulatedAnalytex

        async def main():
            async with EmulatedAnalytex() as analytex:
                await analytex.client.identify("before")  # no provider yet: nothing recorded
                exporter = InMemorySpanExporter()
                tracing = TracerProvider()
                tracing.add_span_processor(SimpleSpanProcessor(exporter))
                trace.set_tracer_provider(tracing)
                reader = InMemoryMetricReader()
                metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                await analytex.client.identify("after")
            names = [s.name for s in exporter.get_finished_spans()]
            data = reader.get_metrics_data()
            counted = {
                m.name: sum(p.value for p in m.data.data_points)
                for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
                if m.name == "analytex.requests"
            }
            print(names, counted)

        anyio.run(main)
        """
    )
    assert out.strip() == "['POST /v1/identify'] {'analytex.requests': 1}"

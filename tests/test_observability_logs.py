"""Log records: the request's fields as ``extra`` attributes, the levels, and what never shows.

Every record of a request carries ``request_id``, ``method``, ``path``, ``status`` and ``attempt``
(and a bulk record ``job_id`` and ``rows``), so structlog and JSON formatters pick them up:
DEBUG for every attempt, INFO for batches and jobs, WARNING for retries and drops. The key never
appears at any level, and a record's contents never at INFO or above.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import httpx
import pytest
import respx

from analytex_async import APIConnectionError, AsyncAnalytex, DeliveryPolicy
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from .conftest import API_KEY, BASE_URL, NO_WAIT

pytestmark = pytest.mark.anyio

FAST = {"rows_per_minute": 1_000_000}
SECRET_EMAIL = "bob.private@example.com"
"""A value inside a record: allowed in DEBUG at most, never at INFO or above."""
FIELDS = ("request_id", "method", "path", "status", "attempt")


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("analytex_async")]


def everything_in(record: logging.LogRecord) -> str:
    """The record as any formatter could show it: message, arguments, and every attribute."""
    return "\n".join([record.getMessage(), repr(record.args), repr(vars(record))])


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    # Some tests set the SDK logger's own level: start from DEBUG whatever they left.
    caplog.set_level(logging.DEBUG, logger="analytex_async")
    return caplog


async def test_every_attempt_is_a_debug_record_with_the_request_fields(
    router: respx.MockRouter, debug_logs: pytest.LogCaptureFixture
) -> None:
    router.post("/v1/identify").respond(202, headers={"x-request-id": "req-42"})
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as c:
        await c.identify("u1")
    (record,) = ours(debug_logs)
    assert record.levelno == logging.DEBUG
    fields = {name: getattr(record, name) for name in FIELDS}
    assert fields == {
        "request_id": "req-42",
        "method": "POST",
        "path": "/v1/identify",
        "status": 202,
        "attempt": 1,
    }


async def test_a_retry_is_a_warning_with_the_failed_attempts_fields_and_no_server_text(
    router: respx.MockRouter, debug_logs: pytest.LogCaptureFixture
) -> None:
    router.post("/v1/track").mock(
        side_effect=[
            httpx.Response(
                503,
                headers={"x-request-id": "req-1"},
                json={"errors": [{"message": f"cannot store {SECRET_EMAIL}"}]},
            ),
            httpx.Response(202, headers={"x-request-id": "req-2"}),
        ]
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as c:
        await c.track("u1", "Signed Up", metadata={"email": SECRET_EMAIL})
    records = ours(debug_logs)
    assert [r.levelname for r in records] == ["DEBUG", "WARNING", "DEBUG"]
    first, retry, second = records
    assert (first.status, first.attempt, first.request_id) == (503, 1, "req-1")  # type: ignore[attr-defined]
    assert (retry.status, retry.attempt, retry.request_id) == (503, 1, "req-1")  # type: ignore[attr-defined]
    assert (retry.method, retry.path) == ("POST", "/v1/track")  # type: ignore[attr-defined]
    assert (second.status, second.attempt, second.request_id) == (202, 2, "req-2")  # type: ignore[attr-defined]
    assert "503 Service Unavailable [request id req-1]" in retry.getMessage()
    assert "retry 1 of 4" in retry.getMessage()
    assert SECRET_EMAIL not in everything_in(retry)


async def test_a_connection_failure_has_the_fields_with_no_status(
    router: respx.MockRouter, debug_logs: pytest.LogCaptureFixture
) -> None:
    router.post("/v1/identify").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(202)]
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as c:
        await c.identify("u1")
    failed, retry, sent = ours(debug_logs)
    for record in (failed, retry):
        assert (record.status, record.attempt, record.request_id) == (None, 1, None)  # type: ignore[attr-defined]
    assert retry.levelno == logging.WARNING
    assert (sent.status, sent.attempt) == (202, 2)  # type: ignore[attr-defined]


async def test_an_import_logs_each_batch_and_each_job_at_info_with_job_id_and_rows(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    ids = (f"req-{n}" for n in itertools.count(1))
    emulator = Emulator(**FAST, request_id_factory=lambda: next(ids))
    users = [{"user_id": f"u{n}", "metadata": {"email": SECRET_EMAIL}} for n in range(150)]
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        result = await analytex.client.import_users(users, batch_size=100)
    jobs = [job.job_id for job in result.jobs]
    info = [r for r in ours(debug_logs) if r.levelno == logging.INFO]
    batches = [r for r in info if "batch" in r.getMessage()]
    finished = [r for r in info if r.getMessage().startswith("job ")]
    assert [(r.job_id, r.rows) for r in batches] == [(jobs[0], 100), (jobs[1], 50)]  # type: ignore[attr-defined]
    for record in batches:
        assert record.method == "POST"  # type: ignore[attr-defined]
        assert record.path == "/v1/users/bulk_identify"  # type: ignore[attr-defined]
        assert record.status == 202  # type: ignore[attr-defined]
        assert record.attempt == 1  # type: ignore[attr-defined]
        assert str(record.request_id).startswith("req-")  # type: ignore[attr-defined]
        assert "accepted as job" in record.getMessage()
    assert sorted((r.job_id, r.rows) for r in finished) == sorted(zip(jobs, [100, 50]))  # type: ignore[attr-defined]
    assert all("completed" in r.getMessage() for r in finished)
    polls = [r for r in ours(debug_logs) if getattr(r, "path", "").startswith("/v1/background_")]
    assert polls, "the jobs were polled"
    assert {getattr(r, "job_id", None) for r in polls} <= set(jobs)
    uploads = [r for r in ours(debug_logs) if getattr(r, "path", "") == "/v1/users/bulk_identify"]
    assert all(r.rows in (100, 50) for r in uploads)  # type: ignore[attr-defined]


async def test_a_full_background_queue_warns_about_drops(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="analytex_async")
    router.post("/v1/track").respond(202)
    policy = DeliveryPolicy(queue_size=1)
    async with AsyncAnalytex(
        api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT, delivery=policy
    ) as client:
        client.background.track("u1", "a", metadata={"email": SECRET_EMAIL})
        client.background.track("u1", "b", metadata={"email": SECRET_EMAIL})
        await client.background.flush()
    (warning,) = [r for r in ours(caplog) if r.levelno >= logging.WARNING]
    assert "dropped 1 record" in warning.getMessage()
    assert SECRET_EMAIL not in everything_in(warning)


@pytest.mark.parametrize("level", [1, logging.DEBUG, logging.INFO, logging.WARNING])
async def test_the_key_never_shows_and_record_contents_never_at_info_or_above(
    level: int, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(level, logger="analytex_async")
    echo = f"refused {SECRET_EMAIL} for Token {API_KEY}"
    responses = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        responses["n"] += 1
        if responses["n"] % 2:
            return httpx.Response(503, headers={"x-request-id": f"id-{API_KEY}"}, text=echo)
        return httpx.Response(202, json={"job_id": f"job-{responses['n']}", "status": "queued"})

    router.post("/v1/identify").mock(side_effect=flaky)
    router.post("/v1/users/bulk_identify").mock(side_effect=flaky)
    router.get(url__regex=r"/v1/background_jobs/.*").respond(
        200, json={"job_id": "job-2", "status": "completed", "total_rows": 2}
    )
    router.post("/v1/companies/identify").mock(side_effect=httpx.ConnectError(echo))
    async with AsyncAnalytex(
        api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT, **FAST
    ) as client:
        await client.identify("u1", metadata={"email": SECRET_EMAIL})
        users = [{"user_id": "u1", "metadata": {"email": SECRET_EMAIL}}, {"user_id": "u2"}]
        await client.import_users(users, wait=True)
        with pytest.raises(APIConnectionError):
            await client.identify_company("c1", metadata={"email": SECRET_EMAIL})
    records = ours(caplog)
    assert records, "nothing was logged: the test proves nothing"
    for record in records:
        shown: Any = everything_in(record)
        assert API_KEY not in shown
        if record.levelno >= logging.INFO:
            # The connection error's own text is httpx's, which the test made echo the record.
            if record.getMessage().startswith("POST /v1/companies/identify"):
                continue
            assert SECRET_EMAIL not in shown, record.getMessage()

"""The API key never shows: not in repr, logs, exception messages, or parsed server errors."""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest
import respx

from analytex_async import (
    APIConnectionError,
    APIError,
    AsyncAnalytex,
    AuthenticationError,
    InternalServerError,
)

from .conftest import API_KEY, BASE_URL, NO_WAIT

pytestmark = pytest.mark.anyio


def everything_printed(error: BaseException) -> str:
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, APIError) and error.request is not None:
        parts += [repr(error.request), repr(error.request.headers)]
    for detail in getattr(error, "errors", []):
        parts += [str(detail), repr(detail)]
    return "\n".join(parts)


async def test_key_is_absent_from_repr_and_str_of_the_client(client: AsyncAnalytex) -> None:
    assert API_KEY not in repr(client)
    assert API_KEY not in str(client)
    assert API_KEY not in repr(client._transport)
    assert "***" in repr(client)


async def test_key_never_reaches_logs_or_errors_even_when_the_server_echoes_it(
    client: AsyncAnalytex, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    echo = f"invalid key 'Token {API_KEY}'"
    router.post("/v1/identify").respond(
        401, json={"errors": [{"error": echo, "error_code": API_KEY, "message": echo}]}
    )
    router.post("/v1/track").respond(503, text=echo)
    router.post("/v1/companies/identify").mock(side_effect=httpx.ConnectError(echo))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="analytex_async")  # whatever an earlier test left
    failures: list[BaseException] = []
    for call, cls in (
        (client.identify("u1"), AuthenticationError),
        (client.track("u1", "e"), InternalServerError),
        (client.identify_company("c1"), APIConnectionError),
    ):
        with pytest.raises(cls) as info:
            await call
        failures.append(info.value)
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records) + caplog.text
    assert "POST /v1/identify -> 401 (attempt 1" in logged  # DEBUG lines were captured
    assert "retry 1 of 4" in logged
    assert API_KEY not in logged
    for error in failures:
        printed = everything_printed(error)
        assert API_KEY not in printed
        assert "***" in printed


async def test_debug_log_names_method_path_status_attempt_and_time(
    client: AsyncAnalytex, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    router.post("/v1/identify").respond(202)
    with caplog.at_level(logging.DEBUG, logger="analytex_async"):
        await client.identify("u1")
    (record,) = [r for r in caplog.records if r.name == "analytex_async"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage().startswith("POST /v1/identify -> 202 (attempt 1, ")
    assert record.getMessage().endswith(" s)")


async def test_authorization_is_only_ever_sent_to_the_configured_host(
    router: respx.MockRouter,
) -> None:
    router.post("/v1/identify").respond(302, headers={"Location": "https://elsewhere.test/x"})
    elsewhere = respx.route(host="elsewhere.test").respond(202)
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        with pytest.raises(APIError):
            await client.identify("u1")
    assert not elsewhere.called
    assert {c.request.url.host for c in router.calls} == {"analytex.test"}


async def test_key_is_redacted_from_request_id_location_and_error_details(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    router.post("/v1/identify").respond(
        301,
        headers={"X-Request-Id": f"req-{API_KEY}", "Location": f"https://x.test/?k={API_KEY}"},
        json={"errors": [{"message": "m", "details": {"key": API_KEY, "list": [API_KEY, 1]}}]},
    )
    with pytest.raises(APIError) as info:
        await client.identify("u1")
    assert API_KEY not in everything_printed(info.value)
    assert info.value.errors[0].details == {"key": "***", "list": ["***", 1]}  # type: ignore[attr-defined]
    assert info.value.request_id == "req-***"  # type: ignore[attr-defined]


async def test_a_callers_client_that_follows_redirects_still_does_not(
    router: respx.MockRouter,
) -> None:
    router.post("/v1/identify").respond(307, headers={"Location": "https://elsewhere.test/x"})
    elsewhere = respx.route(host="elsewhere.test").respond(202)
    async with (
        httpx.AsyncClient(follow_redirects=True) as http_client,
        AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, http_client=http_client) as client,
    ):
        with pytest.raises(APIError, match="not followed"):
            await client.identify("u1")
    assert not elsewhere.called

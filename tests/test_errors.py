"""Every failure becomes its own exception class, with status, parsed errors and request id."""

from __future__ import annotations

import logging

import httpx
import pytest
import respx

from analytex_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncAnalytex,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ErrorDetail,
    ImportAbortedError,
    ImportResult,
    InternalServerError,
    Job,
    JobStatus,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
)
from analytex_async.emulator import Emulator
from analytex_async.testing import EMULATED_BASE_URL, EmulatorTransport

from ._net import free_port
from .conftest import API_KEY, BASE_URL, NO_WAIT

pytestmark = pytest.mark.anyio

ERROR_BODY = {
    "errors": [
        {
            "error": "invalid_payload",
            "error_code": "E1001",
            "message": "user_id is required",
            "details": {"field": "user_id"},
        }
    ]
}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError),
        (404, NotFoundError), (409, ConflictError), (413, PayloadTooLargeError),
        (418, APIStatusError), (422, APIStatusError),
    ],
)  # fmt: skip
async def test_client_errors_map_to_their_class_and_are_not_retried(
    client: AsyncAnalytex, router: respx.MockRouter, status: int, cls: type[APIStatusError]
) -> None:
    route = router.post("/v1/identify").respond(
        status, json=ERROR_BODY, headers={"X-Request-Id": "req-123"}
    )
    with pytest.raises(cls) as info:
        await client.identify("u1")
    error = info.value
    assert type(error) is cls
    assert route.call_count == 1
    assert error.status_code == status
    assert error.attempts == 1
    assert error.request_id == "req-123"
    assert error.errors == [
        ErrorDetail("invalid_payload", "E1001", "user_id is required", {"field": "user_id"})
    ]
    assert str(error).startswith(f"POST /v1/identify answered {status}")
    assert "user_id is required" in str(error)
    assert "req-123" in str(error)
    assert error.response.status_code == status


@pytest.mark.parametrize(("status", "cls"), [(429, RateLimitError), (500, InternalServerError),
                                             (502, InternalServerError), (503, InternalServerError),
                                             (504, InternalServerError)])  # fmt: skip
async def test_retryable_statuses_raise_their_class_after_the_last_attempt(
    client: AsyncAnalytex, router: respx.MockRouter, status: int, cls: type[APIStatusError]
) -> None:
    route = router.post("/v1/track").respond(status, text="busy")
    with pytest.raises(cls) as info:
        await client.track("u1", "e")
    assert route.call_count == NO_WAIT.max_retries + 1
    assert info.value.attempts == NO_WAIT.max_retries + 1
    assert f"after {NO_WAIT.max_retries + 1} attempts" in str(info.value)
    assert info.value.errors == [ErrorDetail(message="busy")]


async def test_rate_limit_error_carries_retry_after(
    router: respx.MockRouter,
) -> None:
    router.post("/v1/identify").respond(429, headers={"Retry-After": "0"})
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, max_retries=0) as client:
        with pytest.raises(RateLimitError) as info:
            await client.identify("u1")
    assert info.value.retry_after == 0.0


@pytest.mark.parametrize(
    ("kwargs", "errors"),
    [
        ({"text": ""}, []),
        ({"text": "Bad things happened"}, [ErrorDetail(message="Bad things happened")]),
        ({"json": {"message": "nope", "code": "X"}}, [ErrorDetail(error_code="X", message="nope")]),
        ({"json": ["one", "two"]}, [ErrorDetail(message="one"), ErrorDetail(message="two")]),
        ({"json": {"errors": [{"message": "a"}, "b"]}},
         [ErrorDetail(message="a"), ErrorDetail(message="b")]),
    ],
)  # fmt: skip
async def test_error_bodies_in_every_shape_parse(
    client: AsyncAnalytex, router: respx.MockRouter, kwargs: dict[str, object], errors: object
) -> None:
    router.post("/v1/identify").respond(400, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(BadRequestError) as info:
        await client.identify("u1")
    assert info.value.errors == errors


async def test_multiple_errors_are_counted_in_the_message(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    router.post("/v1/identify").respond(
        400, json={"errors": [{"message": "first"}, {"message": "second"}]}
    )
    with pytest.raises(BadRequestError, match=r"first \(and 1 more\)"):
        await client.identify("u1")


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectError("refused"), APIConnectionError),
        (httpx.RemoteProtocolError("peer closed"), APIConnectionError),
        (httpx.ReadError("reset"), APIConnectionError),
        (httpx.ConnectTimeout("slow"), APITimeoutError),
        (httpx.ReadTimeout("slow"), APITimeoutError),
        (httpx.WriteTimeout("slow"), APITimeoutError),
        (httpx.PoolTimeout("full"), APITimeoutError),
    ],
)
async def test_transport_failures_become_connection_errors_after_retries(
    client: AsyncAnalytex, router: respx.MockRouter, exc: Exception, cls: type[APIError]
) -> None:
    route = router.post("/v1/identify").mock(side_effect=exc)
    with pytest.raises(cls) as info:
        await client.identify("u1")
    assert type(info.value) is cls
    assert route.call_count == NO_WAIT.max_retries + 1
    assert info.value.attempts == NO_WAIT.max_retries + 1
    assert isinstance(info.value.__cause__, type(exc))
    assert "POST https://analytex.test/v1/identify" in str(info.value)


async def test_a_redirect_is_not_followed_and_credentials_stay_home(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    router.post("/v1/identify").respond(307, headers={"Location": "https://evil.example/steal"})
    evil = respx.post("https://evil.example/steal").respond(202)
    with pytest.raises(APIStatusError, match="not followed") as info:
        await client.identify("u1")
    assert info.value.status_code == 307
    assert not evil.called


async def test_import_aborted_error_carries_the_partial_result_and_cause() -> None:
    job = Job("j1", JobStatus.COMPLETED)
    result = ImportResult(rows_read=20, rows_sent=10, jobs=[job])
    cause = InternalServerError(
        "POST /v1/users/bulk_identify answered 503",
        response=httpx.Response(503, request=httpx.Request("POST", BASE_URL)),
    )
    error = ImportAbortedError("import stopped", result=result)
    error.__cause__ = cause
    with pytest.raises(ImportAbortedError) as info:
        raise error
    assert info.value.result.jobs == [job]
    assert info.value.__cause__ is cause
    assert isinstance(info.value, APIError)


async def test_a_connection_error_names_the_url_the_attempts_and_the_time() -> None:
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}"
    policy = RetryPolicy(max_retries=2, initial_delay=0.0, max_delay=0.0, random=lambda: 0.0)
    async with AsyncAnalytex(api_key=API_KEY, base_url=url, retry_policy=policy) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.identify("u1")
    message = str(info.value)
    assert message.startswith(f"POST {url}/v1/identify: connection refused after 3 attempts over ")
    assert message.split(" over ")[1].split(" s", maxsplit=1)[0].replace(".", "").isdigit()
    assert info.value.attempts == 3
    assert API_KEY not in message


async def test_a_401_for_an_app_token_says_to_use_the_api_key(router: respx.MockRouter) -> None:
    router.post("/v1/track").mock(return_value=httpx.Response(401, json={"errors": []}))
    async with AsyncAnalytex(api_key="NX-98ii14b", base_url=BASE_URL) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.track("u1", "e")
    assert "looks like an app token" in str(info.value)
    assert "Environment settings" in str(info.value)
    assert "NX-98ii14b" not in str(info.value)


async def test_the_app_token_hint_is_said_once_when_the_server_says_it_too() -> None:
    emulator = Emulator(api_keys=["sk_real"])
    http = httpx.AsyncClient(transport=EmulatorTransport(emulator))
    async with (
        http,
        AsyncAnalytex(api_key="NX-98ii14b", base_url=EMULATED_BASE_URL, http_client=http) as client,
    ):
        with pytest.raises(AuthenticationError) as info:
            await client.track("u1", "e")
    assert str(info.value).count("app token") == 1, str(info.value)


async def test_a_401_for_an_api_key_has_no_app_token_hint(router: respx.MockRouter) -> None:
    router.post("/v1/track").mock(return_value=httpx.Response(401))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.track("u1", "e")
    assert "app token" not in str(info.value)


async def test_request_records_carry_the_request_id_and_the_request_in_extra(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="analytex_async")
    router.post("/v1/track").mock(
        side_effect=[
            httpx.Response(503, headers={"x-request-id": "first"}),
            httpx.Response(202, headers={"x-request-id": "GEDdGIKmRewi6ZIAEYcB"}),
        ]
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        await client.track("u1", "e", metadata={"secret": "record contents"})
    records = [r for r in caplog.records if getattr(r, "path", None) == "/v1/track"]
    retry = next(r for r in records if r.levelno == logging.WARNING)
    assert (retry.status, retry.attempt, retry.request_id) == (503, 1, "first")  # type: ignore[attr-defined]
    last = records[-1]
    assert (last.method, last.status, last.attempt) == ("POST", 202, 2)  # type: ignore[attr-defined]
    assert last.request_id == "GEDdGIKmRewi6ZIAEYcB"  # type: ignore[attr-defined]
    assert "record contents" not in caplog.text
    assert API_KEY not in caplog.text

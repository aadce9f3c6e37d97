"""Helpers for testing code that uses analytex-async, without a network or an account.

Two tools:

* :class:`EmulatedAnalytex` holds an in-process :class:`~analytex_async.emulator.Emulator`
  and an :class:`~analytex_async.AsyncAnalytex` wired to it through ``httpx.ASGITransport``
  (``analytex.emulator``, ``analytex.client``): real requests, real validation, real jobs, no
  socket. Works on asyncio and trio. Its client paces bulk imports and job polls at the
  emulator's ``rows_per_minute``: ``EmulatedAnalytex(rows_per_minute=600_000)`` makes bulk
  jobs finish in milliseconds.
* :func:`mock_api` is a respx router with one route per API call already answering like the
  real API, plus :func:`job_response` and :func:`error_response` to script other answers.

Both need the ``testing`` extra (``pip install "analytex-async[testing]"``: respx and the
emulator's server). This module imports without it: the emulator and respx are imported only
when a helper or fixture needs them, and a missing one is an ``ImportError`` that names the
extra.

With the SDK installed, pytest also offers the fixtures ``analytex_emulator`` and
``analytex_client`` in every test, with no ``conftest.py`` line: the plugin registers itself
through its ``pytest11`` entry point, under anyio's plugin (asyncio and trio) or pytest-asyncio
(auto and strict mode). The client follows the emulator's rate: override ``analytex_emulator``
to make bulk tests fast. (``pytest_plugins = ["analytex_async.testing"]`` still works, for a
run with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set.)

Examples:
    ```python
    from analytex_async import AsyncAnalytex
    from analytex_async.testing import EmulatedAnalytex


    async def signup(analytex: AsyncAnalytex, user_id: str) -> None:  # your code
        await analytex.identify(user_id, metadata={"plan": "free"})


    async def test_signup_identifies_the_user() -> None:
        async with EmulatedAnalytex() as analytex:
            await signup(analytex.client, "user_001")
            assert analytex.emulator.users["user_001"].metadata["plan"] == "free"
    ```
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from ._emulated import (
    EMULATED_BASE_URL,
    INSTALL_TESTING,
    TEST_API_KEY,
    EmulatedAnalytex,
    EmulatorTransport,
)

if TYPE_CHECKING:
    import respx

__all__ = [
    "EMULATED_BASE_URL",
    "TEST_API_KEY",
    "EmulatedAnalytex",
    "EmulatorTransport",
    "MockAPI",
    "error_response",
    "job_response",
    "mock_api",
]


def job_response(
    job_id: str = "9536d797-7039-4d30-8c11-ac437367d732",
    status: str = "queued",
    *,
    status_code: int = 202,
    **fields: Any,
) -> httpx.Response:
    """A response carrying a job object, as the bulk and job endpoints answer.

    Args:
        job_id: The job's id.
        status: The job's status.
        status_code: The HTTP status (202 for a submit, 200 for a job lookup).
        **fields: More job fields (``total_rows``, ``completed_rows``, ...).

    Returns:
        The response.
    """
    body = {"job_id": job_id, "status": status, "submitted_at": "2025-02-02T12:34:56Z", **fields}
    return httpx.Response(status_code, json=body)


def error_response(
    status_code: int,
    message: str = "error",
    *,
    error: str | None = None,
    error_code: str | None = None,
    details: Any = None,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """A response with the API's documented error body.

    Args:
        status_code: The HTTP status, e.g. 400, 409 or 429.
        message: The error's message.
        error: The short error name (defaults to one derived from the status).
        error_code: The error code (defaults to the status as a string).
        details: Extra details.
        retry_after: Adds a ``Retry-After`` header, in seconds.
        headers: More headers.

    Returns:
        The response.
    """
    name = error or httpx.codes.get_reason_phrase(status_code).lower().replace(" ", "_")
    body = {
        "errors": [
            {
                "error": name or "error",
                "error_code": error_code or str(status_code),
                "message": message,
                "details": details,
            }
        ]
    }
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = f"{retry_after:g}"
    return httpx.Response(status_code, content=json.dumps(body).encode(), headers={
        "Content-Type": "application/json", **all_headers,
    })  # fmt: skip


class MockAPI:
    """A respx router with a route for every API call, each answering like the real API.

    Replace an answer with respx's own API, e.g.
    ``api.identify.mock(return_value=error_response(429, retry_after=1))`` or
    ``api.bulk_users.mock(side_effect=[error_response(409), job_response()])``; inspect
    ``api.identify.calls``.

    Attributes:
        router: The underlying ``respx.MockRouter``.
        identify: ``POST /v1/identify`` (202).
        identify_company: ``POST /v1/companies/identify`` (202).
        track: ``POST /v1/track`` (202).
        bulk_users: ``POST /v1/users/bulk_identify`` (202 with a queued job).
        bulk_companies: ``POST /v1/companies/bulk_identify`` (202 with a queued job).
        jobs: ``GET /v1/background_jobs`` (200, an empty list).
        job: ``GET /v1/background_jobs/{id}`` (200, a completed job with the requested id).
        delete_users: ``DELETE /v1/users`` (202).
        delete_companies: ``DELETE /v1/companies`` (202).
    """

    def __init__(self, router: respx.MockRouter) -> None:
        self.router = router
        self.identify = router.post("/v1/identify", name="identify").respond(202)
        self.identify_company = router.post(
            "/v1/companies/identify", name="identify_company"
        ).respond(202)
        self.track = router.post("/v1/track", name="track").respond(202)
        self.bulk_users = router.post("/v1/users/bulk_identify", name="bulk_users").mock(
            return_value=job_response()
        )
        self.bulk_companies = router.post(
            "/v1/companies/bulk_identify", name="bulk_companies"
        ).mock(return_value=job_response())
        self.jobs = router.get("/v1/background_jobs", name="jobs").respond(200, json=[])
        self.job = router.get(url__regex=r"/v1/background_jobs/(?P<job_id>[^/?]+)$", name="job")
        self.job.mock(side_effect=_completed_job)
        self.delete_users = router.delete("/v1/users", name="delete_users").respond(202)
        self.delete_companies = router.delete("/v1/companies", name="delete_companies").respond(202)

    def __repr__(self) -> str:
        return f"MockAPI(calls={len(self.router.calls)})"


def _completed_job(request: httpx.Request, job_id: str) -> httpx.Response:
    from urllib.parse import unquote  # noqa: PLC0415 - only needed by this fake route

    return job_response(unquote(job_id), "completed", status_code=200)


@contextmanager
def mock_api(
    base_url: str = "https://analytex.userpilot.io", *, assert_all_called: bool = False
) -> Iterator[MockAPI]:
    """Mock the Analytex API with respx for the duration of the block.

    Args:
        base_url: The base URL your client uses.
        assert_all_called: Fail at exit unless every route was called.

    Yields:
        The mock, with a route per call.

    Raises:
        ImportError: respx is not installed (it comes with the ``testing`` extra).

    Examples:
        A 400 the server answers (an invalid call never gets that far: the client raises
        ``ValidationError`` before sending it):

        ```python
        import pytest

        from analytex_async import AsyncAnalytex, BadRequestError


        async def test_a_refused_event_raises() -> None:
            with mock_api() as api:
                api.track.mock(return_value=error_response(400, "bad event"))
                async with AsyncAnalytex(api_key="k") as client:
                    with pytest.raises(BadRequestError):
                        await client.track("u1", "Signed Up")
                assert api.track.call_count == 1
        ```
    """
    try:
        import respx  # noqa: PLC0415 - an optional, test-time dependency
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"mock_api needs respx, which is not installed: {INSTALL_TESTING}"
        ) from exc

    with respx.mock(base_url=base_url, assert_all_called=assert_all_called) as router:
        yield MockAPI(router)


# The fixtures, for `pytest_plugins = ["analytex_async.testing"]` (the plugin is their home; it
# builds them on ``_emulated`` and never imports this module, so neither waits for the other).
try:
    import pytest  # noqa: F401 - only to know whether the fixtures can be offered
except ImportError:  # pragma: no cover - pytest is not a runtime dependency
    pass
else:
    from ._pytest_plugin import analytex_client, analytex_emulator  # noqa: F401

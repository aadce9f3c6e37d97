"""Security review: the surfaces ``tests/test_security.py`` does not reach.

* the key never shows in the emulator's logs (uvicorn's included, down to its TRACE level), in
  exceptions out of the bulk pipeline, or in ``ImportAbortedError``'s message, even when the
  server echoes it back in the places a server can;
* TLS verification is on in the client's own ``httpx`` client, and only a caller's own
  ``http_client`` can change that;
* plain ``http://`` goes to loopback only: whatever base URL is accepted, the request it builds
  is for a loopback host, and nothing reroutes it in clear text to another host;
* the emulator binds ``127.0.0.1`` unless told otherwise (``serve``, ``run``, the CLI).
"""

from __future__ import annotations

import contextlib
import inspect
import ipaddress
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import trustme
from anyio.streams.tls import TLSListener
from click.testing import CliRunner

import analytex_async.emulator
from analytex_async import (
    APIConnectionError,
    AsyncAnalytex,
    AuthenticationError,
    ConfigurationError,
    ImportAbortedError,
    RetryPolicy,
)
from analytex_async._config import is_loopback_host
from analytex_async.cli._commands import cli
from analytex_async.emulator import Emulator, serve

from .._net import free_port, wait_for_port
from .conftest import Elsewhere, user_records

pytestmark = pytest.mark.anyio

KEY = "sk_live_REVIEW_9f3b27c1d4"
WRONG_KEY = "sk_live_WRONGKEY_77aa01"
SUBMIT = "/v1/users/bulk_identify"
ANY_JOB = re.compile(r"/v1/background_jobs/.+")
FAST = RetryPolicy(max_retries=1, initial_delay=0, max_delay=0, random=lambda: 0.0)


def everything_printed(error: BaseException) -> str:
    """Every way an exception is commonly shown: str, repr, a full traceback, its chain."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    cause = error.__cause__
    while cause is not None:
        parts += [str(cause), repr(cause)]
        cause = cause.__cause__
    return "\n".join(parts)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = [caplog.text]
    for record in caplog.records:
        lines += [record.getMessage(), repr(record.args), record.exc_text or ""]
        if record.exc_info and record.exc_info[1] is not None:
            lines.append("".join(traceback.format_exception(record.exc_info[1])))
    return "\n".join(lines)


# -- the emulator's logs -----------------------------------------------------------------------


async def test_the_emulator_logs_never_hold_a_key_even_at_trace_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Level 1 makes uvicorn wrap the app in its TRACE message logger, which prints each scope.
    caplog.set_level(1)
    emulator = Emulator(api_keys={KEY}, rows_per_minute=1e6)
    emulator.faults.add("/v1/identify", status=429, headers={"Retry-After": "0"}, times=1)
    emulator.faults.add(SUBMIT, drop_connection=True, times=1)
    emulator.faults.add(ANY_JOB, method="GET", status=503, times=1)
    async with serve(emulator) as url:
        async with AsyncAnalytex(
            api_key=KEY, base_url=url, rows_per_minute=1e6, requests_per_minute=None,
            retry_policy=RetryPolicy(max_retries=3, initial_delay=0, max_delay=0),
        ) as client:  # fmt: skip
            for n in range(3):
                await client.identify(f"u{n}", metadata={"note": "hello"})
            await client.track("u1", "signed_up")
            await client.import_users(user_records(300), batch_size=100)
        async with AsyncAnalytex(
            api_key=WRONG_KEY, base_url=url, retry_policy=FAST
        ) as wrong:  # fmt: skip
            with pytest.raises(AuthenticationError) as info:
                await wrong.identify("u1")
        async with httpx.AsyncClient(base_url=url) as raw:
            for header in (f"Bearer {WRONG_KEY}", KEY, f"Token {KEY}x", f"token  {WRONG_KEY}"):
                answer = await raw.post("/v1/identify", headers={"Authorization": header})
                assert answer.status_code == 401
                assert KEY not in answer.text
                assert WRONG_KEY not in answer.text
    text = logged(caplog)
    assert "ASGI [" in text, "uvicorn's TRACE logging was not on: the test proves nothing"
    assert "POST /v1/users/bulk_identify -> 202" in text  # the emulator's own DEBUG lines
    assert [r for r in emulator.requests if r.status == 401]
    for key in (KEY, WRONG_KEY):
        assert key not in text
        assert key not in everything_printed(info.value)
        assert key not in repr(emulator)
        assert key not in repr(emulator.accounts)
        assert all(key not in repr(r) and key not in str(r.headers) for r in emulator.requests)


def test_the_emulator_command_at_trace_level_never_prints_the_key() -> None:
    port = free_port()
    script = (
        "from analytex_async.emulator import Emulator, run\n"
        f"run(port={port}, log_level='trace', emulator=Emulator(api_keys={{{KEY!r}}}))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for_port(port, process=process), "the emulator did not start"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            client.get("/v1/background_jobs")
            for key in (KEY, WRONG_KEY):
                client.post(
                    "/v1/identify",
                    json={"user_id": "u1"},
                    headers={"Authorization": f"Token {key}"},
                )
    finally:
        process.terminate()
        out, err = process.communicate(timeout=15)
    assert "ASGI [" in err  # TRACE output was on
    assert KEY not in out + err
    assert WRONG_KEY not in out + err


# -- exceptions out of the pipeline ------------------------------------------------------------

ECHOES: list[Any] = [
    pytest.param(
        {
            "path": SUBMIT,
            "status": 500,
            "times": None,
            "body": {"errors": [{"message": f"bad Token {KEY}", "details": {"auth": KEY}}]},
            "headers": {"X-Request-Id": f"req-{KEY}"},
        },
        id="5xx-storm-echoing-the-key",
    ),
    pytest.param(
        {"path": SUBMIT, "status": 307, "headers": {"Location": f"https://x.test/?k={KEY}"}},
        id="redirect-with-the-key-in-location",
    ),
    pytest.param(
        {"path": SUBMIT, "status": 429, "times": None, "body": f"slow down, {KEY}"},
        id="429-storm-text-body",
    ),
    pytest.param(
        {"path": SUBMIT, "status": 202, "body": f"queued for Token {KEY}"},
        id="submit-202-non-json-body",
    ),
    pytest.param(
        {"path": SUBMIT, "status": 202, "body": {"status": "queued", "echo": KEY}},
        id="submit-202-job-without-id",
    ),
    pytest.param(
        {
            "path": ANY_JOB,
            "method": "GET",
            "status": 200,
            "body": f"<html>{KEY}</html>",
            "times": None,
        },
        id="job-poll-non-json-body",
    ),
    pytest.param(
        {
            "path": ANY_JOB,
            "method": "GET",
            "status": 200,
            "body": {"status": "done", "x": KEY},
            "times": None,
        },
        id="job-poll-job-without-id",
    ),
    pytest.param(
        {"path": ANY_JOB, "method": "GET", "status": 200, "body": [KEY], "times": None},
        id="job-poll-json-list",
    ),
]


@pytest.mark.parametrize("fault", ECHOES)
async def test_import_errors_never_hold_the_key_whatever_the_server_echoes(
    fault: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="analytex_async")
    emulator = Emulator(rows_per_minute=1e6)
    async with (
        serve(emulator) as url,
        AsyncAnalytex(api_key=KEY, base_url=url, rows_per_minute=1e6, retry_policy=FAST) as client,
    ):
        armed = False

        def arm(progress: Any) -> None:
            nonlocal armed
            if not armed and progress.batches_sent >= 1:
                armed = True
                emulator.faults.add(**fault)

        with pytest.raises(ImportAbortedError) as info:
            await client.import_users(user_records(300), batch_size=100, on_progress=arm)
    error = info.value
    assert error.result.jobs, "the abort must list the batch accepted before the fault"
    printed = everything_printed(error)
    assert KEY not in printed, f"the key leaked through: {printed[:500]!r}"
    assert KEY not in logged(caplog)


# -- TLS ---------------------------------------------------------------------------------------


def untrusted_certificate() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 issued by a throwaway authority that
    no system trusts, and a client context that trusts exactly that authority."""
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    authority.configure_trust(client)
    return server, client


class TLSServer:
    """A loopback HTTPS server that answers 202 and keeps what it was sent."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.received = bytearray()
        self.handshakes_failed = 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        inner = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = inner.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (not Django)
        listener = TLSListener(inner, self.context, standard_compatible=False)
        async with listener, anyio.create_task_group() as tasks:
            tasks.start_soon(listener.serve, self._handle)
            try:
                yield f"https://127.0.0.1:{port}"
            finally:
                tasks.cancel_scope.cancel()

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            try:
                self.received += await stream.receive()
                await stream.send(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            except (anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError, OSError):
                self.handshakes_failed += 1


async def test_the_clients_own_http_client_verifies_certificates_and_hostnames() -> None:
    async with AsyncAnalytex(api_key=KEY) as client:
        http = client._http_client
        pool = http._transport._pool  # type: ignore[attr-defined]
        context: ssl.SSLContext = pool._ssl_context
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname
        assert not http.follow_redirects
    # No constructor option can switch verification off: only a caller's own http_client.
    options = set(inspect.signature(AsyncAnalytex).parameters)
    assert not options & {"verify", "ssl", "ssl_context", "cert", "insecure", "trust_env"}


async def test_a_certificate_from_an_unknown_authority_is_refused_before_the_key_is_sent() -> None:
    server_context, trusting = untrusted_certificate()
    server = TLSServer(server_context)
    async with server.running() as url:
        async with AsyncAnalytex(api_key=KEY, base_url=url, retry_policy=FAST) as client:
            with pytest.raises(APIConnectionError) as info:
                await client.identify("u1")
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value)
        assert KEY.encode() not in server.received
        assert not server.received
        # A caller who trusts that certificate says so with their own http_client.
        async with (
            httpx.AsyncClient(verify=trusting) as http,
            AsyncAnalytex(api_key=KEY, base_url=url, http_client=http) as client,
        ):
            await client.identify("u1")
        assert b"POST /v1/identify" in server.received


# -- plain http only to loopback ---------------------------------------------------------------

REFUSED = [
    "http://example.com", "http://10.0.0.1:8000", "http://0.0.0.0:8000", "http://127.1",
    "http://127.0.0.1.nip.io", "http://localhost.evil.test", "http://2130706433",
    "http://0x7f000001", "http://127.0.0.1@evil.test", "http://evil.test#@127.0.0.1",
    "http://evil.test?@127.0.0.1", "http://127.0.0.1:80@evil.test",
]  # fmt: skip
TRICKY = [
    "http://evil.test\\@127.0.0.1", "http://127.0.0.1\\@evil.test", "http://127.0.0.1\t.evil.test",
    "http://127.0.0.1%2f@evil.test", "http://127.0.0.1%00.evil.test", "http://[::1]@evil.test",
    "http://localhost:8000/..@evil.test", "http://LOCALHOST.", "http://[0:0:0:0:0:0:0:1]",
    "http://127.255.255.254:1", "http://[::ffff:127.0.0.1]", "HTTP://127.0.0.1",
]  # fmt: skip


@pytest.mark.parametrize("url", REFUSED)
def test_plain_http_to_anything_but_loopback_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        AsyncAnalytex(api_key=KEY, base_url=url)


@pytest.mark.parametrize("url", REFUSED + TRICKY)
async def test_whatever_http_url_is_accepted_the_request_goes_to_loopback(url: str) -> None:
    """Parser differentials: the URL the SDK checks must be the URL httpx connects to."""
    try:
        client = AsyncAnalytex(api_key=KEY, base_url=url)
    except ConfigurationError:
        return
    async with client:
        try:
            request = client._transport._build("POST", "/v1/identify", None)
        except httpx.InvalidURL:
            return  # httpx refuses to build it at all: nothing is sent
    if request.url.scheme == "http":
        assert is_loopback_host(request.url.host), (url, str(request.url))


async def test_an_http_proxy_from_the_environment_never_carries_the_key_in_clear_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``HTTP_PROXY`` names another host: a plain-http base URL must not route the key there."""
    elsewhere = Elsewhere()  # stands for a proxy on another machine
    emulator = Emulator()
    async with serve(emulator) as url, elsewhere.running() as proxy:
        for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                         "no_proxy"):  # fmt: skip
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        async with AsyncAnalytex(api_key=KEY, base_url=url, retry_policy=FAST) as client:
            # Refusing is fine; sending the key to the proxy is not.
            with anyio.fail_after(10), contextlib.suppress(APIConnectionError):
                await client.identify("u1")
    assert KEY.encode() not in bytes(elsewhere.received), (
        "the API key went in clear text to the HTTP_PROXY host"
    )
    assert elsewhere.connections == 0


# -- the emulator binds loopback by default ----------------------------------------------------


def test_serve_and_run_default_to_loopback() -> None:
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(analytex_async.emulator.run).parameters["host"].default == "127.0.0.1"


def test_run_passes_loopback_to_uvicorn_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn  # noqa: PLC0415

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    analytex_async.emulator.run()
    assert calls[0]["host"] == "127.0.0.1"


def test_the_emulator_command_binds_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(analytex_async.emulator, "run", lambda **options: calls.append(options))
    result = CliRunner().invoke(cli, ["emulator", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert calls[0]["host"] == "127.0.0.1"
    assert "warning" not in result.output
    # Asked for all interfaces, it says so.
    warned = CliRunner().invoke(cli, ["emulator", "--host", "0.0.0.0", "--port", "0"])  # noqa: S104
    assert calls[1]["host"] == "0.0.0.0"  # noqa: S104
    assert "reachable beyond this machine" in warned.output


async def test_serve_listens_on_loopback_only() -> None:
    async with serve(Emulator()) as url:
        port = int(url.rsplit(":", 1)[1])
        host = url.split("//")[1].rsplit(":", 1)[0]
        assert host == "127.0.0.1"
        # Not on another local address of this machine.
        others = {
            info[4][0]
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            if not ipaddress.ip_address(info[4][0]).is_loopback
        }
        for address in others:
            with socket.socket() as sock:
                sock.settimeout(1)
                assert sock.connect_ex((address, port)) != 0


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests other than the proxy one run with no proxy from the environment."""
    for variable in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                     "all_proxy"):  # fmt: skip
        if variable in os.environ:
            monkeypatch.delenv(variable)

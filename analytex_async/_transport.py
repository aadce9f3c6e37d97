"""The one place httpx is used: build each request, send it, retry it, map failures to errors.

The retry policy is one readable loop in ``Transport.request``: connection errors, timeouts,
408, 429 and 5xx are retried with exponential backoff and jitter (``Retry-After`` honoured and
capped); every other status is raised at once as its own exception class. The request is rebuilt
for every attempt from its body factory, so a streamed body is never half-consumed on a retry.
"""

from __future__ import annotations

import json
import logging
import platform
import socket
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

import anyio
import httpx

from ._config import redact
from ._constants import API_VERSION
from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ErrorDetail,
    RateLimitError,
    ValidationError,
    error_class_for,
)
from ._retry import RetryPolicy, parse_retry_after
from ._telemetry import ApiCall, waiting
from ._types import BodyFactory, Content, Pausable, RequestSlots
from ._version import __version__

logger = logging.getLogger("analytex_async")

ACCEPT = "application/json, text/plain, */*"
USER_AGENT = (
    f"analytex-async/{__version__} python/{platform.python_version()} httpx/{httpx.__version__}"
)
RETRYABLE_STATUSES = frozenset({408, 429})
APP_TOKEN_PREFIX = "NX-"  # noqa: S105 -- the shape of an app token, not a secret
APP_TOKEN_HINT = "this looks like an app token; use the API key from Environment settings"  # noqa: S105
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid")

RetryHook = Callable[[APIError, float], Awaitable[None] | None]
"""Called with the failure and the delay before each retry."""


def encode_json(body: object) -> bytes:
    """Encode a checked body as compact UTF-8 JSON.

    Args:
        body: A JSON-compatible value (already validated).

    Returns:
        The encoded bytes.

    Raises:
        ValidationError: The value is not JSON after all (a safety net; validation should have
            caught it with a better message).
    """
    if _encode is not None:
        try:
            return "".join(_encode(body, 0)).encode("utf-8")
        except (TypeError, ValueError):
            pass  # json.dumps below raises the error that explains it
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8"
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"body is not JSON-serialisable: {exc}") from None


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json's C encoder, made once: json.dumps makes a new one on every call, which costs more than
# encoding a small body does (a request handler's identify is checked and encoded in the
# handler). No cycle check (markers=None): validation copies every body into fresh dicts and
# lists, bounded in depth, so a checked body cannot hold a cycle.
_encode = (
    c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)


def bytes_body(content: bytes, content_type: str) -> BodyFactory:
    """A body factory for content held in memory, replayed as is on every attempt.

    Args:
        content: The encoded body.
        content_type: Its ``Content-Type``.

    Returns:
        The factory.
    """
    headers = {"Content-Type": content_type}
    return lambda: (headers, content)


def parse_errors(response: httpx.Response) -> list[ErrorDetail]:
    """Parse an error body: the documented JSON ``errors`` list, other JSON, plain text or empty.

    Args:
        response: The error response (its body already read).

    Returns:
        The errors it holds; empty when the body is empty.
    """
    text = response.text.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return [ErrorDetail(message=text[:1000])]
    items: list[Any]
    if isinstance(data, Mapping) and isinstance(data.get("errors"), list):
        items = data["errors"]
    elif isinstance(data, list):
        items = data
    else:
        items = [data]
    details = []
    for item in items:
        if isinstance(item, Mapping):

            def text_of(key: str, item: Mapping[str, Any] = item) -> str | None:
                value = item.get(key)
                return None if value is None else str(value)

            details.append(
                ErrorDetail(
                    error=text_of("error"),
                    error_code=text_of("error_code") or text_of("code"),
                    message=text_of("message") or text_of("detail"),
                    details=item.get("details"),
                )
            )
        elif item is not None:
            details.append(ErrorDetail(message=str(item)[:1000]))
    return details


class Transport:
    """Sends API requests: headers, rate windows, concurrency, retries and error mapping.

    Args:
        http_client: The ``httpx.AsyncClient`` to send with.
        base_url: The API's base URL, without a trailing slash.
        api_key: The API key (kept private; redacted from everything we print).
        retry: The retry policy.
        max_concurrency: Requests in flight at once at most.
        api_version: The ``X-API-Version`` header's value; ``None`` sends none (the export
            API has its version in the path).
    """

    def __init__(
        self,
        http_client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        retry: RetryPolicy,
        max_concurrency: int,
        api_version: str | None = API_VERSION,
    ) -> None:
        self.http_client = http_client
        self.api_version = api_version
        self.base_url = base_url
        self.retry = retry
        self._api_key = api_key
        self._in_flight = anyio.CapacityLimiter(max_concurrency)

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    @property
    def busy(self) -> bool:
        """Whether a request is in flight now."""
        return self._in_flight.borrowed_tokens > 0

    def redact(self, text: str) -> str:
        """Remove the API key from text the server (or anything else) may have echoed.

        Args:
            text: Any text.

        Returns:
            The text with every occurrence of the key replaced by ``***``.
        """
        return redact(text, self._api_key)

    def redact_value(self, value: Any) -> Any:
        """Redact the key from every string inside a decoded JSON value.

        Args:
            value: A decoded JSON value (strings, numbers, lists, mappings).

        Returns:
            The same structure with the key replaced by ``***`` in every string.
        """
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact(str(k)): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_value(item) for item in value]
        return value

    def _request_id(self, response: httpx.Response) -> str | None:
        headers = response.headers
        return next((self.redact(headers[h]) for h in REQUEST_ID_HEADERS if h in headers), None)

    def _build(self, method: str, path: str, body: BodyFactory | None) -> httpx.Request:
        headers = {
            "Authorization": f"Token {self._api_key}",
            "Accept": ACCEPT,
            "User-Agent": USER_AGENT,
        }
        if self.api_version is not None:
            headers["X-API-Version"] = self.api_version
        content: Content | None = None
        if body is not None:
            extra, content = body()
            headers.update(extra)
        return self.http_client.build_request(
            method, self.base_url + path, headers=headers, content=content
        )

    def _status_error(
        self, request: httpx.Request, response: httpx.Response, path: str, attempts: int
    ) -> APIStatusError:
        errors = [
            ErrorDetail(
                error=_redacted(self, e.error),
                error_code=_redacted(self, e.error_code),
                message=_redacted(self, e.message),
                details=self.redact_value(e.details),
            )
            for e in parse_errors(response)
        ]
        request_id = self._request_id(response)
        reason = response.reason_phrase or ""
        message = f"{request.method} {path} answered {response.status_code} {reason}".rstrip()
        if errors:
            message += f": {errors[0]}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more)"
        if 300 <= response.status_code < 400:
            location = self.redact(response.headers.get("location", ""))
            message += f"; redirect to {location!r:.200} not followed"
        if (
            response.status_code == 401
            and self._api_key.startswith(APP_TOKEN_PREFIX)
            and "app token" not in message  # the server may say so itself (the emulator does)
        ):
            message += f"; {APP_TOKEN_HINT}"
        if request_id:
            message += f" [request id {request_id}]"
        if attempts > 1:
            message += f" after {attempts} attempts"
        cls = error_class_for(response.status_code)
        if cls is RateLimitError:
            return RateLimitError(
                message,
                response=response,
                errors=errors,
                request_id=request_id,
                attempts=attempts,
                retry_after=parse_retry_after(response.headers),
            )
        return cls(
            message, response=response, errors=errors, request_id=request_id, attempts=attempts
        )

    def _connection_error(
        self,
        request: httpx.Request,
        path: str,
        exc: httpx.RequestError,
        attempts: int,
        elapsed: float,
    ) -> APIConnectionError:
        # Name where it tried and for how long: "connection refused" alone does not tell a
        # person at 3 a.m. that the base URL points at the wrong port.
        kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        detail = self.redact(str(exc)) or type(exc).__name__
        message = f"{request.method} {self.base_url}{path}: {_what_happened(exc)}"
        if attempts > 1:
            message += f" after {attempts} attempts over {_seconds(elapsed)}"
        message += f" ({type(exc).__name__}: {detail})"
        error = kind(message, request=request, attempts=attempts)
        error.request_sent = not isinstance(
            exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
        )
        return error

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: BodyFactory | None = None,
        window: RequestSlots | None = None,
        on_retry: RetryHook | None = None,
        retry: RetryPolicy | None = None,
    ) -> httpx.Response:
        """Send a request, retrying what is safe to retry, and return the 2xx response.

        Args:
            method: The HTTP method.
            path: The path below the base URL, already percent-encoded.
            body: Builds the body afresh for each attempt.
            window: A rate window every attempt must fit in.
            on_retry: Called before each retry's wait with the failure and the delay.
            retry: This request's retry policy, instead of the transport's (background
                delivery sends one attempt per window slot and retries itself).

        Returns:
            The successful response, its body read.

        Raises:
            APIStatusError: The server answered with an error status (a subclass per status),
                after the retries when the status is retryable.
            APIConnectionError: No response came back, after the retries.
        """
        with ApiCall(method, path, self.base_url) as call:
            policy = retry if retry is not None else self.retry
            return await self._attempts(call, body, window, on_retry, policy)

    async def _attempts(
        self,
        call: ApiCall,
        body: BodyFactory | None,
        window: RequestSlots | None,
        on_retry: RetryHook | None,
        policy: RetryPolicy,
    ) -> httpx.Response:
        method, path = call.method, call.path
        attempt = 0
        first_started = anyio.current_time()
        while True:
            attempt += 1
            request = self._build(method, path, body)
            started = anyio.current_time()
            error: APIError
            cause: httpx.RequestError | None = None
            try:
                async with AsyncExitStack() as stack:
                    if window is not None:
                        with waiting("rate"):
                            await stack.enter_async_context(window.slot())
                    await stack.enter_async_context(self._in_flight)
                    # Never follow a redirect, even with a caller's client configured to:
                    # the Authorization header must not travel to another host.
                    response = await self.http_client.send(request, follow_redirects=False)
                    if response.status_code == 429 and isinstance(window, Pausable):
                        # Before the slot is given back: the window owns 429s (one pause, then
                        # one probe), so no waiter slips through and draws another.
                        window.pause(policy.delay(attempt - 1, parse_retry_after(response.headers)))
            except httpx.RequestError as exc:
                elapsed = anyio.current_time() - first_started
                error = self._connection_error(request, path, exc, attempt, elapsed)
                # Chain httpx's exception for debugging, unless its text holds the key.
                cause = None if self._api_key in str(exc) else exc
                logger.debug(
                    "%s %s -> %s (attempt %d, %.3f s)",
                    method,
                    path,
                    type(exc).__name__,
                    attempt,
                    anyio.current_time() - started,
                    extra=call.attempted(attempt, None, None, error),
                )
                retryable = True
            else:
                request_id = self._request_id(response)
                logger.debug(
                    "%s %s -> %d (attempt %d, %.3f s)%s",
                    method,
                    path,
                    response.status_code,
                    attempt,
                    anyio.current_time() - started,
                    f" [request id {request_id}]" if request_id else "",
                    extra=call.attempted(attempt, response.status_code, request_id),
                )
                if response.is_success:
                    return response
                error = self._status_error(request, response, path, attempt)
                status = response.status_code
                retryable = status in RETRYABLE_STATUSES or status >= 500
            if not retryable or attempt > policy.max_retries:
                raise error from cause
            retry_after = error.retry_after if isinstance(error, RateLimitError) else None
            if retry_after is None and isinstance(error, APIStatusError):
                retry_after = parse_retry_after(error.response.headers)
            delay = policy.delay(attempt - 1, retry_after)
            logger.warning(
                "%s %s failed (%s); retry %d of %d in %.2f s",
                method,
                path,
                _without_body(error),
                attempt,
                policy.max_retries,
                delay,
                extra=call.retrying(error, attempt, delay),
            )
            if on_retry is not None:
                outcome = on_retry(error, delay)
                if outcome is not None:
                    await outcome
            await anyio.sleep(delay)


def _without_body(error: APIError) -> str:
    """A failure for a log line, without what the server said (it may quote the record)."""
    if not isinstance(error, APIStatusError):
        return error.message  # the transport's own words and httpx's: no record in them
    reason = error.response.reason_phrase or ""
    request_id = f" [request id {error.request_id}]" if error.request_id else ""
    return f"{error.status_code} {reason}".rstrip() + request_id


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from, groups opened (the OS error sits a few levels down)."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending and len(seen) < 32:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        pending.extend(getattr(current, "exceptions", ()))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return seen


def _why_no_connection(exc: httpx.ConnectError) -> str:
    causes = _causes(exc)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "the host name does not resolve"
    return "connection refused" if "refused" in str(exc).lower() else "could not connect"


def _what_happened(exc: httpx.RequestError) -> str:
    """What a transport failure means, in a person's words."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connecting timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the answer"
    if isinstance(exc, httpx.ConnectError):
        return _why_no_connection(exc)
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection closed without a complete answer"
    return "the connection failed"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _redacted(transport: Transport, text: str | None) -> str | None:
    return None if text is None else transport.redact(text)

"""The emulator's front door: fault injection before the routes, the request log around them.

One pure ASGI wrapper sits outside Starlette's routing so that an injected fault answers (or
stalls, or drops) a request before any rule of the API runs, and so that every API request lands
in the request log, whether a route, a fault or an error answered it. It also gives every
response its ``x-request-id``. Requests to the inspection routes (``/_emulator/…``) pass
straight through otherwise: they are not API traffic.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, NoReturn, cast
from urllib.parse import quote

import anyio
import attrs
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import error_body
from ._faults import ConnectionDropped, Fault
from ._store import ReceivedRequest

if TYPE_CHECKING:
    from ._app import Emulator

__all__ = ["FrontDoor", "RequestNote", "note_of"]

logger = logging.getLogger("analytex_async.emulator")

_NOTE = "analytex_async.emulator.note"


@attrs.define
class RequestNote:
    """What the handling of one request learned, for its entry in the request log.

    The front door puts one in the ASGI scope; the route fills in what only it can know
    (the account, the record count, the body size).
    """

    status: int | None = None
    records: int | None = None
    body_size: int = 0
    account: str | None = None
    fault: Fault | None = None
    request_id: str | None = None


def note_of(request: Request) -> RequestNote:
    """Return the note the front door attached to ``request``."""
    return cast(RequestNote, request.scope[_NOTE])


class FrontDoor:
    """Pure ASGI middleware: fault injection first, then the request log around everything.

    Args:
        app: The Starlette app with the API's routes.
        emulator: The emulator whose faults, clock and request log are used.
        passthrough_prefix: Paths starting with it go straight to ``app``: never faulted,
            never logged (the inspection routes).
    """

    def __init__(
        self, app: ASGIApp, emulator: Emulator, passthrough_prefix: str | None = None
    ) -> None:
        self.app = app
        self.emulator = emulator
        self.passthrough_prefix = passthrough_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan is off when we serve
            await self.app(scope, receive, send)
            return
        emulator = self.emulator
        request_id = emulator._new_request_id()
        if self.passthrough_prefix is not None and scope["path"].startswith(
            self.passthrough_prefix
        ):
            # A person looking at the store: no fault takes it, no log entry, no rate counted,
            # so looking changes nothing that a client under test observes.
            await self.app(scope, receive, _with_request_id(send, request_id))
            return
        arrived = emulator._now()
        note = RequestNote(request_id=request_id)
        scope[_NOTE] = note
        send_with_id = _with_request_id(send, request_id)

        async def send_noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                note.status = message["status"]
            await send_with_id(message)

        try:
            fault = emulator.faults.take(scope["method"], scope["path"])
            note.fault = fault
            if fault is not None and fault.after_handling:
                await _handle_then_inject(self.app, fault, scope, receive, send_noting_status)
                return
            if fault is not None and await _inject(fault, scope, receive, send_noting_status):
                return
            await self.app(scope, receive, send_noting_status)
        except ConnectionDropped:
            note.status = None  # started, never completed
            raise
        finally:
            _log_request(emulator, scope, arrived, note)


def _with_request_id(send: Send, request_id: str) -> Send:
    """Wrap ``send`` so the response carries ``x-request-id`` (unless a fault set its own)."""
    value = request_id.encode("latin-1")

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if all(name.lower() != b"x-request-id" for name, _ in headers):
                headers.append((b"x-request-id", value))
                message = {**message, "headers": headers}
        await send(message)

    return sending


async def _drop(status: int, scope: Scope, send: Send) -> NoReturn:
    """Start a response and abort it: the client sees the connection close mid-response."""
    # A Content-Length promising bytes that never come. Raising after the start makes the
    # server abort the connection.
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"1024"),
            ],
        }
    )
    raise ConnectionDropped(f"fault: connection dropped on {scope['method']} {scope['path']}")


async def _handle_then_inject(
    app: ASGIApp, fault: Fault, scope: Scope, receive: Receive, send: Send
) -> None:
    """Handle the request as usual, holding its answer back; then apply the fault to it."""
    held: list[Message] = []
    body_done = False

    async def receive_noting_end() -> Message:
        nonlocal body_done
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_done = True
        return message

    async def hold(message: Message) -> None:
        held.append(message)

    await app(scope, receive_noting_end, hold)
    if not body_done:
        # An answer given before the whole body was read (a 413 on Content-Length): take the
        # rest, for the reason _inject drains before dropping.
        await _drain_body(receive)
    if fault.delay:
        await anyio.sleep(fault.delay)
    if fault.drop_connection:
        handled = next((m["status"] for m in held if m["type"] == "http.response.start"), 200)
        await _drop(fault.status or handled, scope, send)
    if fault.status is not None:
        await _answer(fault, fault.status, scope, receive, send)
        return
    for message in held:
        await send(message)


async def _inject(fault: Fault, scope: Scope, receive: Receive, send: Send) -> bool:
    """Apply a fault; return whether it answered the request itself."""
    if fault.delay:
        await anyio.sleep(fault.delay)
    if fault.drop_connection:
        # Take the whole request body first: closing a socket that still has request bytes
        # coming makes the kernel answer them with a reset, and the client then sees
        # "connection reset" (its buffered headers discarded) instead of a cut-off response.
        await _drain_body(receive)
        await _drop(fault.status or 200, scope, send)
    if fault.status is None:
        return False
    await _answer(fault, fault.status, scope, receive, send)
    return True


async def _answer(fault: Fault, status: int, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with ``status`` (the fault's) and the fault's headers and body."""
    body = fault.body
    if body is None:
        content = (
            json.dumps(
                error_body(status, "injected_fault", "a fault injected by the emulator")
            ).encode()
            if status >= 400
            else b""
        )
        media = "application/json"
    elif isinstance(body, bytes | str):
        content = body.encode() if isinstance(body, str) else body
        media = "text/plain; charset=utf-8"
    else:
        content = json.dumps(body).encode()
        media = "application/json"
    response = Response(content, status_code=status, headers=dict(fault.headers))
    if "content-type" not in {name.lower() for name in fault.headers} and content:
        response.headers["content-type"] = media
    await response(scope, receive, send)


async def _drain_body(receive: Receive) -> None:
    """Receive the rest of the request body, discarding it."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _log_request(emulator: Emulator, scope: Scope, arrived: float, note: RequestNote) -> None:
    """Append the request to ``emulator.requests``, without its Authorization header."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        if name == "authorization":
            continue
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(scope["path"])
    entry = ReceivedRequest(
        method=scope["method"],
        path=path,
        time=arrived,
        status=note.status,
        records=note.records,
        body_size=note.body_size,
        account=note.account,
        headers=headers,
        fault=note.fault,
        request_id=note.request_id,
    )
    requests = emulator.requests
    requests.append(entry)
    limit = emulator.request_log_limit
    if limit is not None and len(requests) > limit + max(1, limit // 10):
        del requests[: len(requests) - limit]  # trim in batches, not per request
    logger.debug(
        "%s %s -> %s (%s)", entry.method, entry.path, entry.status, entry.account or "anonymous"
    )

"""Records which records each accepted bulk upload carried, by wrapping an emulator's ASGI app.

The emulator counts a request's records but keeps neither the body nor (once a job is applied)
its records; sync tests need to know exactly which ids went out.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from analytex_async.emulator import Emulator

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BULK_PATHS = {"/v1/users/bulk_identify": "user_id", "/v1/companies/bulk_identify": "company_id"}


def records_in(body: bytes) -> list[dict[str, Any]]:
    """The NDJSON records of a multipart upload (its JSON lines, framing left out)."""
    return [json.loads(line) for line in body.split(b"\n") if line.startswith(b"{")]


class Uploads:
    """Put in front of ``emulator.app`` (before a client is wired to it); see ``sent``.

    Attributes:
        sent: Every record of every accepted (202) upload, in order.
        batches: The records of each accepted upload, in order (one per job).
    """

    def __init__(self, emulator: Emulator) -> None:
        self.app = emulator.app
        emulator.app = self  # type: ignore[assignment]
        self.sent: list[dict[str, Any]] = []
        self.batches: list[list[dict[str, Any]]] = []

    def ids(self, since: int = 0) -> list[str]:
        """The ids of the records sent after the first ``since``."""
        return [r.get("user_id", r.get("company_id")) for r in self.sent[since:]]

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in BULK_PATHS:
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        chunks: list[bytes] = []
        statuses: list[int] = []

        async def receiving() -> Message:
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        await self.app(scope, receiving, sending)  # type: ignore[arg-type]
        if statuses == [202]:
            records = records_in(b"".join(chunks))
            self.sent.extend(records)
            self.batches.append(records)

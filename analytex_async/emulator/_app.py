"""The emulator: configuration, the in-memory store, and the Starlette app serving the API."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection
from contextlib import aclosing
from typing import Any, Literal, cast
from urllib.parse import quote, unquote

import anyio
import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import ApiError, error_body, error_response
from ._faults import ConnectionDropped, Fault, Faults
from ._limits import MinimumInterval, SlidingWindow
from ._multipart import parse_file_upload, parse_header_params
from ._rules import (
    Kind,
    Record,
    decode_json,
    read_bulk_json,
    read_bulk_ndjson,
    read_company_identify,
    read_delete_ids,
    read_identify,
    read_track,
)
from ._store import (
    Account,
    BulkJob,
    ReceivedRequest,
    StoredCompany,
    StoredUser,
    TrackedEvent,
)

__all__ = ["Emulator"]

logger = logging.getLogger("analytex_async.emulator")

_NOTE = "analytex_async.emulator.note"
_JOBS_PREFIX = "/v1/background_jobs/"
_DEFAULT_FAILURE = "the job failed (injected by the emulator)"

RateRule = Literal["identify", "track", "delete"]


@attrs.define
class _Note:
    """What a handler learned about its request, for the request log."""

    status: int | None = None
    records: int | None = None
    body_size: int = 0
    account: str | None = None
    fault: Fault | None = None


@attrs.frozen
class _PlannedFailure:
    reason: str
    after_rows: int


@attrs.define
class _AccountLimits:
    identify: SlidingWindow = attrs.Factory(SlidingWindow)
    track: SlidingWindow = attrs.Factory(SlidingWindow)
    delete: MinimumInterval = attrs.Factory(MinimumInterval)


def _account_label(api_key: str) -> str:
    # A short digest names the account in logs and the request log without revealing the key.
    return "acct-" + hashlib.sha256(api_key.encode()).hexdigest()[:10]


def _json(body: object, status: int) -> Response:
    return Response(json.dumps(body).encode(), status_code=status, media_type="application/json")


def _media_type(request: Request) -> tuple[str, dict[str, str]]:
    return parse_header_params(request.headers.get("content-type", ""))


def _require_utf8(params: dict[str, str]) -> None:
    charset = params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(
            400, "invalid_content_type", f"charset {charset!r} is not supported; send UTF-8"
        )


class Emulator:
    """A faithful local Analytex server: an ASGI app with an inspectable in-memory store.

    Every rule of the API is enforced: ``Authorization: Token <key>`` (401), validation (400,
    NDJSON errors name their line), the record and byte limits (413), one bulk job at a time per
    account (409), the real-time and delete rates (429), and the documented error body. Jobs
    progress from the clock alone (no background task): ``queued`` for ``queue_delay`` seconds,
    then ``processing`` at ``rows_per_minute``, then ``completed``; their rows are applied to
    the store as they complete.

    Each API key is its own account (its own store, jobs and rate counters).

    Args:
        api_keys: The accepted keys; ``None`` accepts any non-empty key.
        rows_per_minute: Bulk processing rate of new jobs.
        realtime_requests_per_minute: Identify (users and companies together) and track
            (separately) requests allowed per key in any 60 seconds; ``None`` for no limit.
        delete_interval: Seconds that must pass between two delete requests of a key;
            ``None`` for no limit.
        max_records: Records allowed in one bulk request (JSON list or NDJSON lines).
        max_bytes: Bytes allowed in one request body, multipart framing included.
        queue_delay: Seconds a new job stays ``queued`` before processing starts.
        clock: A zero-argument callable returning seconds; defaults to ``anyio.current_time``
            (read only while handling requests, so no event loop is needed to construct).
        epoch: The UTC date-time that clock reading ``0.0`` stands for in the job times;
            ``None`` maps the first clock reading to the current wall-clock time.
        job_id_factory: Makes job ids; defaults to UUID4 strings. Ids that need
            percent-encoding (``"bulk:jobs:NX-1:a/b c"``) are served correctly.
        retry_after_header: Send ``Retry-After`` (whole seconds) on the emulator's own 429s.
            Off by default because the real API documents none.
        request_log_limit: How many entries :attr:`requests` keeps (oldest dropped first);
            ``None`` keeps all.

    Attributes:
        app: The Starlette ASGI application.
        faults: Fault injection (see :meth:`Faults.add`).
        requests: Every request received, in completion order (see :class:`ReceivedRequest`).

    Examples:
        >>> import httpx
        >>> from analytex_async.emulator import Emulator
        >>> emulator = Emulator(rows_per_minute=60_000)
        >>> client = httpx.AsyncClient(
        ...     transport=httpx.ASGITransport(app=emulator.app), base_url="http://test"
        ... )
    """

    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        rows_per_minute: float = 1200,
        realtime_requests_per_minute: int | None = 600,
        delete_interval: float | None = 2.0,
        max_records: int = 10_000,
        max_bytes: int = 50_000_000,
        queue_delay: float = 0.0,
        clock: Callable[[], float] | None = None,
        epoch: dt.datetime | None = None,
        job_id_factory: Callable[[], str] | None = None,
        retry_after_header: bool = False,
        request_log_limit: int | None = 100_000,
    ) -> None:
        if api_keys is not None:
            if isinstance(api_keys, str):
                raise TypeError("api_keys must be a collection of keys, not one string")
            if not api_keys or not all(isinstance(k, str) and k for k in api_keys):
                raise ValueError("api_keys must hold non-empty strings (None accepts any key)")
        if rows_per_minute <= 0:
            raise ValueError("rows_per_minute must be positive")
        if realtime_requests_per_minute is not None and realtime_requests_per_minute < 1:
            raise ValueError("realtime_requests_per_minute must be at least 1, or None")
        if delete_interval is not None and delete_interval < 0:
            raise ValueError("delete_interval must not be negative, or None")
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be positive")
        if queue_delay < 0:
            raise ValueError("queue_delay must not be negative")
        self._api_keys = frozenset(api_keys) if api_keys is not None else None
        self.rows_per_minute = rows_per_minute
        self.realtime_requests_per_minute = realtime_requests_per_minute
        self.delete_interval = delete_interval
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.queue_delay = queue_delay
        self.clock: Callable[[], float] = clock if clock is not None else anyio.current_time
        self.retry_after_header = retry_after_header
        self.request_log_limit = request_log_limit
        self.job_id_factory = job_id_factory or (lambda: str(uuid.uuid4()))
        self._wall_offset: float | None = None
        if epoch is not None:
            aware = epoch if epoch.tzinfo is not None else epoch.replace(tzinfo=dt.timezone.utc)
            self._wall_offset = aware.timestamp()
        self.faults = Faults()
        self.requests: list[ReceivedRequest] = []
        self._accounts: dict[str, Account] = {}
        self._limits: dict[str, _AccountLimits] = {}
        self._failures: deque[_PlannedFailure] = deque()
        self.app = self._build_app()

    def __repr__(self) -> str:
        return (
            f"Emulator(accounts={len(self._accounts)}, requests={len(self.requests)}, "
            f"rows_per_minute={self.rows_per_minute})"
        )

    # ----------------------------------------------------------------- inspection

    def account(self, api_key: str) -> Account:
        """Return the account of ``api_key``, creating it empty if it has sent nothing yet.

        Raises:
            KeyError: When ``api_keys`` was given and ``api_key`` is not one of them.
        """
        if not api_key or (self._api_keys is not None and api_key not in self._api_keys):
            raise KeyError("this API key is not accepted by the emulator")
        account = self._accounts.get(api_key)
        if account is None:
            account = Account(_account_label(api_key))
            self._accounts[api_key] = account
            self._limits[account.label] = _AccountLimits()
        self._settle(account)
        return account

    @property
    def accounts(self) -> list[Account]:
        """Every account that has sent an authenticated request, in order of first contact."""
        accounts = list(self._accounts.values())
        for account in accounts:
            self._settle(account)
        return accounts

    def _single_account(self) -> Account | None:
        if len(self._accounts) > 1:
            raise LookupError("several API keys used this emulator; use emulator.account(api_key)")
        return self.accounts[0] if self._accounts else None

    @property
    def users(self) -> dict[str, StoredUser]:
        """Users of the only account (empty before any request); see :meth:`account`.

        Raises:
            LookupError: When several keys have been used.
        """
        account = self._single_account()
        return account.users if account is not None else {}

    @property
    def companies(self) -> dict[str, StoredCompany]:
        """Companies of the only account; see :attr:`users`."""
        account = self._single_account()
        return account.companies if account is not None else {}

    @property
    def events(self) -> list[TrackedEvent]:
        """Tracked events of the only account; see :attr:`users`."""
        account = self._single_account()
        return account.events if account is not None else []

    @property
    def jobs(self) -> dict[str, BulkJob]:
        """Bulk jobs of the only account by id, in submission order; see :attr:`users`."""
        account = self._single_account()
        return account.jobs if account is not None else {}

    def job(self, job_id: str) -> BulkJob:
        """Return a job of any account, advanced to the clock's current reading.

        Raises:
            KeyError: When no account has a job with this id.
        """
        for account in self.accounts:
            if job_id in account.jobs:
                return account.jobs[job_id]
        raise KeyError(job_id)

    # ----------------------------------------------------------------- control

    def fail_next_jobs(
        self, count: int = 1, *, reason: str = _DEFAULT_FAILURE, after_rows: int = 0
    ) -> None:
        """Make the next ``count`` accepted bulk jobs (any account) end ``failed``.

        Args:
            count: How many jobs.
            reason: The failed job's ``error`` field.
            after_rows: Rows processed (and applied to the store) before the failure.
        """
        if count < 1 or after_rows < 0:
            raise ValueError("count must be at least 1 and after_rows not negative")
        self._failures.extend(_PlannedFailure(reason, after_rows) for _ in range(count))

    def reset(self) -> None:
        """Forget every account, job, request, fault and planned failure; keep the settings."""
        self._accounts.clear()
        self._limits.clear()
        self._failures.clear()
        self.faults.clear()
        self.requests.clear()

    # ----------------------------------------------------------------- clock

    def _now(self) -> float:
        now = float(self.clock())
        if self._wall_offset is None:
            self._wall_offset = time.time() - now
        return now

    def _wall(self, reading: float) -> str:
        offset = self._wall_offset if self._wall_offset is not None else 0.0
        moment = dt.datetime.fromtimestamp(offset + reading, tz=dt.timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _settle(self, account: Account) -> None:
        try:
            now = self._now()
        except RuntimeError:
            # Inspection outside an event loop with the default clock: show the last state.
            return
        account.settle(now)

    # ----------------------------------------------------------------- the app

    def _build_app(self) -> Starlette:
        routes = [
            Route("/v1/identify", self._identify, methods=["POST"]),
            Route("/v1/companies/identify", self._identify_company, methods=["POST"]),
            Route("/v1/track", self._track, methods=["POST"]),
            Route("/v1/users/bulk_identify", self._bulk_users, methods=["POST"]),
            Route("/v1/companies/bulk_identify", self._bulk_companies, methods=["POST"]),
            Route("/v1/background_jobs", self._list_jobs, methods=["GET"]),
            Route("/v1/background_jobs/{job_id:path}", self._get_job, methods=["GET"]),
            Route("/v1/users", self._delete_users, methods=["DELETE"]),
            Route("/v1/companies", self._delete_companies, methods=["DELETE"]),
        ]
        app = Starlette(
            routes=routes,
            middleware=[Middleware(_FrontDoor, emulator=self)],
            exception_handlers={ApiError: _on_error, HTTPException: _on_error},
        )
        app.router.redirect_slashes = False  # "/v1/identify/" is a 404, as on a real API
        return app

    def _begin(self, request: Request, rule: RateRule | None = None) -> tuple[Account, _Note]:
        """Authenticate, settle the account's jobs, and apply the rate rule."""
        note = cast(_Note, request.scope[_NOTE])
        header = request.headers.get("authorization")
        if header is None:
            raise ApiError(
                401,
                "missing_api_key",
                "the Authorization header is missing; send 'Authorization: Token <API key>'",
                headers={"WWW-Authenticate": "Token"},
            )
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "token" or not key:
            raise ApiError(
                401,
                "invalid_authorization",
                "the Authorization header must be 'Token <API key>'",
                headers={"WWW-Authenticate": "Token"},
            )
        try:
            account = self.account(key)
        except KeyError:
            raise ApiError(
                401,
                "invalid_api_key",
                "the API key is not valid",
                headers={"WWW-Authenticate": "Token"},
            ) from None
        note.account = account.label
        if rule is not None:
            self._check_rate(account, rule)
        return account, note

    def _check_rate(self, account: Account, rule: RateRule) -> None:
        limits = self._limits[account.label]
        now = self._now()
        if rule == "delete":
            if self.delete_interval is None:
                return
            wait = limits.delete.admit(now, self.delete_interval)
            what = f"at most one delete request every {self.delete_interval:g} seconds"
        else:
            if self.realtime_requests_per_minute is None:
                return
            window = limits.identify if rule == "identify" else limits.track
            wait = window.admit(now, self.realtime_requests_per_minute)
            what = f"at most {self.realtime_requests_per_minute} {rule} requests per minute"
        if wait is None:
            return
        headers = {"Retry-After": str(max(1, math.ceil(wait)))} if self.retry_after_header else {}
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit exceeded: {what} per API key",
            {"rule": rule, "retry_after_seconds": round(wait, 3)},
            headers=headers,
        )

    async def _read_body(self, request: Request, note: _Note) -> bytes:
        """Read the body chunk by chunk, refusing it as soon as it exceeds ``max_bytes``."""
        limit = self.max_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                raise ApiError(400, "invalid_content_length", "the Content-Length is not a number")
            note.body_size = int(declared)
            if int(declared) > limit:
                raise self._too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async with aclosing(request.stream()) as stream:
                async for chunk in stream:
                    size += len(chunk)
                    note.body_size = size
                    if size > limit:
                        # Stop reading here: an oversized body is never held in memory.
                        raise self._too_large(limit)
                    chunks.append(chunk)
        except ClientDisconnect:
            raise ApiError(400, "client_disconnected", "the client went away mid-body") from None
        return b"".join(chunks)

    @staticmethod
    def _too_large(limit: int) -> ApiError:
        return ApiError(
            413,
            "body_too_large",
            f"the request body is over {limit} bytes",
            {"max_bytes": limit},
        )

    async def _json_body(self, request: Request, note: _Note) -> object:
        media, params = _media_type(request)
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(
                400,
                "invalid_content_type",
                f"expected Content-Type application/json, got {media or 'none'}",
            )
        _require_utf8(params)
        return decode_json(await self._read_body(request, note))

    # ----------------------------------------------------------------- real-time

    async def _identify(self, request: Request) -> Response:
        account, note = self._begin(request, "identify")
        user, company = read_identify(await self._json_body(request, note))
        note.records = 1
        account.apply(user)
        if company is not None:
            account.apply(company)
        return Response(status_code=202)

    async def _identify_company(self, request: Request) -> Response:
        account, note = self._begin(request, "identify")
        company = read_company_identify(await self._json_body(request, note))
        note.records = 1
        account.apply(company)
        return Response(status_code=202)

    async def _track(self, request: Request) -> Response:
        account, note = self._begin(request, "track")
        event = read_track(await self._json_body(request, note))
        note.records = 1
        account.events.append(
            TrackedEvent(event.user_id, event.event_name, event.metadata, self._now())
        )
        return Response(status_code=202)

    # ----------------------------------------------------------------- bulk and jobs

    async def _bulk_users(self, request: Request) -> Response:
        return await self._bulk(request, "users")

    async def _bulk_companies(self, request: Request) -> Response:
        return await self._bulk(request, "companies")

    async def _bulk(self, request: Request, kind: Kind) -> Response:
        account, note = self._begin(request)
        media, params = _media_type(request)
        records: list[Record]
        if media == "application/json":
            _require_utf8(params)
            body = await self._read_body(request, note)
            records = read_bulk_json(kind, decode_json(body), max_records=self.max_records)
            file_size, filename = len(body), None
        elif media == "multipart/form-data":
            body = await self._read_body(request, note)
            part = parse_file_upload(body, request.headers["content-type"])
            records = read_bulk_ndjson(kind, part.data, max_records=self.max_records)
            file_size, filename = len(part.data), part.filename
        else:
            raise ApiError(
                400,
                "invalid_content_type",
                "expected Content-Type application/json or multipart/form-data with a part "
                f"named 'file', got {media or 'none'}",
            )
        note.records = len(records)
        now = self._now()
        account.settle(now)
        running = account.running_job()
        if running is not None:
            raise ApiError(
                409,
                "job_in_progress",
                "a bulk job is still running for this account; wait for it to finish",
                {"job_id": running.job_id, "status": running.status},
            )
        job = BulkJob(
            job_id=self._new_job_id(),
            kind=kind,
            account=account.label,
            total_rows=len(records),
            submitted_at=now,
            start_at=now + self.queue_delay,
            rows_per_minute=self.rows_per_minute,
            file_size=file_size,
            filename=filename,
            records=records,
        )
        if self._failures:
            failure = self._failures.popleft()
            job.fail_after_rows = failure.after_rows
            job.failure_reason = failure.reason
        account.jobs[job.job_id] = job
        logger.debug("accepted %s job of %d rows for %s", kind, job.total_rows, account.label)
        return _json(job.to_json(now, self._wall, self._job_link(request, job.job_id)), 202)

    def _new_job_id(self) -> str:
        job_id = self.job_id_factory()
        if not job_id or any(job_id in a.jobs for a in self._accounts.values()):
            raise RuntimeError(f"job_id_factory returned an empty or reused id: {job_id!r}")
        return job_id

    @staticmethod
    def _job_link(request: Request, job_id: str) -> str:
        return f"{str(request.base_url).rstrip('/')}{_JOBS_PREFIX}{quote(job_id, safe='')}"

    async def _list_jobs(self, request: Request) -> Response:
        account, note = self._begin(request)
        now = self._now()
        note.records = 0
        return _json(
            [
                job.to_json(now, self._wall, self._job_link(request, job.job_id))
                for job in account.jobs.values()
            ],
            200,
        )

    async def _get_job(self, request: Request) -> Response:
        account, note = self._begin(request)
        note.records = 0
        # Match on the raw path: the id is one path segment, so "%2F" inside it is part of the
        # id while a bare "/" is a different path (as on the real API): a client that forgets
        # to percent-encode gets a 404, not a lucky match.
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(request.url.path)
        start = path.find(_JOBS_PREFIX)
        segment = path[start + len(_JOBS_PREFIX) :] if start >= 0 else ""
        if "/" in segment:
            raise ApiError(
                404,
                "not_found",
                f"no such path {path!r}; a job id containing '/' must be percent-encoded",
            )
        job_id = unquote(segment, errors="replace")
        job = account.jobs.get(job_id)
        if job is None:
            raise ApiError(
                404,
                "job_not_found",
                f"no job with id {job_id!r} in this account",
                {"job_id": job_id},
            )
        return _json(job.to_json(self._now(), self._wall, self._job_link(request, job_id)), 200)

    # ----------------------------------------------------------------- deletion

    async def _delete_users(self, request: Request) -> Response:
        return await self._delete(request, "users")

    async def _delete_companies(self, request: Request) -> Response:
        return await self._delete(request, "companies")

    async def _delete(self, request: Request, key: Literal["users", "companies"]) -> Response:
        account, note = self._begin(request, "delete")
        ids = read_delete_ids(key, await self._json_body(request, note))
        note.records = len(ids)
        store: dict[str, Any] = account.users if key == "users" else account.companies
        for record_id in ids:
            store.pop(record_id, None)
        (account.deleted_users if key == "users" else account.deleted_companies).extend(ids)
        return Response(status_code=202)

    # ----------------------------------------------------------------- request log

    def _log_request(self, scope: Scope, arrived: float, note: _Note) -> None:
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
        )
        self.requests.append(entry)
        limit = self.request_log_limit
        if limit is not None and len(self.requests) > limit + max(1, limit // 10):
            del self.requests[: len(self.requests) - limit]  # trim in batches, not per request
        logger.debug(
            "%s %s -> %s (%s)", entry.method, entry.path, entry.status, entry.account or "anonymous"
        )


async def _on_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return error_response(exc)
    http_exc = cast(HTTPException, exc)
    code = {404: "not_found", 405: "method_not_allowed"}.get(http_exc.status_code, "http_error")
    message = f"{request.method} {request.url.path}: {http_exc.detail}"
    return error_response(ApiError(http_exc.status_code, code, message, headers=http_exc.headers))


class _FrontDoor:
    """Pure ASGI middleware: fault injection first, then the request log around everything."""

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan is off when we serve
            await self.app(scope, receive, send)
            return
        emulator = self.emulator
        arrived = emulator._now()
        note = _Note()
        scope[_NOTE] = note

        async def send_noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                note.status = message["status"]
            await send(message)

        try:
            fault = emulator.faults.take(scope["method"], scope["path"])
            note.fault = fault
            if fault is not None and await self._inject(fault, scope, receive, send_noting_status):
                return
            await self.app(scope, receive, send_noting_status)
        except ConnectionDropped:
            note.status = None  # started, never completed
            raise
        finally:
            emulator._log_request(scope, arrived, note)

    @staticmethod
    async def _inject(fault: Fault, scope: Scope, receive: Receive, send: Send) -> bool:
        """Apply a fault; return whether it answered the request itself."""
        if fault.delay:
            await anyio.sleep(fault.delay)
        if fault.drop_connection:
            # A Content-Length promising bytes that never come: the client sees the connection
            # close mid-response. Raising after the start makes the server abort the connection.
            await send(
                {
                    "type": "http.response.start",
                    "status": fault.status or 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"1024"),
                    ],
                }
            )
            raise ConnectionDropped(
                f"fault: connection dropped on {scope['method']} {scope['path']}"
            )
        if fault.status is None:
            return False
        body = fault.body
        if body is None:
            content = (
                json.dumps(
                    error_body(fault.status, "injected_fault", "a fault injected by the emulator")
                ).encode()
                if fault.status >= 400
                else b""
            )
            media = "application/json"
        elif isinstance(body, bytes | str):
            content = body.encode() if isinstance(body, str) else body
            media = "text/plain; charset=utf-8"
        else:
            content = json.dumps(body).encode()
            media = "application/json"
        response = Response(content, status_code=fault.status, headers=dict(fault.headers))
        if "content-type" not in {name.lower() for name in fault.headers} and content:
            response.headers["content-type"] = media
        await response(scope, receive, send)
        return True

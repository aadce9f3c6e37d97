"""The API's routes: one handler per endpoint, each enforcing the rules the real API enforces.

Every handler authenticates, applies its rate rule, reads and validates the body within the
byte limit, and then changes the emulator's store. The state they read and change (accounts,
rate counters, planned job failures, the clock) belongs to the :class:`Emulator` facade.
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ._errors import ApiError
from ._events import EventRow, read_event_file
from ._middleware import RequestNote, note_of
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
from ._store import Account, BulkJob, JobKind, JobRow, TrackedEvent

if TYPE_CHECKING:
    from ._app import Emulator

__all__ = ["ApiRoutes", "RateRule", "job_link"]

logger = logging.getLogger("analytex_async.emulator")

_JOBS_LIST = "/v1/background_jobs"
_JOBS_PREFIX = f"{_JOBS_LIST}/"

RateRule = Literal["identify", "track", "delete"]


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


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"the request body is over {limit} bytes",
        {"max_bytes": limit},
    )


def _refused_key_message(key: str) -> str:
    # App tokens ("NX-98ii14b") are the usual wrong key: say so, as the API reference asks.
    if key.startswith("NX-"):
        return (
            "the API key is not valid: this looks like an app token; use the API key from "
            "Environment settings"
        )
    return "the API key is not valid"


def job_link(request: Request, job_id: str) -> str:
    """The job's ``links.self``: its URL on the server the request reached, id encoded."""
    return f"{str(request.base_url).rstrip('/')}{_JOBS_PREFIX}{quote(job_id, safe='')}"


class ApiRoutes:
    """The request handlers of every API route, over one emulator's state.

    Args:
        emulator: The emulator whose settings, store and clock the handlers use.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def routes(self) -> list[Route]:
        """The Starlette routes, one per API call."""
        return [
            Route("/v1/identify", self.identify, methods=["POST"]),
            Route("/v1/companies/identify", self.identify_company, methods=["POST"]),
            Route("/v1/track", self.track, methods=["POST"]),
            Route("/v1/users/bulk_identify", self.bulk_users, methods=["POST"]),
            Route("/v1/companies/bulk_identify", self.bulk_companies, methods=["POST"]),
            Route("/v1/imports", self.import_events, methods=["POST"]),
            Route("/v1/background_jobs", self.list_jobs, methods=["GET"]),
            Route("/v1/background_jobs/{job_id:path}", self.get_job, methods=["GET"]),
            Route("/v1/users", self.delete_users, methods=["DELETE"]),
            Route("/v1/companies", self.delete_companies, methods=["DELETE"]),
        ]

    # ----------------------------------------------------------------- every request

    def _begin(self, request: Request, rule: RateRule | None = None) -> tuple[Account, RequestNote]:
        """Authenticate, settle the account's jobs, and apply the rate rule."""
        note = note_of(request)
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
            account = self.emulator.account(key)
        except KeyError:
            raise ApiError(
                401,
                "invalid_api_key",
                _refused_key_message(key),
                headers={"WWW-Authenticate": "Token"},
            ) from None
        note.account = account.label
        if rule is not None:
            self._check_rate(account, rule)
        return account, note

    def _check_rate(self, account: Account, rule: RateRule) -> None:
        emulator = self.emulator
        limits = emulator._limits_of(account)
        now = emulator._now()
        if rule == "delete":
            if emulator.delete_interval is None:
                return
            wait = limits.delete.admit(now, emulator.delete_interval)
            what = f"at most one delete request every {emulator.delete_interval:g} seconds"
        else:
            per_minute = emulator.realtime_requests_per_minute
            if per_minute is None:
                return
            window = limits.identify if rule == "identify" else limits.track
            wait = window.admit(now, per_minute)
            what = f"at most {per_minute} {rule} requests per minute"
        if wait is None:
            return
        headers = (
            {"Retry-After": str(max(1, math.ceil(wait)))} if emulator.retry_after_header else {}
        )
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit exceeded: {what} per API key",
            {"rule": rule, "retry_after_seconds": round(wait, 3)},
            headers=headers,
        )

    async def _read_body(self, request: Request, note: RequestNote) -> bytes:
        """Read the body chunk by chunk, refusing it as soon as it exceeds ``max_bytes``."""
        limit = self.emulator.max_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                raise ApiError(400, "invalid_content_length", "the Content-Length is not a number")
            note.body_size = int(declared)
            if int(declared) > limit:
                raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async with aclosing(request.stream()) as stream:
                async for chunk in stream:
                    size += len(chunk)
                    note.body_size = size
                    if size > limit:
                        # Stop reading here: an oversized body is never held in memory.
                        raise _too_large(limit)
                    chunks.append(chunk)
        except ClientDisconnect:
            raise ApiError(400, "client_disconnected", "the client went away mid-body") from None
        return b"".join(chunks)

    async def _json_body(self, request: Request, note: RequestNote) -> object:
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

    async def identify(self, request: Request) -> Response:
        """``POST /v1/identify``: store the user (and the company it names)."""
        account, note = self._begin(request, "identify")
        user, company = read_identify(await self._json_body(request, note))
        note.records = 1
        account.apply(user)
        account.note_identify(user, self.emulator._now())
        if company is not None:
            account.apply(company)
        return Response(status_code=202)

    async def identify_company(self, request: Request) -> Response:
        """``POST /v1/companies/identify``: store the company."""
        account, note = self._begin(request, "identify")
        company = read_company_identify(await self._json_body(request, note))
        note.records = 1
        account.apply(company)
        return Response(status_code=202)

    async def track(self, request: Request) -> Response:
        """``POST /v1/track``: record the event."""
        account, note = self._begin(request, "track")
        event = read_track(await self._json_body(request, note))
        note.records = 1
        account.events.append(
            TrackedEvent(event.user_id, event.event_name, event.metadata, self.emulator._now())
        )
        return Response(status_code=202)

    # ----------------------------------------------------------------- bulk and jobs

    async def bulk_users(self, request: Request) -> Response:
        """``POST /v1/users/bulk_identify``: accept a bulk job of users."""
        return await self._bulk(request, "users")

    async def bulk_companies(self, request: Request) -> Response:
        """``POST /v1/companies/bulk_identify``: accept a bulk job of companies."""
        return await self._bulk(request, "companies")

    async def _bulk(self, request: Request, kind: Kind) -> Response:
        emulator = self.emulator
        account, note = self._begin(request)
        media, params = _media_type(request)
        records: list[Record]
        if media == "application/json":
            _require_utf8(params)
            body = await self._read_body(request, note)
            records = read_bulk_json(kind, decode_json(body), max_records=emulator.max_records)
            file_size, filename = len(body), None
        elif media == "multipart/form-data":
            body = await self._read_body(request, note)
            part = parse_file_upload(body, request.headers["content-type"])
            records = read_bulk_ndjson(kind, part.data, max_records=emulator.max_records)
            file_size, filename = len(part.data), part.filename
        else:
            raise ApiError(
                400,
                "invalid_content_type",
                "expected Content-Type application/json or multipart/form-data with a part "
                f"named 'file', got {media or 'none'}",
            )
        note.records = len(records)
        return self._accept_job(
            request,
            account,
            kind=kind,
            records=list(records),
            file_size=file_size,
            filename=filename,
            status=202,
        )

    async def import_events(self, request: Request) -> Response:
        """``POST /v1/imports``: accept an events import (a CSV or NDJSON file part).

        It answers 200 with the job, as the vendor documents; imports have their own
        one-at-a-time slot, apart from bulk identify.
        """
        account, note = self._begin(request)
        media, _ = _media_type(request)
        if media != "multipart/form-data":
            raise ApiError(
                400,
                "invalid_content_type",
                "expected Content-Type multipart/form-data with a part named 'file' (NDJSON or "
                f"CSV), got {media or 'none'}",
            )
        body = await self._read_body(request, note)
        part = parse_file_upload(body, request.headers["content-type"])
        events: list[EventRow] = read_event_file(part, max_records=self.emulator.max_records)
        note.records = len(events)
        return self._accept_job(
            request,
            account,
            kind="events",
            records=list(events),
            file_size=len(part.data),
            filename=part.filename,
            status=200,
        )

    def _accept_job(
        self,
        request: Request,
        account: Account,
        *,
        kind: JobKind,
        records: list[JobRow],
        file_size: int,
        filename: str | None,
        status: int,
    ) -> Response:
        """Start a job in its slot (409 while the slot's previous job runs) and answer it."""
        emulator = self.emulator
        now = emulator._now()
        account.settle(now)
        imports = kind == "events"
        running = account.running_job(imports=imports)
        if running is not None:
            what = "an import job" if imports else "a bulk job"
            raise ApiError(
                409,
                "job_in_progress",
                f"{what} is still running for this account; wait for it to finish",
                {"job_id": running.job_id, "status": running.status},
            )
        job = BulkJob(
            job_id=emulator._new_job_id(),
            kind=kind,
            account=account.label,
            total_rows=len(records),
            submitted_at=now,
            start_at=now + emulator.queue_delay,
            rows_per_minute=emulator.rows_per_minute,
            file_size=file_size,
            filename=filename,
            records=records,
        )
        failure = emulator._take_planned_failure()
        if failure is not None:
            job.fail_after_rows = failure.after_rows
            job.failure_reason = failure.reason
        account.jobs[job.job_id] = job
        logger.debug("accepted %s job of %d rows for %s", kind, job.total_rows, account.label)
        return _json(job.to_json(now, emulator._wall, job_link(request, job.job_id)), status)

    async def list_jobs(self, request: Request) -> Response:
        """``GET /v1/background_jobs``: every job of the account, in submission order.

        A bare array by default; with ``jobs_page_size`` set, one page
        ``{"data": [...], "links": {"self": url, "next": url or null}}`` chosen by ``?page=N``.
        """
        account, note = self._begin(request)
        emulator = self.emulator
        now = emulator._now()
        note.records = 0
        jobs = list(account.jobs.values())
        page_size = emulator.jobs_page_size
        if page_size is None:
            return _json(
                [job.to_json(now, emulator._wall, job_link(request, job.job_id)) for job in jobs],
                200,
            )
        raw_page = request.query_params.get("page", "1")
        if not (raw_page.isascii() and raw_page.isdigit()) or int(raw_page) < 1:
            raise ApiError(
                400, "invalid_page", f"page must be a whole number from 1, got {raw_page!r}"
            )
        page = int(raw_page)
        start = (page - 1) * page_size
        shown = jobs[start : start + page_size]
        base = f"{str(request.base_url).rstrip('/')}{_JOBS_LIST}"
        return _json(
            {
                "data": [
                    job.to_json(now, emulator._wall, job_link(request, job.job_id)) for job in shown
                ],
                "links": {
                    "self": f"{base}?page={page}",
                    "next": f"{base}?page={page + 1}" if start + page_size < len(jobs) else None,
                },
            },
            200,
        )

    async def get_job(self, request: Request) -> Response:
        """``GET /v1/background_jobs/{job_id}``: one job, advanced to the clock's reading."""
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
        now = self.emulator._now()
        return _json(job.to_json(now, self.emulator._wall, job_link(request, job_id)), 200)

    # ----------------------------------------------------------------- deletion

    async def delete_users(self, request: Request) -> Response:
        """``DELETE /v1/users``: forget the listed users."""
        return await self._delete(request, "users")

    async def delete_companies(self, request: Request) -> Response:
        """``DELETE /v1/companies``: forget the listed companies."""
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

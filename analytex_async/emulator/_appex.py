"""The appex host's routes: exports of the events the emulator holds, their files, lookups.

An export takes a snapshot of the account's events when it starts (tracks, imported events, and
each identify of a user as an ``identify_user`` event), filtered as asked (``from`` ≤
``inserted_at`` < ``to``, event types, users, companies, a segment), cut into files of
``export_chunk_rows`` events. It progresses from the clock alone: its chunks complete evenly
over ``export_duration`` seconds, then it is ``completed`` and its job shows signed download
links on the emulator's own address, which expire ``link_ttl`` seconds after the job was read.
One export at a time per account (409). Files are rendered when first downloaded and kept.

Download links need no key (they are signed: ``expires`` and an HMAC ``signature``), answer
``Range`` requests, and carry an ``ETag`` (the file's MD5).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._errors import ApiError
from ._export_files import FILE_SUFFIXES, render
from ._routes import ApiRoutes
from ._store import Account, IdentifiedUser, ImportedEvent, StoredUser, TrackedEvent

if TYPE_CHECKING:
    from ._app import Emulator

__all__ = ["EXPORTS_PREFIX", "FILES_PREFIX", "AppexRoutes", "ExportJob"]

EXPORTS_PREFIX = "/api/v1/analytics/exports"
FILES_PREFIX = "/_files/exports/"
SEGMENTS: tuple[dict[str, str], ...] = (
    {"id": "all_users", "title": "All users"},
    {"id": "with_company", "title": "Users with a company"},
    {"id": "without_company", "title": "Users without a company"},
)
"""The emulator's segments (``lookup("segments")``, ``segment_id=``)."""
PAGED_LOOKUPS = ("segments", "events_properties")
LOOKUPS = (
    "user_properties",
    "company_properties",
    "segments",
    "features_events",
    "events_properties",
    "flows",
    "banners",
    "embeds",
    "spotlights",
    "surveys",
    "resource_center_modules",
    "checklists",
)
FORMATS = ("avro", "csv", "ndjson", "parquet")


def _json(body: object, status: int = 200) -> Response:
    return Response(
        json.dumps(body, default=str).encode(), status_code=status, media_type="application/json"
    )


@attrs.define
class ExportJob:
    """One export of one account; its state follows the clock.

    Attributes:
        job_id: Its id.
        account: The account's label.
        file_format: The files' format.
        events: The snapshot of the account's events it exports (stored objects, in order).
        chunk_rows: Events per file at most.
        started: Clock reading when it started.
        duration: Seconds it takes to complete.
        query: The filters it was asked for, as sent.
        files: Rendered files by name (bytes, ETag), filled in on first download.
    """

    job_id: str
    account: str
    file_format: str
    events: list[Any] = attrs.field(repr=False)
    chunk_rows: int
    started: float
    duration: float
    query: dict[str, Any]
    files: dict[str, tuple[bytes, str]] = attrs.field(factory=dict, repr=False)

    @property
    def chunk_names(self) -> list[str]:
        """The files' names, in order (an empty export still has one, empty, file)."""
        count = max(1, math.ceil(len(self.events) / self.chunk_rows))
        suffix = FILE_SUFFIXES[self.file_format]
        return [f"{self.job_id}-{index:04d}{suffix}" for index in range(count)]

    def completed_chunks(self, now: float) -> int:
        """How many chunks are done at clock reading ``now``."""
        total = len(self.chunk_names)
        if self.duration <= 0:
            return total
        return min(total, math.floor((now - self.started) / self.duration * total + 1e-9))

    def is_finished(self, now: float) -> bool:
        """Whether it has completed at clock reading ``now``."""
        return self.completed_chunks(now) >= len(self.chunk_names)

    def progress(self, now: float) -> float:
        """Its progress, a percentage."""
        if self.duration <= 0:
            return 100.0
        return round(min(100.0, max(0.0, (now - self.started) / self.duration * 100)), 1)


class AppexRoutes:
    """The appex handlers over one emulator: exports, their files, lookups, inspection.

    Args:
        emulator: The emulator whose store, clock and settings the handlers use.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._api = ApiRoutes(emulator)
        self._secret = secrets.token_bytes(32)
        self.jobs: dict[str, ExportJob] = {}

    def routes(self) -> list[Route]:
        """The Starlette routes of the appex host and of the download links."""
        prefix = EXPORTS_PREFIX
        return [
            Route(prefix, self.start, methods=["POST"]),
            Route(f"{prefix}/jobs/", self.list_jobs, methods=["GET"]),
            Route(f"{prefix}/jobs", self.list_jobs, methods=["GET"]),
            Route(f"{prefix}/jobs/{{job_id:path}}", self.get_job, methods=["GET"]),
            Route(f"{prefix}/lookups/{{name}}", self.lookup, methods=["GET"]),
            Route(f"{FILES_PREFIX}{{job_id}}/{{filename}}", self.download, methods=["GET"]),
        ]

    def inspection_routes(self, prefix: str) -> list[Route]:
        """``GET {prefix}exports``: every export, its state and files (no links)."""
        return [Route(f"{prefix}exports", self.inspect, methods=["GET"])]

    # ----------------------------------------------------------------- the events

    def _wall(self, reading: float) -> dt.datetime:
        self.emulator._now()  # fixes the wall-clock offset on first use
        offset = self.emulator._wall_offset or 0.0
        return dt.datetime.fromtimestamp(offset + reading, tz=dt.timezone.utc)

    def _app_token(self, account: Account) -> str:
        return "NX-" + account.label.removeprefix("acct-")

    def _events_of(self, account: Account) -> list[tuple[dt.datetime, Any]]:
        timed: list[tuple[dt.datetime, Any]] = [(self._wall(e.time), e) for e in account.events]
        timed.extend((self._wall(e.time), e) for e in account.identified)
        timed.extend((e.inserted_at, e) for e in account.imported_events)
        timed.sort(key=lambda item: item[0])
        return timed

    def row(self, account: Account, item: tuple[dt.datetime, Any]) -> dict[str, Any]:
        """A stored event as the export schema has it."""
        moment, event = item
        row: dict[str, Any] = {"app_token": self._app_token(account), "inserted_at": moment}
        if isinstance(event, TrackedEvent):
            row.update(
                event_type="track",
                event_name=event.event_name,
                user_id=event.user_id,
                source="backend-http",
                metadata=event.metadata,
            )
        elif isinstance(event, IdentifiedUser):
            row.update(
                event_type="identify_user",
                user_id=event.user_id,
                company_id=event.company_id,
                source="backend-http",
                metadata=event.metadata,
            )
        elif isinstance(event, ImportedEvent):
            row.update(event.fields)
            row.update(
                event_type=event.event_type,
                event_name=event.event_name,
                user_id=event.user_id,
                company_id=event.company_id,
                source=event.source,
                metadata=event.metadata,
                inserted_at=moment,
            )
        return row

    # ----------------------------------------------------------------- exports

    def _running(self, account: Account, now: float) -> ExportJob | None:
        return next(
            (
                job
                for job in self.jobs.values()
                if job.account == account.label and not job.is_finished(now)
            ),
            None,
        )

    async def start(self, request: Request) -> Response:
        """``POST /api/v1/analytics/exports``: start an export (409 while one runs)."""
        emulator = self.emulator
        account, note = self._api._begin(request)
        body = await self._api._json_body(request, note)
        query = _read_query(body)
        now = emulator._now()
        running = self._running(account, now)
        if running is not None:
            raise ApiError(
                409,
                "export_running",
                "an export is already running for this environment; one at a time",
                {"job_id": running.job_id},
            )
        events = [item for item in self._events_of(account) if self._wanted(account, item, query)]
        job = ExportJob(
            job_id=emulator._new_job_id(),
            account=account.label,
            file_format=query["format"],
            events=events,
            chunk_rows=emulator.export_chunk_rows,
            started=now,
            duration=emulator.export_duration,
            query=query,
        )
        self.jobs[job.job_id] = job
        note.records = len(events)
        link = (
            f"{str(request.base_url).rstrip('/')}{EXPORTS_PREFIX}/jobs/{quote(job.job_id, safe='')}"
        )
        return _json(
            {
                "job_id": job.job_id,
                "links": link,
                "start_time": emulator._wall(now),
                "environment_app_token": self._app_token(account),
                "environment_name": "emulator",
            },
            201,
        )

    def _wanted(
        self, account: Account, item: tuple[dt.datetime, Any], query: dict[str, Any]
    ) -> bool:
        moment, event = item
        lower, upper = query["from"], query["to"]
        if (lower is not None and moment < lower) or (upper is not None and moment >= upper):
            return False
        kind = (
            "track"
            if isinstance(event, TrackedEvent)
            else "identify_user"
            if isinstance(event, IdentifiedUser)
            else event.event_type
        )
        user_id = getattr(event, "user_id", None)
        company_id = getattr(event, "company_id", None)
        user = account.users.get(user_id) if user_id is not None else None
        if company_id is None and user is not None:
            company_id = user.company_id
        segment = query["segment_id"]
        return (
            (not query["event_type"] or kind in query["event_type"])
            and (not query["user_id"] or user_id in query["user_id"])
            and (not query["company_id"] or company_id in query["company_id"])
            and (segment is None or _in_segment(segment, user))
        )

    def _job_of(self, request: Request, account: Account, job_id: str) -> ExportJob:
        job = self.jobs.get(job_id)
        if job is None or job.account != account.label:
            raise ApiError(
                404, "export_not_found", f"no export with id {job_id!r}", {"job_id": job_id}
            )
        return job

    def _signed(self, request: Request, job: ExportJob, filename: str) -> str:
        expires = self.emulator._now() + self.emulator.link_ttl
        stamp = f"{expires:.6f}"
        signature = self._signature(job.job_id, filename, stamp)
        base = str(request.base_url).rstrip("/")
        return (
            f"{base}{FILES_PREFIX}{quote(job.job_id, safe='')}/{quote(filename, safe='')}"
            f"?expires={stamp}&signature={signature}"
        )

    def _signature(self, job_id: str, filename: str, stamp: str) -> str:
        message = f"{job_id}\x00{filename}\x00{stamp}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def job_json(self, job: ExportJob, now: float, request: Request | None) -> dict[str, Any]:
        """The job object the appex host answers (links only with a ``request``)."""
        names = job.chunk_names
        done = job.completed_chunks(now)
        finished = done >= len(names)
        end = job.started + job.duration if finished else None
        body: dict[str, Any] = {
            "job_id": job.job_id,
            "app_token": "NX-" + job.account.removeprefix("acct-"),
            "type": "export",
            "status": "completed" if finished else "pending" if done == 0 else "processing",
            "progress": f"{job.progress(now):g}",
            "all_chunks": names,
            "completed_chunks": names[:done],
            "current_chunk": None if finished else names[done],
            "presigned_urls": [],
            "start_time": self.emulator._wall(job.started),
            "end_time": self.emulator._wall(end) if end is not None else None,
        }
        if finished and request is not None:
            body["presigned_urls"] = [
                {"filename": name, "url": self._signed(request, job, name)} for name in names
            ]
        return body

    async def get_job(self, request: Request) -> Response:
        """``GET /api/v1/analytics/exports/jobs/{job_id}``: the export, links when completed."""
        account, _ = self._api._begin(request)
        job = self._job_of(request, account, str(request.path_params["job_id"]))
        return _json(self.job_json(job, self.emulator._now(), request))

    async def list_jobs(self, request: Request) -> Response:
        """``GET /api/v1/analytics/exports/jobs/``: the account's exports, oldest first."""
        account, _ = self._api._begin(request)
        now = self.emulator._now()
        listed = []
        for job in self.jobs.values():
            if job.account != account.label:
                continue
            body = self.job_json(job, now, None)
            finished = body["end_time"] is not None
            elapsed = job.duration if finished else now - job.started
            listed.append(
                {
                    key: body[key]
                    for key in ("job_id", "status", "progress", "start_time", "end_time")
                }
                | {"elapsed_time": f"{elapsed:.1f}s", "elapsed_time_seconds": round(elapsed, 3)}
            )
        return _json(listed)

    # ----------------------------------------------------------------- files

    def _file(self, job: ExportJob, filename: str) -> tuple[bytes, str]:
        cached = job.files.get(filename)
        if cached is not None:
            return cached
        index = job.chunk_names.index(filename)
        account = next(a for a in self.emulator.accounts if a.label == job.account)
        chunk = job.events[index * job.chunk_rows : (index + 1) * job.chunk_rows]
        data = render([self.row(account, item) for item in chunk], job.file_format)
        cached = (data, f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"')
        job.files[filename] = cached
        return cached

    async def download(self, request: Request) -> Response:
        """``GET /_files/exports/{job_id}/{filename}?expires=&signature=``: a signed file.

        No key: the signature is the credential. 403 when it is wrong or expired (as object
        storage answers), 404 for a file the export does not have; ``Range: bytes=N-`` is
        answered 206.
        """
        job_id = str(request.path_params["job_id"])
        filename = str(request.path_params["filename"])
        stamp = request.query_params.get("expires", "")
        signature = request.query_params.get("signature", "")
        expected = self._signature(job_id, filename, stamp)
        if not hmac.compare_digest(signature, expected):
            raise ApiError(403, "signature_does_not_match", "the link's signature is not valid")
        try:
            expires = float(stamp)
        except ValueError:
            raise ApiError(403, "access_denied", "the link has no expiry") from None
        if self.emulator._now() >= expires:
            raise ApiError(403, "request_expired", "the link has expired")
        job = self.jobs.get(job_id)
        if job is None or filename not in job.chunk_names:
            raise ApiError(404, "no_such_key", "the file does not exist")
        data, etag = self._file(job, filename)
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        first = _range_start(request.headers.get("range"), request.headers.get("if-range"), etag)
        if first is not None and 0 < first < len(data):
            headers["Content-Range"] = f"bytes {first}-{len(data) - 1}/{len(data)}"
            return Response(data[first:], 206, headers, "application/octet-stream")
        return Response(data, 200, headers, "application/octet-stream")

    # ----------------------------------------------------------------- lookups

    async def lookup(self, request: Request) -> Response:
        """``GET /api/v1/analytics/exports/lookups/{name}``: a list, or pages with a cursor."""
        account, _ = self._api._begin(request)
        name = str(request.path_params["name"])
        if name not in LOOKUPS:
            raise ApiError(404, "lookup_not_found", f"no lookup named {name!r}")
        items = list(self._lookup_items(account, name))
        if name not in PAGED_LOOKUPS:
            return _json(items)
        size = self.emulator.lookup_page_size
        after = request.query_params.get("after_cursor")
        start = 0
        if after is not None:
            if not after.isdigit():
                raise ApiError(400, "invalid_cursor", "after_cursor is not a cursor of this lookup")
            start = int(after)
        page = items[start : start + size]
        following = str(start + size) if start + size < len(items) else None
        return _json(
            {
                "data": page,
                "metadata": {
                    "cursor": {"after": following, "before": str(start) if start else None},
                    "limit": size,
                    "total_count": len(items),
                },
            }
        )

    def _lookup_items(self, account: Account, name: str) -> Iterator[dict[str, Any]]:
        if name == "segments":
            yield from SEGMENTS
        elif name == "user_properties":
            keys = sorted({k for user in account.users.values() for k in user.metadata})
            yield from ({"name": key, "type": "user"} for key in keys)
        elif name == "company_properties":
            keys = sorted({k for c in account.companies.values() for k in c.metadata})
            yield from ({"name": key, "type": "company"} for key in keys)
        elif name == "events_properties":
            names: dict[str, set[str]] = {}
            for event in account.events:
                names.setdefault(event.event_name, set()).update(event.metadata)
            for imported in account.imported_events:
                if imported.event_name:
                    names.setdefault(imported.event_name, set()).update(imported.metadata)
            for event_name in sorted(names):
                yield {"event_name": event_name, "properties": sorted(names[event_name])}

    # ----------------------------------------------------------------- inspection

    async def inspect(self, request: Request) -> Response:
        """``GET /_emulator/exports``: every export of every account (no links)."""
        now = self.emulator._now()
        shown = []
        for job in self.jobs.values():
            body = self.job_json(job, now, None)
            del body["presigned_urls"]
            body["format"] = job.file_format
            body["rows"] = len(job.events)
            body["query"] = job.query
            shown.append(body)
        return _json(shown)


def _in_segment(segment: str, user: StoredUser | None) -> bool:
    if segment == "all_users":
        return True
    if segment == "with_company":
        return user is not None and user.company_id is not None
    return user is None or user.company_id is None


def _range_start(value: str | None, if_range: str | None, etag: str) -> int | None:
    if value is None or (if_range is not None and if_range != etag):
        return None
    unit, _, spec = value.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or not dash or last or not first.isdigit():
        return None
    return int(first)


def _read_time(body: dict[str, Any], field: str) -> dt.datetime | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_payload", f"{field} must be an ISO 8601 string")
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "invalid_payload", f"{field} is not an ISO 8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _read_strings(body: dict[str, Any], field: str) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, "invalid_payload", f"{field} must be an array of non-empty strings")
    return value or None


def _read_query(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_payload", "the body must be a JSON object")
    file_format = body.get("format", "ndjson")
    if file_format not in FORMATS:
        raise ApiError(400, "invalid_payload", f"format must be one of {', '.join(FORMATS)}")
    segment = body.get("segment_id")
    if segment is not None and segment not in {s["id"] for s in SEGMENTS}:
        raise ApiError(400, "invalid_payload", f"no segment with id {segment!r}")
    query = {
        "from": _read_time(body, "from"),
        "to": _read_time(body, "to"),
        "format": file_format,
        "event_type": _read_strings(body, "event_type"),
        "user_id": _read_strings(body, "user_id"),
        "company_id": _read_strings(body, "company_id"),
        "segment_id": segment,
        "emails": _read_strings(body, "emails"),
    }
    if query["from"] is not None and query["to"] is not None and query["from"] >= query["to"]:
        raise ApiError(400, "invalid_payload", "from must be before to")
    return query

"""The emulator's facade: the :class:`Emulator` settings, its in-memory state, and its app.

The request handlers live in ``_routes``, fault injection and the request log in
``_middleware``; this module holds what they share (accounts, rate counters, planned job
failures, the clock) and what a test inspects and controls.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import string
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection

import anyio
import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from ._appex import AppexRoutes
from ._errors import ApiError, answer_error
from ._faults import Faults
from ._inspection import INSPECTION_PREFIX, InspectionRoutes
from ._limits import AccountLimits
from ._middleware import FrontDoor
from ._routes import ApiRoutes
from ._store import (
    Account,
    BulkJob,
    ImportedEvent,
    ReceivedRequest,
    StoredCompany,
    StoredUser,
    TrackedEvent,
)

__all__ = ["Emulator"]

_DEFAULT_FAILURE = "the job failed (injected by the emulator)"
_REQUEST_ID_ALPHABET = string.ascii_letters + string.digits


def _random_request_id() -> str:
    # The shape of the vendor's ids ("GEDdGIKmRewi6ZIAEYcB"): 20 letters and digits.
    return "".join(secrets.choice(_REQUEST_ID_ALPHABET) for _ in range(20))


@attrs.frozen
class _PlannedFailure:
    reason: str
    after_rows: int


def _check_export_settings(
    chunk_rows: int, duration: float, link_ttl: float, lookup_page_size: int
) -> None:
    if chunk_rows < 1 or lookup_page_size < 1:
        raise ValueError("export_chunk_rows and lookup_page_size must be at least 1")
    if duration < 0 or link_ttl <= 0:
        raise ValueError("export_duration must not be negative and link_ttl must be positive")


def _account_label(api_key: str) -> str:
    # A short digest names the account in logs and the request log without revealing the key.
    return "acct-" + hashlib.sha256(api_key.encode()).hexdigest()[:10]


class Emulator:
    """A faithful local Analytex server: an ASGI app with an inspectable in-memory store.

    Every rule of the API is enforced: ``Authorization: Token <key>`` (401), validation (400,
    NDJSON errors name their line), the record and byte limits (413), one bulk job at a time per
    account and, apart from it, one events import at a time (409), the real-time and delete
    rates (429), and the documented error body. Every response carries ``x-request-id``. Jobs
    progress from the clock alone (no background task): ``queued`` for ``queue_delay`` seconds,
    then ``processing`` at ``rows_per_minute``, then ``completed``; their rows are applied to
    the store as they complete.

    Each API key is its own account (its own store, jobs and rate counters).

    For a person at a terminal, the app also answers read-only routes under ``/_emulator/``
    (``users`` and ``companies`` in pages, ``users/{user_id}``, ``companies/{company_id}``,
    ``events``, ``jobs``) over every account's store. They need no key and show none, and they
    are never faulted, logged in :attr:`requests` or counted in a rate.

    Args:
        api_keys: The only keys accepted; any other key is answered 401 ``invalid_api_key``,
            as the real API answers a wrong key. ``None`` accepts any non-empty key.
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
        request_id_factory: Makes the ``x-request-id`` of each response; defaults to random
            20-character ids like ``"GEDdGIKmRewi6ZIAEYcB"``.
        jobs_page_size: ``None`` (the default) lists ``GET /v1/background_jobs`` as one bare
            array; a number pages it: ``{"data": [...], "links": {"self", "next"}}``, the next
            page at ``?page=N`` (``next`` is null on the last page).
        request_log_limit: How many entries :attr:`requests` keeps (oldest dropped first);
            ``None`` keeps all.
        export_chunk_rows: Events per file of an export (the appex routes) at most.
        export_duration: Seconds an export takes from start to ``completed`` (its chunks
            complete evenly over it; ``0`` completes it at once).
        link_ttl: Seconds an export's download link stays valid after the job was read
            (the real links last 2 days).
        lookup_page_size: Items per page of the paged lookups (``segments``,
            ``events_properties``).

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
        request_id_factory: Callable[[], str] | None = None,
        jobs_page_size: int | None = None,
        export_chunk_rows: int = 100_000,
        export_duration: float = 1.0,
        link_ttl: float = 172_800.0,
        lookup_page_size: int = 2,
    ) -> None:
        if api_keys is not None:
            if isinstance(api_keys, str):
                raise TypeError("api_keys must be a collection of keys, not one string")
            if not api_keys or not all(isinstance(k, str) and k for k in api_keys):
                raise ValueError("api_keys must hold non-empty strings (None accepts any key)")
            if any(k != k.strip() for k in api_keys):
                # The key is read from the header with its surrounding spaces stripped, so such
                # a key could never be matched: refuse it rather than lock every client out.
                raise ValueError("an API key in api_keys starts or ends with whitespace")
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
        if jobs_page_size is not None and jobs_page_size < 1:
            raise ValueError("jobs_page_size must be at least 1, or None")
        _check_export_settings(export_chunk_rows, export_duration, link_ttl, lookup_page_size)
        self.export_chunk_rows = export_chunk_rows
        self.export_duration = export_duration
        self.link_ttl = link_ttl
        self.lookup_page_size = lookup_page_size
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
        self.request_id_factory = request_id_factory or _random_request_id
        self.jobs_page_size = jobs_page_size
        self._wall_offset: float | None = None
        if epoch is not None:
            aware = epoch if epoch.tzinfo is not None else epoch.replace(tzinfo=dt.timezone.utc)
            self._wall_offset = aware.timestamp()
        self.faults = Faults()
        self.requests: list[ReceivedRequest] = []
        self._accounts: dict[str, Account] = {}
        self._limits: dict[str, AccountLimits] = {}
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
            self._limits[account.label] = AccountLimits()
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
        """Tracked events (``POST /v1/track``) of the only account; see :attr:`users`."""
        account = self._single_account()
        return account.events if account is not None else []

    @property
    def imported_events(self) -> list[ImportedEvent]:
        """Events of the only account's import jobs, as their rows were processed.

        Every event type is kept here; ``identify_user`` and ``identify_company`` events have
        also updated :attr:`users` and :attr:`companies`. See :attr:`users`.
        """
        account = self._single_account()
        return account.imported_events if account is not None else []

    @property
    def jobs(self) -> dict[str, BulkJob]:
        """Bulk and import jobs of the only account by id, oldest first; see :attr:`users`."""
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
        """Make the next ``count`` accepted jobs, bulk or import (any account), end ``failed``.

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
        self._appex.jobs.clear()
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

    # ----------------------------------------------------------------- for the routes

    def _limits_of(self, account: Account) -> AccountLimits:
        return self._limits[account.label]

    def _new_job_id(self) -> str:
        job_id = self.job_id_factory()
        if not job_id or any(job_id in a.jobs for a in self._accounts.values()):
            raise RuntimeError(f"job_id_factory returned an empty or reused id: {job_id!r}")
        return job_id

    def _new_request_id(self) -> str:
        return self.request_id_factory()

    def _take_planned_failure(self) -> _PlannedFailure | None:
        return self._failures.popleft() if self._failures else None

    # ----------------------------------------------------------------- the app

    def _build_app(self) -> Starlette:
        self._appex = AppexRoutes(self)
        app = Starlette(
            routes=[
                *ApiRoutes(self).routes(),
                *self._appex.routes(),
                *InspectionRoutes(self).routes(),
                *self._appex.inspection_routes(INSPECTION_PREFIX),
            ],
            middleware=[Middleware(FrontDoor, emulator=self, passthrough_prefix=INSPECTION_PREFIX)],
            exception_handlers={ApiError: answer_error, HTTPException: answer_error},
        )
        app.router.redirect_slashes = False  # "/v1/identify/" is a 404, as on a real API
        return app

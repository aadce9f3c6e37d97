"""Background jobs: reading them off the wire, when one is finished, and waiting for one.

The client's job calls, the bulk pipeline and the command line all use this module, so there is
one way to parse a job, one rule for "finished" (``is_finished``) and one poll policy
(``PollSchedule``, followed by ``wait_until_finished``).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from urllib.parse import quote

import anyio
import attrs
import httpx

from .._errors import APIResponseValidationError
from .._models import Job, JobStatus
from .._retry import RetryPolicy
from .._telemetry import waiting
from .._transport import Transport

logger = logging.getLogger("analytex_async")

JOBS_PATH = "/v1/background_jobs"
FIRST_POLL = 1.0
"""Seconds after a submit (or a wait's start) by which the first poll comes, at most."""
POLL_BASE = 1.0
POLL_SHARE = 0.1
"""Polls are at most ``POLL_BASE`` seconds plus ``POLL_SHARE`` of the job's expected duration
apart: a finished job is seen within about a second plus 10% of its expected time."""
MAX_POLL_INTERVAL = 30.0
"""Seconds between two polls at most, however long the job has to go."""
OVERDUE_POLL_INTERVAL = 10.0
"""Seconds between two polls at most once a job has run past its expected duration (and for a
job whose duration nobody can tell: an events import, a job of unknown size)."""
MIN_POLL_INTERVAL = 0.01
"""Seconds between two polls at least (a job at a test server's very high rate)."""
UNTIMED_FIRST_GAP = 0.25
"""Seconds before polling a job whose duration nobody can tell, at first (then its age)."""

JobFetcher = Callable[[str], Awaitable[Job]]
"""Fetches a job's current state by id (``client.get_job``, or the pipeline's own)."""
PollHook = Callable[[Job], Awaitable[None] | None]
"""Called with each fresh state of a job being waited for."""


def is_finished(job: Job) -> bool:
    """Whether a job has finished: it no longer holds the account's one job slot.

    The one rule, for ``wait_for_job``, the pipeline and the command line. A terminal status
    (``completed``, ``failed``) finishes a job; so does a status this SDK does not know once
    every row is reported complete, so a newer server-side "done" state never hangs a caller.

    Args:
        job: The job's latest known state.

    Returns:
        True when the job is finished.
    """
    if job.is_terminal:
        return True
    return (
        job.status is JobStatus.UNKNOWN
        and job.total_rows is not None
        and job.completed_rows is not None
        and job.completed_rows >= job.total_rows
    )


def is_import_job(job: Job) -> bool:
    """Whether a job is an events import (``/v1/imports``), not a bulk identify.

    Args:
        job: A job as listed.

    Returns:
        True when its ``type`` names an import.
    """
    return "import" in (job.type or "").lower()


def submitted_on_clock(job: Job, now: float, wall_now: float) -> float | None:
    """When the server says ``job`` was submitted, as a reading of the clock ``now`` is on.

    A submit time in the future (the client's clock behind the server's) is taken as ``now``.

    Args:
        job: The job, with its ``submitted_at`` when the server gave one.
        now: The clock's reading (``anyio.current_time()``).
        wall_now: Seconds since the epoch at that moment (``time.time()``).

    Returns:
        The reading, or ``None`` when the job says nothing of its submit.
    """
    if job.submitted_at is None:
        return None
    age = wall_now - job.submitted_at.timestamp()
    return now - max(age, 0.0)


@attrs.define
class PollSchedule:
    """The one poll policy: when to look at a job again (sdk.md, "Job waits").

    The job's time counts from ``origin``: its submit when known, else the wait's start.
    Its expected duration is its rows at ``rows_per_minute``. Between two polls:

    * at most ``1 s + 10%`` of the expected duration, and at most 30 s;
    * once the job has run past its expected duration, at most 10 s (a gap never straddles
      the expected end by more);
    * within those bounds, the poll is aimed at the job's expected completion: its rows still
      to do at its own pace, as measured between polls once it is processing, else at
      ``rows_per_minute``. A job whose rows are all done but whose status is not final yet
      (``pending_refresh``) is looked at again after a gap as long as its age, within the same
      bounds.

    A job nobody can time -- an events import (not paced by ``rows_per_minute``: the API
    documents no rate for imports), or a job of unknown size -- is aimed at by its own pace once
    it shows progress; until then it is polled after a gap as long as its age (0.25 s at
    least), so at about 0.25, 0.5, 1, 2, 4 and 8 s, then every 10 s at most.

    The first poll of a wait comes within 1 s of the submit (``FIRST_POLL``), or at once when
    the state at hand was not just fetched (the wait's start); that is the waiter's part
    (``wait_until_finished``).

    Attributes:
        origin: Clock reading the job's time counts from.
        rows_per_minute: The client's processing rate; ``None`` when the job is not paced by
            it (an events import).
        expected_rows: The rows the job holds, when the caller knows better than the job says
            (the pipeline knows what it sent).
    """

    origin: float
    rows_per_minute: float | None
    expected_rows: int | None = None
    _baseline: tuple[float, int] | None = attrs.field(default=None, init=False)

    def expected_duration(self, job: Job) -> float | None:
        """Seconds the job should take at ``rows_per_minute``; ``None`` when nobody can tell.

        Args:
            job: The job's latest known state.
        """
        rate = self._rate(job)
        rows = self.expected_rows if self.expected_rows is not None else job.total_rows
        return None if rows is None or rate is None else rows * 60.0 / rate

    def _rate(self, job: Job) -> float | None:
        """The rows a minute that pace ``job``: none for an events import."""
        return None if is_import_job(job) else self.rows_per_minute

    def next_delay(self, job: Job, now: float) -> float:
        """Seconds to wait before polling ``job`` again, given its state seen ``now``.

        Args:
            job: The job's latest state (not finished).
            now: The clock's reading when that state was seen.

        Returns:
            The delay.
        """
        duration = self.expected_duration(job)
        if duration is None:
            cap = OVERDUE_POLL_INTERVAL
        else:
            cap = min(POLL_BASE + POLL_SHARE * duration, MAX_POLL_INTERVAL)
            cap = min(cap, max(self.origin + duration - now, 0.0) + OVERDUE_POLL_INTERVAL)
        remaining = self._remaining(job, now, duration)
        if remaining is None:
            remaining = max(now - self.origin, UNTIMED_FIRST_GAP)
        return min(max(remaining, MIN_POLL_INTERVAL), cap)

    def _remaining(self, job: Job, now: float, duration: float | None) -> float | None:
        """Seconds until the job should be complete, or ``None`` when nothing tells."""
        total = job.total_rows if job.total_rows is not None else self.expected_rows
        done = job.completed_rows
        if total is None or done is None:
            if duration is None or self.origin + duration <= now:
                return None
            return self.origin + duration - now
        left = total - done
        if left <= 0:
            return None  # every row done, the status not final yet: nothing to aim at
        pace = self._pace(job, now, done)
        if pace is not None:
            return left / pace
        rate = self._rate(job)
        return None if rate is None else left * 60.0 / rate

    def _pace(self, job: Job, now: float, done: int) -> float | None:
        """Rows a second the job was seen doing, since the first poll that saw it processing."""
        if job.status is not JobStatus.PROCESSING:
            return None
        if self._baseline is None:
            self._baseline = (now, done)
            return None
        then, done_then = self._baseline
        if done <= done_then or now <= then:
            return None
        return (done - done_then) / (now - then)


async def wait_until_finished(
    fetch: JobFetcher,
    job: Job,
    *,
    rows_per_minute: float | None,
    expected_rows: int | None = None,
    submitted_at: float | None = None,
    seen_at: float | None = None,
    on_poll: PollHook | None = None,
    interval: float | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> Job:
    """Poll a job until ``is_finished`` says so, on the one ``PollSchedule``.

    Args:
        fetch: Fetches the job's current state by id.
        job: The job's state at hand (only its id matters when ``seen_at`` is not given).
        rows_per_minute: The client's processing rate; ``None`` for a job it does not pace.
        expected_rows: The rows the job holds, when known better than the job says.
        submitted_at: Clock reading of the job's submit, when the caller made it; else the
            server's ``submitted_at`` counts, or the wait's start.
        seen_at: Clock reading when ``job`` was fetched (or answered the submit): the first
            poll then comes by 1 s after it (sooner when the schedule says so). ``None``: the
            state at hand is not fresh and the job is fetched at once.
        on_poll: Called (sync or async) with each fresh state that is not finished yet.
        interval: A fixed number of seconds between polls instead of the schedule.
        wall_clock: Seconds since the epoch, to place the server's ``submitted_at``.

    Returns:
        The finished job (``failed`` included: what a failure means is the caller's to say).
    """
    with waiting("job"):
        started = anyio.current_time()
        if seen_at is None:
            job = await fetch(job.job_id)
            seen_at = anyio.current_time()
        elif is_finished(job):
            return job
        origin = submitted_at
        if origin is None:
            origin = submitted_on_clock(job, started, wall_clock())
        schedule = PollSchedule(
            min(origin, started) if origin is not None else started,
            rows_per_minute,
            expected_rows,
        )
        first = True
        warned = False
        while not is_finished(job):
            if job.status is JobStatus.UNKNOWN and not warned:
                warned = True
                logger.warning(
                    "job %s has a status this SDK does not know (%r); waiting for it to finish "
                    "or for its rows to complete",
                    job.job_id,
                    job.raw.get("status"),
                )
            if on_poll is not None:
                outcome = on_poll(job)
                if inspect.isawaitable(outcome):
                    await outcome
            if interval is not None:
                delay = interval
            else:
                delay = schedule.next_delay(job, seen_at)
                if first:  # the first poll within 1 s of the state at hand
                    delay = min(delay, FIRST_POLL)
            first = False
            await anyio.sleep_until(seen_at + delay)
            job = await fetch(job.job_id)
            seen_at = anyio.current_time()
        return job


def job_path(job_id: str) -> str:
    """The path of one job, its opaque id percent-encoded (``/`` and ``:`` included).

    Args:
        job_id: The job's id.

    Returns:
        The path below the base URL.
    """
    return f"{JOBS_PATH}/{quote(job_id, safe='')}"


def job_of(response: httpx.Response, what: str, redact: Callable[[str], str]) -> Job:
    """Read a job from a response, liberally (a bare job object or one under ``"job"``).

    Args:
        response: A successful response.
        what: The request, for error messages (e.g. ``"POST /v1/users/bulk_identify"``).
        redact: Removes the API key from text quoted in an error (the body may echo it).

    Returns:
        The job.

    Raises:
        APIResponseValidationError: The body is not JSON, not an object, or has no job id.
    """
    try:
        data = response.json()
    except ValueError:
        raise APIResponseValidationError(
            f"{what} answered {response.status_code} with a body that is not JSON: "
            f"{redact(response.text[:200])!r}",
            response=response,
        ) from None
    if not isinstance(data, Mapping):
        raise APIResponseValidationError(
            f"{what} answered {response.status_code} with a body that is not a job object",
            response=response,
        )
    job = data.get("job")
    if isinstance(job, Mapping) and "job_id" not in data:
        data = job
    try:
        return Job.from_api(data)
    except ValueError as exc:
        raise APIResponseValidationError(f"{what}: {redact(str(exc))}", response=response) from None


def jobs_of(response: httpx.Response) -> list[Job]:
    """Read a job list: a JSON array, or one under ``jobs`` / ``data`` / ``background_jobs``.

    Entries that are not objects or have no job id are skipped.

    Args:
        response: A successful response.

    Returns:
        The jobs, in the server's order.

    Raises:
        APIResponseValidationError: The body is not JSON or holds no list.
    """
    try:
        data = response.json()
    except ValueError:
        raise APIResponseValidationError(
            f"GET {JOBS_PATH} answered with a body that is not JSON", response=response
        ) from None
    if isinstance(data, Mapping):
        data = next((data[k] for k in ("jobs", "data", "background_jobs") if k in data), None)
    if not isinstance(data, list):
        raise APIResponseValidationError(
            f"GET {JOBS_PATH} answered with a body that is not a list of jobs",
            response=response,
        )
    jobs = []
    for item in data:
        if isinstance(item, Mapping):
            try:
                jobs.append(Job.from_api(item))
            except ValueError:
                continue
    return jobs


async def fetch_job(transport: Transport, job_id: str) -> Job:
    """``GET /v1/background_jobs/{job_id}``.

    A 2xx whose body is not a job is asked again, up to the retry policy's ``max_retries``
    times: a poll is safe to repeat, and a server mid-deploy may answer one oddly. Status and
    connection errors were already retried by the transport.

    Args:
        transport: The transport to send with.
        job_id: The job's id.

    Returns:
        The job.

    Raises:
        APIResponseValidationError: Every answer was a 2xx that is not a job.
    """
    path = job_path(job_id)
    attempt = 0
    while True:
        response = await transport.request("GET", path)
        try:
            return job_of(response, f"GET {path}", transport.redact)
        except APIResponseValidationError as exc:
            if attempt >= transport.retry.max_retries:
                exc.attempts = attempt + 1
                raise
        await anyio.sleep(transport.retry.backoff(attempt))
        attempt += 1


async def each_job(
    transport: Transport, *, retry: RetryPolicy | None = None
) -> AsyncGenerator[Job, None]:
    """Every job of ``GET /v1/background_jobs``, page after page, to the list's end.

    The list is documented as paginated without saying how, nor in which order: a ``links``
    object (or list) with a ``next`` link is followed, on the API's own host only (the key
    never goes elsewhere), until a page has no next link, points back to a page already read,
    or holds no job. No page cap: a job older than any cap would be hidden by it (an upload
    whose answer was lost sent twice, a 409's blocking job never found), and the order is the
    server's, so the newest job may be on the last page.

    Args:
        transport: The transport to send with.
        retry: A retry policy for these requests instead of the transport's.

    Yields:
        The jobs, in the server's order.
    """
    path = JOBS_PATH
    seen = {path}
    while True:
        response = await transport.request("GET", path, retry=retry)
        jobs = jobs_of(response)
        for job in jobs:
            yield job
        following = _next_page(response, transport.base_url)
        if following is None or following in seen or not jobs:
            return
        seen.add(following)
        path = following


async def fetch_jobs(transport: Transport, *, retry: RetryPolicy | None = None) -> list[Job]:
    """``GET /v1/background_jobs``: every job of every page (see ``each_job``).

    Args:
        transport: The transport to send with.
        retry: A retry policy for these requests instead of the transport's.

    Returns:
        The jobs, in the server's order.
    """
    return [job async for job in each_job(transport, retry=retry)]


async def find_job(
    transport: Transport, wanted: Callable[[Job], bool], *, retry: RetryPolicy | None = None
) -> Job | None:
    """The first listed job ``wanted`` accepts, reading pages only until it is found.

    Args:
        transport: The transport to send with.
        wanted: Says whether a job is the one sought.
        retry: A retry policy for these requests instead of the transport's.

    Returns:
        The job, or ``None`` when no page of the list holds one.
    """
    async with aclosing(each_job(transport, retry=retry)) as jobs:
        async for job in jobs:
            if wanted(job):
                return job
    return None


def _next_page(response: httpx.Response, base_url: str) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    links = data.get("links") if isinstance(data, Mapping) else None
    target: object = None
    if isinstance(links, Mapping):
        target = links.get("next")
    elif isinstance(links, list):
        target = next(
            (
                link.get("href")
                for link in links
                if isinstance(link, Mapping) and link.get("rel") == "next"
            ),
            None,
        )
    if not isinstance(target, str) or not target:
        return None
    if target.startswith(base_url + "/"):
        return target[len(base_url) :]
    return target if target.startswith("/") and not target.startswith("//") else None

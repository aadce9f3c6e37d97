"""Background jobs: reading them off the wire, when one is finished, and waiting for one.

The client's job calls, the bulk pipeline and the command line all use this module, so there is
one way to parse a job, one rule for "finished" (``is_finished``) and one poll cadence
(``poll_interval``, used by ``wait_until_finished``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from urllib.parse import quote

import anyio
import httpx

from .._errors import APIResponseValidationError
from .._models import Job, JobStatus
from .._retry import RetryPolicy
from .._telemetry import waiting
from .._transport import Transport

logger = logging.getLogger("analytex_async")

JOBS_PATH = "/v1/background_jobs"
MAX_POLL_INTERVAL = 30.0
"""Seconds between two polls of a job at most, however long it has to go."""
MIN_POLL_INTERVAL = 0.01
"""Seconds between two polls at least (a job at a test server's very high rate)."""
UNSIZED_POLL_INTERVAL = 15.0
"""Seconds between polls at most for a job whose size nobody knows (1, 2, 4, 8, then 15)."""

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


def poll_interval(
    job: Job,
    *,
    rows_per_minute: float,
    expected_rows: int | None = None,
    previous: float | None = None,
) -> float:
    """How long to wait before polling ``job`` again: when it should be finished.

    The wait is the job's remaining rows at the processing rate, at most 30 seconds. Its floor is
    a fiftieth of the whole job's expected duration, kept between 10 ms and 1 s: one poll a
    second at most at the real API's 1,200 rows a minute, fine-grained against a fast test
    server. A job whose size nobody knows is polled after 1, 2, 4, 8, then every 15 seconds.

    Args:
        job: The job's latest known state.
        rows_per_minute: The server's processing rate.
        expected_rows: The rows the job holds, when the caller knows better than the job says
            (the pipeline knows what it sent); else ``job.total_rows``.
        previous: The wait before the last poll, for a job of unknown size.

    Returns:
        Seconds to wait.
    """
    total = job.total_rows if job.total_rows is not None else expected_rows
    if total is None:
        return min(2 * previous, UNSIZED_POLL_INTERVAL) if previous else 1.0
    done = job.completed_rows or 0
    remaining = max(total - done, 0) * 60.0 / rows_per_minute
    whole = (expected_rows or total) * 60.0 / rows_per_minute
    floor = min(1.0, max(whole / 50, MIN_POLL_INTERVAL))
    return min(max(remaining, floor), MAX_POLL_INTERVAL)


async def wait_until_finished(
    fetch: JobFetcher,
    job: Job,
    *,
    rows_per_minute: float,
    expected_rows: int | None = None,
    on_poll: PollHook | None = None,
    interval: float | None = None,
) -> Job:
    """Poll a job until ``is_finished`` says so, at the cadence of ``poll_interval``.

    The job is fetched first: the state at hand may be stale, and only a fresh one tells how
    long is left.

    Args:
        fetch: Fetches the job's current state by id.
        job: The job (any state of it; only its id and row counts are used at first).
        rows_per_minute: The server's processing rate, for the cadence.
        expected_rows: The rows the job holds, when known better than the job says.
        on_poll: Called (sync or async) with each fresh state that is not finished yet.
        interval: A fixed number of seconds between polls instead of the cadence.

    Returns:
        The finished job (``failed`` included: what a failure means is the caller's to say).
    """
    with waiting("job"):
        job = await fetch(job.job_id)
        warned = False
        delay: float | None = None
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
            delay = interval or poll_interval(
                job, rows_per_minute=rows_per_minute, expected_rows=expected_rows, previous=delay
            )
            await anyio.sleep(delay)
            job = await fetch(job.job_id)
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

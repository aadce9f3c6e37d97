"""What the server completed, kept fresh for a person watching an import.

The pipeline polls a job on its schedule (up to 30 s apart for a long job at 1,200 rows a
minute), so its count of completed rows can stand still a while after the server moved on.
While a display is shown, the command line keeps its own eye on the import's jobs: it spots
each one as the server accepts a batch, and each later state the pipeline's own polls bring (a
response hook on the HTTP client), and, while one is unfinished, asks for it at most every
``SERVER_REFRESH`` seconds. The pipeline's schedule is untouched; only the display reads these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import httpx

from .._bulk._jobs import job_of
from .._errors import AnalytexError
from .._models import Job
from ._progress import ImportWatch

SERVER_REFRESH = 10.0
"""Seconds between two looks at the import's unfinished jobs, at most."""
SUBMIT_PATH_ENDS = ("/bulk_identify", "/v1/imports")
"""The uploads whose accepted answer is one of the import's jobs."""
JOB_PATH_PART = "/v1/background_jobs/"

# The library's own defaults for the client it makes itself, kept here for the one it is given.
REQUEST_TIMEOUT = 30.0
CONNECTIONS = 16


def job_spotter(watch: ImportWatch) -> Callable[[httpx.Response], Awaitable[None]]:
    """An httpx response hook that hands the import's jobs to ``watch`` as the wire shows them.

    Every job the server accepts (a bulk identify or an events import upload) is one of the
    import's; every later answer about one of those (the pipeline's own polls) refreshes it.
    The display then shows each state of a job as soon as the pipeline has it, never an older
    one beside a newer count.

    Args:
        watch: The import's watch.
    """

    async def spot(response: httpx.Response) -> None:
        request = response.request
        path = request.url.path
        if not response.is_success:
            return
        submit = request.method == "POST" and path.endswith(SUBMIT_PATH_ENDS)
        if not submit and not (request.method == "GET" and JOB_PATH_PART in path):
            return
        await response.aread()
        try:
            job = job_of(response, f"{request.method} {path}", lambda text: text)
        except AnalytexError:
            return  # the pipeline reports a body it cannot read; the display does without it
        if submit or job.job_id in watch.jobs:
            watch.saw_job(job)

    return spot


@asynccontextmanager
async def spotting_http_client(
    base_url: str, watch: ImportWatch
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for ``AsyncAnalytex(http_client=...)`` that spots the import's jobs.

    It is set up as the library sets up its own (timeout, no redirects, no proxy from the
    environment for plain ``http://``, which only ever goes to loopback), plus the hook.

    Args:
        base_url: The API's base URL, as resolved.
        watch: Receives each job the server accepts.
    """
    async with httpx.AsyncClient(
        timeout=REQUEST_TIMEOUT,
        follow_redirects=False,
        trust_env=not base_url.startswith("http://"),
        limits=httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS),
        event_hooks={"response": [job_spotter(watch)]},
    ) as http_client:
        yield http_client


async def keep_jobs_fresh(
    watch: ImportWatch,
    get_job: Callable[[str], Awaitable[Job]],
    on_change: Callable[[], None],
    *,
    interval: float | None = None,
) -> None:
    """Every ``interval`` seconds, ask for the import's unfinished jobs; until cancelled.

    Nothing is asked while every known job is finished. A failed look is skipped: the display
    must never stop an import the pipeline would finish.

    Args:
        watch: The import's watch (its ``jobs`` are refreshed).
        get_job: Fetches a job (``client.get_job``).
        on_change: Called after each look (the display's ``redraw``).
        interval: Seconds between two looks (``SERVER_REFRESH`` by default).
    """
    pause = SERVER_REFRESH if interval is None else interval
    while True:
        await anyio.sleep(pause)
        for job in watch.unfinished_jobs():
            try:
                watch.saw_job(await get_job(job.job_id))
            except AnalytexError:
                continue
        on_change()

"""Background jobs on the wire: fetching them and reading them out of responses.

Shared by the client's job calls and the bulk pipeline, so there is one way to parse a job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import quote

import httpx

from .._errors import APIError
from .._models import Job
from .._transport import Transport

JOBS_PATH = "/v1/background_jobs"


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
        APIError: The body is not JSON, not an object, or has no job id.
    """
    try:
        data = response.json()
    except ValueError:
        raise APIError(
            f"{what} answered {response.status_code} with a body that is not JSON: "
            f"{redact(response.text[:200])!r}",
            request=response.request,
        ) from None
    if not isinstance(data, Mapping):
        raise APIError(
            f"{what} answered {response.status_code} with a body that is not a job object",
            request=response.request,
        )
    job = data.get("job")
    if isinstance(job, Mapping) and "job_id" not in data:
        data = job
    try:
        return Job.from_api(data)
    except ValueError as exc:
        raise APIError(f"{what}: {redact(str(exc))}", request=response.request) from None


def jobs_of(response: httpx.Response) -> list[Job]:
    """Read a job list: a JSON array, or one under ``jobs`` / ``data`` / ``background_jobs``.

    Entries that are not objects or have no job id are skipped.

    Args:
        response: A successful response.

    Returns:
        The jobs, in the server's order.

    Raises:
        APIError: The body is not JSON or holds no list.
    """
    try:
        data = response.json()
    except ValueError:
        raise APIError(
            f"GET {JOBS_PATH} answered with a body that is not JSON", request=response.request
        ) from None
    if isinstance(data, Mapping):
        data = next((data[k] for k in ("jobs", "data", "background_jobs") if k in data), None)
    if not isinstance(data, list):
        raise APIError(
            f"GET {JOBS_PATH} answered with a body that is not a list of jobs",
            request=response.request,
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

    Args:
        transport: The transport to send with.
        job_id: The job's id.

    Returns:
        The job.
    """
    path = job_path(job_id)
    return job_of(await transport.request("GET", path), f"GET {path}", transport.redact)


async def fetch_jobs(transport: Transport) -> list[Job]:
    """``GET /v1/background_jobs``.

    Args:
        transport: The transport to send with.

    Returns:
        The jobs.
    """
    return jobs_of(await transport.request("GET", JOBS_PATH))

"""The exception hierarchy: one class per kind of failure a caller may want to catch.

Every message says what failed and where, and none of them ever contains the API key: the
transport redacts it from anything the server echoes back before a message is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import httpx

    from ._exports._models import Export
    from ._models import ImportResult, Job


@attrs.frozen
class ErrorDetail:
    """One entry of the API's error body ``{"errors": [{...}]}``.

    Attributes:
        error: The short error name, e.g. ``"invalid_payload"``.
        error_code: The machine-readable code, when the server sends one.
        message: The human-readable explanation.
        details: Anything else the server attached (often a mapping), or ``None``.
    """

    error: str | None = None
    error_code: str | None = None
    message: str | None = None
    details: Any = None

    def __str__(self) -> str:
        parts = [p for p in (self.message, self.error, self.error_code) if p]
        return parts[0] if parts else "unspecified error"


class AnalytexError(Exception):
    """The base of every exception this package raises on purpose."""


class ConfigurationError(AnalytexError):
    """A setting is missing or wrong (API key, base URL, region, a numeric option)."""


class ValidationError(AnalytexError, ValueError):
    """Input was refused before any request was sent.

    Attributes:
        field: The offending field (``"user_id"``, ``"metadata.plan"``, ...), when known.
        position: The record's zero-based position in the call's input, when it came from a list
            or a stream of records.
        line: The one-based line number in the source file, when the record came from a file.
        result: For an import stopped by ``on_invalid="raise"`` or an unreadable source, what
            was read, sent and accepted before it stopped; ``None`` elsewhere.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        position: int | None = None,
        line: int | None = None,
    ) -> None:
        self.field = field
        self.position = position
        self.line = line
        self.result: ImportResult | None = None
        where = []
        if position is not None:
            where.append(f"record {position}")
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        self.reason = message
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class JobFailedError(AnalytexError):
    """A background job ended with status ``failed``.

    Attributes:
        job: The job in its final state.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        rows = ""
        if job.total_rows is not None:
            rows = f" after {job.completed_rows or 0} of {job.total_rows} rows"
        super().__init__(f"job {job.job_id} failed{rows}")


class QueueFullError(AnalytexError):
    """Background delivery's queue is full and ``DeliveryPolicy(on_full="raise")``.

    Raised in the caller of ``client.background.identify`` / ``identify_company`` / ``track``;
    the record was not queued.
    """


class GovernorUnavailableError(AnalytexError):
    """A shared governor's store (Redis) cannot be used: unreachable, refused, or misbehaving.

    Raised by ``RedisGovernor`` and ``RedisRequestWindow`` with ``fallback="error"`` (the
    default). It is an outage, not a usage error: the command line exits 1 on it, not 2. An
    import that meets it stops with ``ImportAbortedError``, whose ``__cause__`` is this error and
    whose ``result`` lists what was accepted.
    """


class APIError(AnalytexError):
    """A request to the API did not succeed.

    Attributes:
        message: What happened, in one line.
        request: The last ``httpx.Request`` sent, when there was one.
        attempts: How many times the request was sent in all (1 when it was not retried).
    """

    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request | None = None,
        attempts: int = 1,
    ) -> None:
        self.message = message
        self.request = request
        self.attempts = attempts
        super().__init__(message)


class ImportAbortedError(APIError):
    """A bulk import stopped on a failure it could not retry.

    The final failure is chained as ``__cause__``.

    Attributes:
        result: What was read, sent and accepted before the import stopped, including the jobs
            of every accepted batch.
    """

    def __init__(self, message: str, *, result: ImportResult) -> None:
        self.result = result
        super().__init__(message)


class APIResponseValidationError(APIError):
    """The server answered 2xx with a body that is not what the API documents.

    For example a job object without a ``job_id``. Reads that are safe to repeat (job polls)
    are asked again first, up to the client's ``max_retries``; this is raised after that.

    Attributes:
        response: The response whose body did not fit.
    """

    def __init__(self, message: str, *, response: httpx.Response, attempts: int = 1) -> None:
        self.response = response
        super().__init__(message, request=response.request, attempts=attempts)


class APIConnectionError(APIError):
    """No response came back: the connection failed, was reset, or the read did not finish.

    Attributes:
        request_sent: Whether the request may have reached the server (``False`` only when no
            connection was made): the bulk pipeline then looks for the job its upload may
            have created before sending it again.
    """

    request_sent: bool = True


class APITimeoutError(APIConnectionError):
    """The request timed out before a response came back."""


class APIStatusError(APIError):
    """The server answered with an error status.

    Attributes:
        status_code: The HTTP status code.
        response: The ``httpx.Response``.
        errors: The parsed error list of the body (empty when the body had none).
        request_id: The server's request id header, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        errors: list[ErrorDetail] | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.status_code = response.status_code
        self.response = response
        self.errors = errors or []
        self.request_id = request_id
        super().__init__(message, request=response.request, attempts=attempts)


class BadRequestError(APIStatusError):
    """400: the server refused the payload."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid."""


class PermissionDeniedError(APIStatusError):
    """403: the API key lacks permission for this call."""


class NotFoundError(APIStatusError):
    """404: the resource (usually a job id) does not exist."""


class ConflictError(APIStatusError):
    """409: a bulk job is already running for this account."""


class PayloadTooLargeError(APIStatusError):
    """413: more than 10,000 records or more than 50 MB in one request."""


class RateLimitError(APIStatusError):
    """429: the account's rate limit was exceeded.

    Attributes:
        retry_after: The server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        errors: list[ErrorDetail] | None = None,
        request_id: str | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            message, response=response, errors=errors, request_id=request_id, attempts=attempts
        )


class InternalServerError(APIStatusError):
    """5xx: the server failed."""


STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
}


def error_class_for(status_code: int) -> type[APIStatusError]:
    """Return the exception class for an error status code.

    Args:
        status_code: An HTTP status code of 300 or more.

    Returns:
        The most specific ``APIStatusError`` subclass for the code.
    """
    if status_code >= 500:
        return InternalServerError
    return STATUS_ERRORS.get(status_code, APIStatusError)


class ExportFailedError(AnalytexError):
    """An export (``client.wait_for_export`` and the calls that wait) ended ``failed``.

    Attributes:
        export: The export in its final state.
    """

    def __init__(self, export: Export) -> None:
        self.export = export
        reason = export.raw.get("error") or export.raw.get("message")
        detail = f": {str(reason)[:300]}" if isinstance(reason, str) and reason else ""
        super().__init__(f"export {export.job_id} failed{detail}")

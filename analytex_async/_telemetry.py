"""Spans, metrics and log fields, for the tools an application already runs (sdk.md).

Recorded: a ``CLIENT`` span per API call (``ApiCall``), an ``INTERNAL`` span per import batch
(``BatchTrace``, with its waits: ``waiting``), the counters and histograms of ``_otel`` (by
``count`` and ``waiting``), and each request's log fields; never the key, never a body. Where
OpenTelemetry is found, and what it costs when no SDK is configured, is ``_otel``'s part.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import anyio

from ._otel import Span, end_span, error_type, instruments, start_span, tracer

logger = logging.getLogger("analytex_async")

JOB_PREFIX = "/v1/background_jobs/"
JOB_ROUTE = "/v1/background_jobs/{job_id}"
Waited = Literal["rate", "job"]

_batch: ContextVar[BatchTrace | None] = ContextVar("analytex_batch", default=None)


def route_of(path: str) -> str:
    """The route template of a request path: a job's id becomes ``{job_id}``.

    Args:
        path: The path below the base URL.

    Returns:
        The template, low in cardinality (for span names and metric attributes).
    """
    path = path.partition("?")[0]
    return JOB_ROUTE if path.startswith(JOB_PREFIX) else path


@lru_cache(maxsize=16)
def _server(base_url: str) -> tuple[str, int | None]:
    parts = urlsplit(base_url)
    return parts.hostname or "", parts.port


class ApiCall:
    """One API call, its attempts and retries: a span, the request metrics, the log fields.

    Used by the transport as ``with ApiCall(method, path, base_url) as call:`` around its retry
    loop; ``attempted`` and ``retrying`` return each log record's ``extra``.

    Args:
        method: The HTTP method.
        path: The path below the base URL.
        base_url: The API's base URL.
    """

    __slots__ = ("_span", "base_url", "method", "path", "rows")

    def __init__(self, method: str, path: str, base_url: str) -> None:
        self.method = method
        self.path = path
        self.base_url = base_url
        self._span: Span | None = None
        batch = _batch.get()
        self.rows = batch.rows if batch is not None and batch.path == path else None

    def __enter__(self) -> ApiCall:
        found = tracer()
        if found is None:
            return self
        route = route_of(self.path)
        host, port = _server(self.base_url)
        attributes: dict[str, Any] = {
            "http.request.method": self.method,
            "url.template": route,
            "url.full": self.base_url + self.path,
            "server.address": host,
        }
        if port is not None:
            attributes["server.port"] = port
        if self.rows is not None:
            attributes["analytex.batch.rows"] = self.rows
        self._span = start_span(found, f"{self.method} {route}", "CLIENT", attributes)
        return self

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if self._span is not None:
            end_span(self._span, exc)

    def _metric_attributes(self, status: int | None, error: BaseException | None) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "http.request.method": self.method,
            "url.template": route_of(self.path),
        }
        if status is not None:
            attributes["http.response.status_code"] = status
        failure = error_type(error, status)
        if failure is not None:
            attributes["error.type"] = failure
        return attributes

    def attempted(
        self,
        attempt: int,
        status: int | None,
        request_id: str | None,
        error: BaseException | None = None,
    ) -> dict[str, object]:
        """Note one attempt's outcome.

        Args:
            attempt: The attempt's number, from 1.
            status: The response's status, or ``None`` when none came back.
            request_id: The server's request id (redacted), if it sent one.
            error: The transport failure, when no response came back.

        Returns:
            The ``extra`` of the attempt's log record.
        """
        fields = self._fields(attempt, status, request_id)
        batch = _batch.get()
        if batch is not None and self.rows is not None:
            batch.request = fields
        found = instruments()
        if found is not None:
            found.counter["analytex.requests"].add(1, self._metric_attributes(status, error))
        if self._span is not None:
            span = self._span[0]
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if request_id is not None:
                span.set_attribute("analytex.request_id", request_id)
            if attempt > 1:
                span.set_attribute("http.request.resend_count", attempt - 1)
        return fields

    def retrying(self, error: BaseException, attempt: int, delay: float) -> dict[str, object]:
        """Note a retry about to wait ``delay`` seconds.

        Args:
            error: The failure that is retried (an ``APIError``).
            attempt: The number of the attempt that failed.
            delay: Seconds before the next attempt.

        Returns:
            The ``extra`` of the retry's log record.
        """
        status = getattr(error, "status_code", None)
        request_id = getattr(error, "request_id", None)
        found = instruments()
        if found is not None:
            found.counter["analytex.retries"].add(1, self._metric_attributes(status, error))
        if self._span is not None:
            self._span[0].add_event(
                "retry",
                {
                    "error.type": error_type(error, status) or "",
                    "analytex.retry.attempt": attempt,
                    "analytex.retry.delay": delay,
                },
            )
        return self._fields(attempt, status, request_id)

    def _fields(
        self, attempt: int, status: int | None, request_id: str | None
    ) -> dict[str, object]:
        fields: dict[str, object] = {
            "method": self.method,
            "path": self.path,
            "status": status,
            "attempt": attempt,
            "request_id": request_id,
        }
        if self.rows is not None:
            fields["rows"] = self.rows
        elif self.path.startswith(JOB_PREFIX):
            fields["job_id"] = unquote(self.path[len(JOB_PREFIX) :].partition("?")[0])
        return fields


class BatchTrace:
    """One import batch, from waiting for its slot to the server's job: a span and an INFO line.

    Used by the pipeline as ``with BatchTrace(...) as trace:`` around delivering a batch, then
    ``trace.finished(job_id)``. The waits inside it (``waiting``) and the upload's requests
    (``ApiCall``) find it through a context variable.

    Args:
        kind: ``"user"``, ``"company"`` or ``"event"``.
        path: The upload's path (its requests are the batch's).
        rows: Records in the batch.
        size: Its bytes (NDJSON lines).
    """

    def __init__(self, kind: str, path: str, rows: int, size: int) -> None:
        self.kind = kind
        self.path = path
        self.rows = rows
        self.size = size
        self.waited = {"rate": 0.0, "job": 0.0}
        self.request: dict[str, object] = {}
        self._span: Span | None = None
        self._token: Token[BatchTrace | None] | None = None

    def __enter__(self) -> BatchTrace:
        self._token = _batch.set(self)
        found = tracer()
        if found is None:
            return self
        self._span = start_span(
            found,
            "analytex.import.batch",
            "INTERNAL",
            {
                "analytex.record.kind": self.kind,
                "analytex.batch.rows": self.rows,
                "analytex.batch.bytes": self.size,
            },
        )
        return self

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if self._token is not None:
            _batch.reset(self._token)
        if self._span is not None:
            span = self._span[0]
            span.set_attribute("analytex.batch.rate_wait", self.waited["rate"])
            span.set_attribute("analytex.batch.job_wait", self.waited["job"])
            end_span(self._span, exc)

    def finished(self, job_id: str | None) -> None:
        """The server made job ``job_id`` of the batch (``None``: it was too large, and split).

        Args:
            job_id: The job's id, or ``None``.
        """
        if self._span is not None and job_id is not None:
            self._span[0].set_attribute("analytex.job.id", job_id)
        count("analytex.rows.sent", self.kind, self.rows if job_id is not None else 0)
        logger.info(
            "%s batch of %d rows (%d bytes) %s; waited %.2f s for the rate, %.2f s for the job",
            self.kind,
            self.rows,
            self.size,
            f"accepted as job {job_id}" if job_id else "too large for the server: split",
            self.waited["rate"],
            self.waited["job"],
            extra={**self.request, "rows": self.rows, "job_id": job_id},
        )


class waiting:
    """Time a wait for the rate or for a job: its histogram, and the current batch's span.

    Args:
        what: ``"rate"`` (the row governor) or ``"job"`` (a job holding the slot).

    Examples:
        <!-- example: setup: from analytex_async._telemetry import waiting -->
        ```python
        from analytex_async.governors import RowGovernor

        governor = RowGovernor(60_000)
        with waiting("rate"):
            await governor.acquire(100)
        ```
    """

    __slots__ = ("_started", "what")

    def __init__(self, what: Waited) -> None:
        self.what = what
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = anyio.current_time()

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        seconds = anyio.current_time() - self._started
        batch = _batch.get()
        if batch is not None:
            batch.waited[self.what] += seconds
        found = instruments()
        if found is not None:
            histogram = found.histogram[f"analytex.{self.what}.wait"]
            attributes = {"analytex.record.kind": batch.kind} if batch is not None else {}
            histogram.record(seconds, attributes)


def count(name: str, kind: str, amount: int = 1) -> None:
    """Add to one of the ``COUNTERS``, by the kind of record.

    Args:
        name: The counter's name (``"analytex.rows.rejected"``...).
        kind: The kind of record: ``"user"``, ``"company"``, ``"event"`` for rows;
            ``"identify"``, ``"identify_company"``, ``"track"`` for background records.
        amount: How many.
    """
    found = instruments() if amount > 0 else None
    if found is not None:
        found.counter[name].add(amount, {"analytex.record.kind": kind})

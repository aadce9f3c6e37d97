"""Spans, metrics and log fields, for the tools an application already runs (sdk.md).

OpenTelemetry is optional (the ``otel`` extra installs ``opentelemetry-api`` only): it is
imported on first use, and nothing more happens when it is not installed. Tracers and
instruments are looked up from the global providers every time they are used (and kept per
provider), so an application that configures OpenTelemetry after creating a client still gets
them; while no SDK is configured (the API's proxy and no-op providers) a provider check per call
is all it costs. Recorded: a ``CLIENT`` span per API call (``ApiCall``), an ``INTERNAL`` span
per import batch (``BatchTrace``, with its waits: ``waiting``), the ``COUNTERS``, the
``HISTOGRAMS`` and the background queue's depth (``watch_queue``); never the key, never a body.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterator
from contextvars import ContextVar, Token
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import anyio

from ._version import __version__

logger = logging.getLogger("analytex_async")

SCOPE = "analytex_async"
"""The instrumentation scope of every tracer and meter."""
JOB_PREFIX = "/v1/background_jobs/"
JOB_ROUTE = "/v1/background_jobs/{job_id}"
WAITS = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
"""Histogram boundaries in seconds: from an idle governor to a long job ahead."""

Waited = Literal["rate", "job"]


class _Api:
    """The OpenTelemetry API modules, once imported; ``None`` when it is not installed."""

    def __init__(self) -> None:
        self.loaded = False
        self.trace: Any = None
        self.metrics: Any = None
        self.context: Any = None
        self.quiet: dict[str, tuple[type, ...]] = {}
        self.unset: dict[str, Any] = {}  # which -> (module, name of its global provider)

    def load(self) -> None:
        """Import the API, once; leave the fields ``None`` when it is not installed."""
        self.loaded = True
        try:
            from opentelemetry import context, metrics, trace  # noqa: PLC0415 -- optional
        except ImportError:
            return
        self.trace, self.metrics, self.context = trace, metrics, context
        state = getattr(metrics, "_internal", None)  # where the API keeps its globals
        proxy = getattr(state, "_ProxyMeterProvider", metrics.NoOpMeterProvider)
        self.quiet = {
            "trace": (trace.ProxyTracerProvider, trace.NoOpTracerProvider),
            "metrics": (metrics.NoOpMeterProvider, proxy),
        }
        # get_*_provider() reads os.environ on every call while no provider is set (it costs
        # more than all the rest): while the API's global is None, there is nothing to look up.
        environ = ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")
        if not any(name in os.environ for name in environ):
            self.unset = {
                "trace": (trace, "_TRACER_PROVIDER"),
                "metrics": (state, "_METER_PROVIDER"),
            }


_api = _Api()
_providers: dict[str, tuple[object, Any]] = {}  # "trace"/"metrics" -> (provider, ours)
_queues: weakref.WeakSet[Any] = weakref.WeakSet()
_batch: ContextVar[BatchTrace | None] = ContextVar("analytex_batch", default=None)


def use_opentelemetry(enabled: bool = True) -> None:
    """Turn OpenTelemetry on (imported again on next use) or off, as if it were not installed.

    For benchmarks and tests that compare both in one process; applications never need it.

    Args:
        enabled: ``False`` behaves as if ``opentelemetry`` were absent.
    """
    global _api  # noqa: PLW0603 -- one switch for the whole process
    _providers.clear()
    _api = _Api()
    _api.loaded = not enabled


def load_opentelemetry() -> None:
    """Import OpenTelemetry's API now, if it is installed and not imported yet.

    A client calls it when it is made (at an application's start-up): the import takes some
    milliseconds, which a first request must not spend with the event loop blocked.
    """
    if not _api.loaded:
        _api.load()


def opentelemetry_available() -> bool:
    """Whether the OpenTelemetry API can be used (installed, and not turned off)."""
    if not _api.loaded:
        _api.load()
    return _api.trace is not None


def tracer() -> Any | None:
    """The tracer of the global provider, or ``None`` when no SDK records spans."""
    return _lookup("trace")


def instruments() -> Instruments | None:
    """The instruments of the global meter provider, or ``None`` when no SDK records them."""
    found: Instruments | None = _lookup("metrics")
    return found


def _lookup(which: Literal["trace", "metrics"]) -> Any:
    api = _api
    if not api.loaded:
        api.load()
    if api.trace is None:
        return None
    unset = api.unset.get(which)
    if unset is not None and getattr(unset[0], unset[1], False) is None:
        return None
    module = api.trace if which == "trace" else api.metrics
    provider = module.get_tracer_provider() if which == "trace" else module.get_meter_provider()
    if isinstance(provider, api.quiet[which]):
        return None
    known = _providers.get(which)
    if known is None or known[0] is not provider:
        ours = (
            provider.get_tracer(SCOPE, __version__)
            if which == "trace"
            else Instruments(provider.get_meter(SCOPE, __version__))
        )
        known = _providers[which] = (provider, ours)
    return known[1]


COUNTERS = {
    "analytex.rows.sent": ("{row}", "Rows in batches the server accepted"),
    "analytex.rows.rejected": ("{row}", "Records refused (invalid, or too large for the server)"),
    "analytex.rows.unchanged": ("{row}", "Records a sync left out: the state holds them as is"),
    "analytex.requests": ("{request}", "HTTP requests sent, every attempt counted"),
    "analytex.retries": ("{retry}", "Requests retried after a failure"),
    "analytex.background.dropped": ("{record}", "Background records dropped"),
    "analytex.background.spilled": ("{record}", "Background records written to the outbox"),
}
"""Every counter: name -> (unit, description)."""
HISTOGRAMS = {
    "analytex.rate.wait": "Seconds a batch waited for the row governor",
    "analytex.job.wait": "Seconds an import waited for a job holding the slot to finish",
}
"""Every histogram (in seconds): name -> description."""
QUEUE_DEPTH = "analytex.background.queue_depth"


class Instruments:
    """Every metric instrument of the SDK, made from one meter, by name.

    Args:
        meter: An OpenTelemetry ``Meter``.
    """

    def __init__(self, meter: Any) -> None:
        self.counter = {
            name: meter.create_counter(name, unit=unit, description=description)
            for name, (unit, description) in COUNTERS.items()
        }
        self.histogram = {
            name: _histogram(meter, name, description) for name, description in HISTOGRAMS.items()
        }
        meter.create_observable_gauge(
            QUEUE_DEPTH,
            callbacks=[_observe_depth],
            unit="{record}",
            description="Background records waiting or in flight, over every open client",
        )


def _histogram(meter: Any, name: str, description: str) -> Any:
    try:
        return meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=WAITS
        )
    except TypeError:  # an API before 1.23 takes no advice on buckets
        return meter.create_histogram(name, unit="s", description=description)


def _observe_depth(_options: object) -> Iterator[Any]:
    if _api.metrics is None:  # turned off since the gauge was made
        return
    yield _api.metrics.Observation(sum(queue.pending for queue in list(_queues)))


def watch_queue(queue: Any) -> None:
    """Count a delivery queue in ``analytex.background.queue_depth`` while it lives.

    Args:
        queue: A ``DeliveryQueue`` (held weakly; its ``pending`` is read).
    """
    _queues.add(queue)


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


def _error_type(error: BaseException | None, status: int | None) -> str | None:
    if status is not None and status >= 400:
        return str(status)
    if error is None:
        return None
    status = getattr(error, "status_code", None)
    return str(status) if isinstance(status, int) else type(error).__name__


def _start(found: Any, name: str, kind: str, attributes: dict[str, Any]) -> tuple[Any, Token[Any]]:
    """Start a span with tracer ``found``, as the current one."""
    trace = _api.trace
    span = found.start_span(name, kind=getattr(trace.SpanKind, kind), attributes=attributes)
    return span, _api.context.attach(trace.set_span_in_context(span))


def _end(started: tuple[Any, Token[Any]], error: BaseException | None) -> None:
    span, token = started
    _api.context.detach(token)
    if error is not None and isinstance(error, Exception):
        error_type = _error_type(error, None)
        span.set_attribute("error.type", error_type)
        span.set_status(_api.trace.Status(_api.trace.StatusCode.ERROR, error_type))
    span.end()


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
        self._span: tuple[Any, Token[Any]] | None = None
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
        self._span = _start(found, f"{self.method} {route}", "CLIENT", attributes)
        return self

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if self._span is not None:
            _end(self._span, exc)

    def _metric_attributes(self, status: int | None, error: BaseException | None) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "http.request.method": self.method,
            "url.template": route_of(self.path),
        }
        if status is not None:
            attributes["http.response.status_code"] = status
        error_type = _error_type(error, status)
        if error_type is not None:
            attributes["error.type"] = error_type
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
                    "error.type": _error_type(error, status) or "",
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
        self._span: tuple[Any, Token[Any]] | None = None
        self._token: Token[BatchTrace | None] | None = None

    def __enter__(self) -> BatchTrace:
        self._token = _batch.set(self)
        found = tracer()
        if found is None:
            return self
        self._span = _start(
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
            _end(self._span, exc)

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

"""Where the SDK finds OpenTelemetry: the API (optional), the global providers, the instruments.

OpenTelemetry is optional (the ``otel`` extra installs ``opentelemetry-api`` only): it is
imported when a client is made (``load_opentelemetry``), and nothing more happens when it is not
installed. Tracers and instruments are looked up from the global providers every time they are
used (and kept per provider), so an application that configures OpenTelemetry after creating a
client still gets them; while no SDK is configured (the API's proxy and no-op providers) a
provider check per call is all it costs. What the SDK records with them is in ``_telemetry``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextvars import Token
from typing import Any, Literal

from ._version import __version__

Span = tuple[Any, Token[Any]]
"""A started span, and the token that made it the current one."""

SCOPE = "analytex_async"
"""The instrumentation scope of every tracer and meter."""
WAITS = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
"""Histogram boundaries in seconds: from an idle governor to a long job ahead."""


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
    "analytex.rate.wait": "Seconds waited for the rate: the row governor or a request window",
    "analytex.job.wait": "Seconds waited for a job to finish",
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


def error_type(error: BaseException | None, status: int | None) -> str | None:
    if status is not None and status >= 400:
        return str(status)
    if error is None:
        return None
    status = getattr(error, "status_code", None)
    return str(status) if isinstance(status, int) else type(error).__name__


def start_span(
    found: Any, name: str, kind: str, attributes: dict[str, Any]
) -> tuple[Any, Token[Any]]:
    """Start a span with tracer ``found``, as the current one."""
    trace = _api.trace
    span = found.start_span(name, kind=getattr(trace.SpanKind, kind), attributes=attributes)
    return span, _api.context.attach(trace.set_span_in_context(span))


def end_span(started: Span, error: BaseException | None) -> None:
    span, token = started
    _api.context.detach(token)
    if error is not None and isinstance(error, Exception):
        kind = error_type(error, None)
        span.set_attribute("error.type", kind)
        span.set_status(_api.trace.Status(_api.trace.StatusCode.ERROR, kind))
    span.end()

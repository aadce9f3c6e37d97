"""Serving the emulator over a real socket with uvicorn (an optional dependency)."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Collection, Iterator

import anyio
import sniffio

from ._app import Emulator
from ._faults import ConnectionDropped

__all__ = ["run", "serve"]

_STARTUP_TIMEOUT = 10.0


class _HideDroppedConnections(logging.Filter):
    """Drops uvicorn's traceback for a connection a fault dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


@contextlib.contextmanager
def _quiet_dropped_connections() -> Iterator[None]:
    server_log = logging.getLogger("uvicorn.error")
    log_filter = _HideDroppedConnections()
    server_log.addFilter(log_filter)
    try:
        yield
    finally:
        server_log.removeFilter(log_filter)


def _listening_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def serve(
    emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``emulator`` with uvicorn on a loopback socket for the duration of the block.

    The server runs as a task of an anyio task group owned by the block, and stops when the
    block exits. It needs the asyncio backend (uvicorn is asyncio-only); under trio, drive
    ``emulator.app`` in process with ``httpx.ASGITransport`` instead.

    Args:
        emulator: The emulator to serve.
        host: Address to bind; loopback by default.
        port: Port to bind; ``0`` picks a free one.

    Yields:
        The base URL, e.g. ``"http://127.0.0.1:54321"``.

    Raises:
        RuntimeError: When not running under asyncio, or when the server fails to start.

    Examples:
        >>> async def main() -> None:
        ...     async with serve(Emulator()) as base_url:
        ...         print(base_url)
    """
    if sniffio.current_async_library() != "asyncio":
        raise RuntimeError(
            "serve() runs uvicorn, which needs asyncio; under trio use "
            "httpx.ASGITransport(app=emulator.app)"
        )
    import uvicorn  # noqa: PLC0415 - optional dependency, needed only to serve

    class EmbeddedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # The host program owns its signals: Ctrl-C must reach it, not just stop us.
            yield

    sock = _listening_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    config = uvicorn.Config(
        emulator.app,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = EmbeddedServer(config)
    stopped = anyio.Event()

    async def run_server() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            stopped.set()

    body_error: Exception | None = None
    with _quiet_dropped_connections(), contextlib.closing(sock):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run_server)
            with anyio.fail_after(_STARTUP_TIMEOUT):
                while not server.started:
                    if stopped.is_set():
                        raise RuntimeError("the emulator's server stopped during startup")
                    await anyio.sleep(0.005)
            try:
                yield f"http://{url_host}:{bound_port}"
            except Exception as exc:
                # Re-raised below, after the server stopped, so the task group does not wrap it.
                body_error = exc
            finally:
                server.should_exit = True
    if body_error is not None:
        raise body_error


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    rows_per_minute: float = 1200,
    *,
    api_keys: Collection[str] | None = None,
    emulator: Emulator | None = None,
    log_level: str = "info",
) -> None:
    """Serve an emulator until interrupted (Ctrl-C): the ``analytex-async emulator`` command.

    Args:
        host: Address to bind; loopback by default.
        port: Port to bind.
        rows_per_minute: Bulk processing rate, when no ``emulator`` is given.
        api_keys: The only keys accepted (any other gets 401 ``invalid_api_key``); ``None``
            accepts any non-empty key. For a configured ``emulator``, pass them to it instead.
        emulator: A configured emulator to serve instead of a default one.
        log_level: uvicorn's log level (the API key is never logged).

    Raises:
        ValueError: When both ``api_keys`` and ``emulator`` are given (the emulator's own
            setting would silently win), or ``api_keys`` holds an empty key.
    """
    if emulator is not None and api_keys is not None:
        raise ValueError("give api_keys to the Emulator you pass, not to run()")
    import uvicorn  # noqa: PLC0415 - optional dependency, needed only to serve

    served = (
        emulator
        if emulator is not None
        else Emulator(rows_per_minute=rows_per_minute, api_keys=api_keys)
    )
    with _quiet_dropped_connections():
        uvicorn.run(served.app, host=host, port=port, lifespan="off", log_level=log_level)

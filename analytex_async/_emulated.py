"""A client wired to an in-process emulator: ``EmulatedAnalytex`` (public in ``testing``).

Its own module so that both faces of the test helpers use it without importing each other:
``analytex_async.testing`` (what users import) re-exports it, and the pytest plugin
(``_pytest_plugin``, which ``testing`` re-exports the fixtures of) builds its fixtures on it.
The emulator, which needs the ``testing`` extra, is imported on first use only.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from ._client import AsyncAnalytex
from ._config import check_positive

if TYPE_CHECKING:
    from .emulator import ConnectionDropped, Emulator

TEST_API_KEY = "analytex-test-key"
"""The API key the helpers use unless told otherwise."""

EMULATED_BASE_URL = "http://127.0.0.1"
"""The base URL of an in-process emulator (loopback, so plain http is allowed; no socket)."""

INSTALL_TESTING = 'pip install "analytex-async[testing]"'


def _is_ours(error: ModuleNotFoundError) -> bool:
    # A module of this package that fails to import is a bug to show as is, not a missing extra.
    return (error.name or "").partition(".")[0] == "analytex_async"


def _emulator_classes() -> tuple[type[Emulator], type[ConnectionDropped]]:
    """Import the emulator on first use, so this module imports without its dependencies."""
    try:
        from .emulator import ConnectionDropped, Emulator  # noqa: PLC0415 - optional extra
    except ModuleNotFoundError as exc:
        if _is_ours(exc):
            raise
        raise ImportError(
            f"the in-process emulator needs {exc.name!r}, which is not installed: {INSTALL_TESTING}"
        ) from exc
    return Emulator, ConnectionDropped


def new_emulator(**settings: Any) -> Emulator:
    """A new emulator; an ``ImportError`` naming the extra without its dependencies.

    Args:
        **settings: ``Emulator`` keyword arguments (default settings without).
    """
    return _emulator_classes()[0](**settings)


class EmulatorTransport(httpx.ASGITransport):
    """``httpx.ASGITransport`` for the emulator, with faults that look like the network's.

    A fault that drops the connection surfaces in process as the emulator's
    ``ConnectionDropped``; this transport turns it into ``httpx.RemoteProtocolError``, which is
    what a client sees over a real socket, so retries behave the same in both places.

    Args:
        emulator: The emulator to send requests to.
    """

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(app=emulator.app)
        self.emulator = emulator
        self._connection_dropped = _emulator_classes()[1]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send a request to the emulator in process.

        Args:
            request: The request.

        Returns:
            The emulator's response.

        Raises:
            httpx.RemoteProtocolError: A fault dropped the connection.
        """
        try:
            return await super().handle_async_request(request)
        except self._connection_dropped as exc:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            ) from exc


class EmulatedAnalytex:
    """An in-process emulator and a client wired to it, as an async context manager.

    It is not a client itself: make calls on ``analytex.client`` (an ``AsyncAnalytex``) and
    inspect what the server stored on ``analytex.emulator``.

    Test speed is one knob: the client paces its bulk imports and job polls at the emulator's
    ``rows_per_minute``, so ``EmulatedAnalytex(rows_per_minute=600_000)`` (or an emulator made
    with that rate) makes bulk jobs finish in milliseconds.

    Args:
        emulator: The emulator to use; a new one when ``None`` (at ``rows_per_minute`` when
            given, else with default settings).
        api_key: The client's API key.
        rows_per_minute: The bulk rate. Without an ``emulator``, both the new emulator's and
            the client's; with one, the client's only. ``None``: the emulator's.
        **client_options: More keyword arguments for ``AsyncAnalytex`` (for example
            ``max_retries=0`` or ``requests_per_minute=None``).

    Raises:
        ImportError: No ``emulator`` was given and the emulator's dependencies are not
            installed (they come with the ``testing`` extra).
        ConfigurationError: ``rows_per_minute`` is not a positive number.

    Attributes:
        emulator: The emulator; inspect ``emulator.users``, ``.events``, ``.jobs``,
            ``.requests``, or inject faults with ``emulator.faults.add(...)``.
        client: The client (available inside the ``async with`` block).

    Examples:
        ```python
        async with EmulatedAnalytex(rows_per_minute=600_000) as analytex:
            job = await analytex.client.bulk_identify([{"user_id": "u1"}])
            await analytex.client.wait_for_job(job.job_id)  # milliseconds
        ```
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        api_key: str = TEST_API_KEY,
        rows_per_minute: float | None = None,
        **client_options: Any,
    ) -> None:
        check_positive("rows_per_minute", rows_per_minute, allow_none=True)
        if emulator is None:
            emulator = (
                new_emulator()
                if rows_per_minute is None
                else new_emulator(rows_per_minute=rows_per_minute)
            )
        self.emulator = emulator
        self._api_key = api_key
        self._rows_per_minute = rows_per_minute
        self._client_options = client_options
        self._http_client: httpx.AsyncClient | None = None
        self._client: AsyncAnalytex | None = None

    def __repr__(self) -> str:
        return f"EmulatedAnalytex(emulator={self.emulator!r})"

    @property
    def client(self) -> AsyncAnalytex:
        """The wired client.

        Raises:
            RuntimeError: Outside the ``async with`` block.
        """
        if self._client is None:
            raise RuntimeError("use EmulatedAnalytex as `async with EmulatedAnalytex() as ...`")
        return self._client

    async def __aenter__(self) -> EmulatedAnalytex:
        rows_per_minute = self._rows_per_minute
        if rows_per_minute is None:  # read now: the emulator's rate may have been set since
            rows_per_minute = self.emulator.rows_per_minute
        self._http_client = httpx.AsyncClient(transport=EmulatorTransport(self.emulator))
        client = AsyncAnalytex(
            api_key=self._api_key,
            base_url=EMULATED_BASE_URL,
            http_client=self._http_client,
            rows_per_minute=rows_per_minute,
            **self._client_options,
        )
        # Opened as an application opens it, so client.background works here too.
        await client.__aenter__()
        self._client = client
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._client is not None:
                await self._client.__aexit__(exc_type, exc, tb)
        finally:
            if self._http_client is not None:
                await self._http_client.aclose()
            self._client = self._http_client = None

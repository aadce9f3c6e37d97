"""The pytest plugin: the ``analytex_emulator`` and ``analytex_client`` fixtures, with no setup.

pytest loads this module by itself in every project where analytex-async is installed (the
``pytest11`` entry point named ``analytex_async``), so it must cost nothing there: it imports
only pytest and the core (httpx, attrs, anyio). The emulator, which needs the ``testing``
extra, is imported by the fixtures, and only when a test asks for one of them.

``analytex_client`` is an async fixture, run by whichever plugin runs the test:

* anyio's (``@pytest.mark.anyio``; anyio is a dependency of the SDK), on asyncio or trio: it
  runs the fixture in one task, as written;
* pytest-asyncio (auto mode, or ``@pytest.mark.asyncio`` in strict mode). It sets an async
  fixture up and tears it down in two different tasks, and the client's task group must close
  in the task that opened it: for these tests the fixture is swapped, from its setup to its
  teardown, for one that keeps the client open in a task of its own, marked as
  pytest-asyncio's own fixture (which strict mode requires) so that it runs in the test's loop.

When no plugin ran it, the test fails with a message that says what to do, instead of handing
the test an unstarted async generator or pytest's generic "requested an async fixture" error.

Disable the plugin with ``-p no:analytex_async``; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set,
enable it with ``-p analytex_async``. It never imports ``analytex_async.testing`` (which
re-exports its fixtures): both build on ``_emulated``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pluggy import Result

    from ._client import AsyncAnalytex
    from .emulator import Emulator

__all__ = ["analytex_client", "analytex_emulator"]

_ASYNC_FIXTURES = frozenset({"analytex_client"})

_NO_ASYNC_RUNNER = (
    "{test!r} uses the async fixture {fixture!r}, and no plugin ran it in an event loop. "
    "Mark the test with @pytest.mark.anyio (anyio's pytest plugin is installed with "
    'analytex-async), or set anyio_mode = "auto" in your pytest configuration to run every '
    "async test through anyio; with pytest-asyncio, mark it @pytest.mark.asyncio (strict "
    'mode) or set asyncio_mode = "auto".'
)


@pytest.fixture
def analytex_emulator() -> Emulator:
    """A fresh in-process emulator: jobs at 1,200 rows a minute, as the real API's.
    ``analytex_client`` paces its client at this emulator's ``rows_per_minute``, so one
    override makes bulk tests fast: in conftest.py, a fixture of this name that does
    ``return Emulator(rows_per_minute=600_000)``.

    The override in full::

        import pytest

        from analytex_async.emulator import Emulator


        @pytest.fixture
        def analytex_emulator():
            return Emulator(rows_per_minute=600_000)
    """  # noqa: D205 - `pytest --fixtures` shows a fixture's first paragraph only: all of it counts
    from ._emulated import new_emulator  # noqa: PLC0415 - the emulator only when a test asks

    return new_emulator()


@pytest.fixture
async def analytex_client(analytex_emulator: Emulator) -> AsyncIterator[AsyncAnalytex]:
    """An open ``AsyncAnalytex`` wired to ``analytex_emulator`` (in process, no socket),
    paced at the emulator's ``rows_per_minute``. An async fixture: mark the test
    ``@pytest.mark.anyio`` (asyncio and trio), or run it with pytest-asyncio
    (``@pytest.mark.asyncio``, or ``asyncio_mode = "auto"``).
    """  # noqa: D205 - `pytest --fixtures` shows a fixture's first paragraph only
    from ._emulated import EmulatedAnalytex  # noqa: PLC0415 - keeps the plugin's import light

    async with EmulatedAnalytex(analytex_emulator) as analytex:
        yield analytex.client


async def _analytex_client_in_a_task(
    analytex_emulator: Emulator,
) -> AsyncIterator[AsyncAnalytex]:
    """``analytex_client`` for pytest-asyncio: the client lives in a task of its own.

    pytest-asyncio runs the setup and the teardown in two tasks; the client opens and closes in
    a third, which the fixture starts at setup and waits for at teardown, so nothing outlives
    the fixture. Only ever run by pytest-asyncio, hence asyncio's own tasks here (the SDK's
    other code keeps to anyio, for trio).
    """
    import asyncio  # noqa: PLC0415 - pytest-asyncio runs on asyncio only

    from ._emulated import EmulatedAnalytex  # noqa: PLC0415 - keeps the plugin's import light

    loop = asyncio.get_running_loop()
    opened: asyncio.Future[AsyncAnalytex] = loop.create_future()
    close = asyncio.Event()

    async def hold_open() -> None:
        async with EmulatedAnalytex(analytex_emulator) as analytex:
            opened.set_result(analytex.client)
            await close.wait()

    holder = loop.create_task(hold_open())
    try:
        await asyncio.wait((opened, holder), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        holder.cancel()  # the setup was cancelled: the holder goes with it
        raise
    if not opened.done():
        await holder  # it could not open the client: raises why
    try:
        yield opened.result()
    finally:
        close.set()
        await holder


def _run_by_pytest_asyncio(request: pytest.FixtureRequest) -> bool:
    """Whether pytest-asyncio, not anyio, runs this request's async fixtures."""
    if "anyio_backend" in request.fixturenames:
        return False  # anyio's plugin runs the test and its async fixtures
    config = request.config
    if not config.pluginmanager.has_plugin("asyncio"):
        return False
    from pytest_asyncio import is_async_test  # noqa: PLC0415 - only when it is a plugin

    mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
    return mode == "auto" or is_async_test(request.node)


def _as_pytest_asyncio_fixture(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, marked as pytest-asyncio's fixture (as ``@pytest_asyncio.fixture`` does)."""
    import pytest_asyncio  # noqa: PLC0415 - only when it is a plugin

    pytest_asyncio.fixture(function)  # marks the function itself; the definition is not needed
    return function


def _left_unrun(outcome: Result[Any]) -> bool:
    """Whether the fixture's setup shows that no plugin ran the async fixture function.

    pytest 9 fails such a setup itself ("requested an async fixture"); pytest 8.4 warns about
    it (an error under ``-W error``); older versions hand the test the unstarted async
    generator. Anything else (the fixture ran, or failed on its own) is left as it is.
    """
    if outcome.excinfo is None:
        value = outcome.get_result()
        return inspect.isasyncgen(value) or inspect.iscoroutine(value)
    return "async fixture" in str(outcome.excinfo[1])


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Result[Any], None]:
    """Hand our async fixture to pytest-asyncio in its form; explain one no plugin ran."""
    # Only this plugin's own fixtures: a project may override one with a fixture of its own.
    ours = getattr(fixturedef.func, "__module__", None) == __name__
    if not (ours and fixturedef.argname in _ASYNC_FIXTURES):
        yield
        return
    if _run_by_pytest_asyncio(request):
        # The outermost wrapper (tryfirst): pytest-asyncio's, inside, finds this function. It
        # stays until the fixture's teardown: pytest-asyncio checks it again as the test runs.
        patch = pytest.MonkeyPatch()
        patch.setattr(fixturedef, "func", _as_pytest_asyncio_fixture(_analytex_client_in_a_task))
        request.addfinalizer(patch.undo)
    outcome = yield
    if _left_unrun(outcome):
        _fail_unrun(outcome, fixturedef, request)


def _fail_unrun(
    outcome: Result[Any], fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    """Replace the confusing outcome of an async fixture no plugin ran with what to do."""
    message = _NO_ASYNC_RUNNER.format(test=request.node.name, fixture=fixturedef.argname)
    try:
        pytest.fail(message, pytrace=False)
    except pytest.fail.Exception as failed:
        error = failed
    if fixturedef.cached_result is None:
        # pytest 9 fails this setup before caching an outcome, so the fixture's teardown
        # thinks it never ran and keeps its finalizers: the next test asking for it would trip
        # over them. Caching the failure, as pytest does for a fixture that raises, lets each
        # test get this message.
        key = fixturedef.cache_key(request)  # type: ignore[arg-type]
        fixturedef.cached_result = (None, key, (error, error.__traceback__))
    if not hasattr(outcome, "force_exception"):  # pragma: no cover - pluggy before 1.1
        raise error
    outcome.force_exception(error)

"""The pytest plugin: the ``analytex_emulator`` and ``analytex_client`` fixtures, with no setup.

pytest loads this module by itself in every project where analytex-async is installed (the
``pytest11`` entry point named ``analytex_async``), so it must cost nothing there: it imports
only pytest and the core (httpx, attrs, anyio). The emulator, which needs the ``testing``
extra, is imported by the fixtures, and only when a test asks for one of them.

``analytex_client`` is an async fixture: the test that uses it must run in an event loop that
some plugin provides (``@pytest.mark.anyio``; anyio's plugin comes with anyio, a dependency of
the SDK). pytest-asyncio cannot run it: it sets an async fixture up and tears it down in two
different tasks, and the client's task group must close in the task that opened it. When none
ran it, the test fails with a message that says so, instead of handing the
test an unstarted async generator or pytest's generic "requested an async fixture" error.

Disable the plugin with ``-p no:analytex_async``; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set,
enable it with ``-p analytex_async``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Generator
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
    "async test through anyio."
)


@pytest.fixture
def analytex_emulator() -> Emulator:
    """A fresh in-process emulator with default settings.

    Override this fixture to configure it, e.g. ``return Emulator(rows_per_minute=60_000)``
    so bulk jobs finish in milliseconds.
    """
    from .testing import _new_emulator  # noqa: PLC0415 - the emulator only when a test asks

    return _new_emulator()


@pytest.fixture
async def analytex_client(analytex_emulator: Emulator) -> AsyncIterator[AsyncAnalytex]:
    """An open ``AsyncAnalytex`` wired to ``analytex_emulator`` (in process, no socket).

    An async fixture: mark the test with ``@pytest.mark.anyio`` (asyncio and trio both work).
    """
    from .testing import EmulatedAnalytex  # noqa: PLC0415 - keeps the plugin's import light

    async with EmulatedAnalytex(analytex_emulator) as analytex:
        yield analytex.client


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


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Result[Any], None]:
    """Replace the confusing outcome of an async fixture no plugin ran with what to do."""
    outcome = yield
    # Only this plugin's own fixtures: a project may override one with a fixture of its own.
    ours = getattr(fixturedef.func, "__module__", None) == __name__
    if not (ours and fixturedef.argname in _ASYNC_FIXTURES and _left_unrun(outcome)):
        return
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

"""The pytest plugin works in a user's project as installed: no conftest line, no extra import.

Each test builds a fresh project with ``pytester`` and runs pytest on it, as a user's CI would:
in process where only the outcome matters (fast), in a child interpreter where what is
imported matters. Few runs, small projects: each costs a pytest start.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.mark.anyio
async def test_the_client_reaches_the_emulator(analytex_client, analytex_emulator):
    await analytex_client.identify("u1", metadata={"plan": "pro"})
    assert analytex_emulator.users["u1"].metadata == {"plan": "pro"}
"""

MISTAKES = """
async def test_an_unmarked_async_test(analytex_client):
    await analytex_client.identify("u1")


def test_a_sync_test(analytex_client):
    analytex_client.background.identify("u1")
"""


def test_the_fixtures_work_on_asyncio_and_trio_with_no_conftest_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    assert not (pytester.path / "conftest.py").exists()
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_the_client_reaches_the_emulator?asyncio? PASSED*"])
    result.stdout.fnmatch_lines(["*test_the_client_reaches_the_emulator?trio? PASSED*"])


def test_a_test_no_plugin_runs_is_told_how_to_mark_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mistakes=MISTAKES)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    for test in ("test_an_unmarked_async_test", "test_a_sync_test"):
        result.stdout.fnmatch_lines(
            [f"*'{test}' uses the async fixture 'analytex_client', and no plugin ran it*"]
        )
    result.stdout.fnmatch_lines(["*Mark the test with @pytest.mark.anyio*"])
    result.stdout.no_fnmatch_line("*async_generator*")


def test_the_documented_conftest_line_still_works_beside_the_entry_point(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest('pytest_plugins = ["analytex_async.testing"]')
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


# A child interpreter where the testing extra is not installed: a finder refuses its modules
# (as pip would have left them out). respx's own pytest plugin is turned off: without respx,
# its entry point would not exist.
WITHOUT_THE_EXTRA = """
import importlib.abc
import sys

MISSING = {"starlette", "uvicorn", "respx"}


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
import pytest

sys.exit(pytest.main(["-p", "no:cacheprovider", "-p", "no:respx", "-q", "-rE"]))
"""

LIGHT_TESTS = """
import sys


def test_a_test_without_the_fixtures_never_imports_the_emulator():
    assert "analytex_async._pytest_plugin" in sys.modules  # loaded by its entry point
    assert "analytex_async.emulator" not in sys.modules


def test_asking_for_the_emulator_names_the_extra(analytex_emulator):
    pass
"""


def test_the_plugin_loads_without_the_testing_extra_and_imports_the_emulator_on_request(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_light=LIGHT_TESTS)
    result = pytester.run(sys.executable, "-c", textwrap.dedent(WITHOUT_THE_EXTRA), timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ImportError: the in-process emulator needs 'starlette'*"])
    assert 'pip install "analytex-async[testing]"' in result.stdout.str()

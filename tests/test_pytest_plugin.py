"""The pytest plugin works in a user's project as installed: no conftest line, no extra import.

Each test builds a fresh project with ``pytester`` and runs pytest on it, as a user's CI would:
in process where only the outcome matters (fast), in a child interpreter where what is
imported matters. Few runs, small projects: each costs a pytest start. pytest-asyncio is
installed here (the ``test`` extra): the projects that do not use it turn it off
(``-p no:asyncio``), as if it were not installed; the others run under it in each of its modes.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

WITHOUT_PYTEST_ASYNCIO = ("-p", "no:cacheprovider", "-p", "no:asyncio")

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
    result = pytester.runpytest(*WITHOUT_PYTEST_ASYNCIO, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_the_client_reaches_the_emulator?asyncio? PASSED*"])
    result.stdout.fnmatch_lines(["*test_the_client_reaches_the_emulator?trio? PASSED*"])


def test_a_test_no_plugin_runs_is_told_how_to_mark_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mistakes=MISTAKES)
    result = pytester.runpytest(*WITHOUT_PYTEST_ASYNCIO)
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
    result = pytester.runpytest(*WITHOUT_PYTEST_ASYNCIO)
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

sys.exit(pytest.main(["-p", "no:cacheprovider", "-p", "no:respx", "-p", "no:asyncio", "-q", "-rE"]))
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


# -- pytest-asyncio -------------------------------------------------------------------------------

# What FastAPI projects run: every test on pytest-asyncio's loop. The second test keeps the
# client's task group busy across the test (background delivery, a bulk job): its teardown, in
# another task than its setup, must still close it cleanly.
ASYNCIO_TESTS = """
import pytest
{marker}

async def test_the_client_reaches_the_emulator(analytex_client, analytex_emulator):
    await analytex_client.identify("u1", metadata={{"plan": "pro"}})
    assert analytex_emulator.users["u1"].metadata == {{"plan": "pro"}}


async def test_background_delivery_and_a_bulk_job(analytex_client, analytex_emulator):
    analytex_client.background.identify("u2", metadata={{"plan": "free"}})
    job = await analytex_client.bulk_identify([{{"user_id": f"b{{i}}"}} for i in range(50)])
    assert (await analytex_client.wait_for_job(job.job_id)).status == "completed"
    await analytex_client.background.flush(timeout=10)
    assert analytex_emulator.users["u2"].metadata == {{"plan": "free"}}
    assert len(analytex_emulator.users) == 51
"""

FAST_EMULATOR = """
import pytest

from analytex_async.emulator import Emulator


@pytest.fixture
def analytex_emulator():
    return Emulator(rows_per_minute=600_000)
"""


def asyncio_project(pytester: pytest.Pytester, mode: str, marker: str = "") -> None:
    pytester.makeini(
        f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makeconftest(FAST_EMULATOR)
    pytester.makepyfile(test_user=ASYNCIO_TESTS.format(marker=marker))


def test_the_fixtures_work_under_pytest_asyncio_in_auto_mode(pytester: pytest.Pytester) -> None:
    asyncio_project(pytester, "auto")
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)


def test_the_fixtures_work_under_pytest_asyncio_in_strict_mode(pytester: pytest.Pytester) -> None:
    asyncio_project(pytester, "strict", marker="pytestmark = pytest.mark.asyncio")
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)


def test_an_unmarked_test_in_strict_mode_is_told_both_ways_to_mark_it(
    pytester: pytest.Pytester,
) -> None:
    asyncio_project(pytester, "strict")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*Mark the test with @pytest.mark.anyio*"])
    result.stdout.fnmatch_lines(["*with pytest-asyncio, mark it @pytest.mark.asyncio*"])


def test_anyio_marked_tests_keep_to_anyio_beside_pytest_asyncio(pytester: pytest.Pytester) -> None:
    # pytest-asyncio in strict mode in the same project: the anyio tests (trio included) are
    # still run by anyio's plugin, their fixtures too.
    asyncio_project(pytester, "strict", marker="pytestmark = pytest.mark.asyncio")
    pytester.makepyfile(test_anyio=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=4)


# -- one knob for the tests' speed ---------------------------------------------------------------

RATE_TESTS = """
import anyio
import pytest


@pytest.mark.anyio
async def test_the_client_paces_at_the_emulators_rate(analytex_client, analytex_emulator):
    assert analytex_client.rows_per_minute == analytex_emulator.rows_per_minute == 600_000
    started = anyio.current_time()
    result = await analytex_client.import_users([{"user_id": f"u{i}"} for i in range(1_000)])
    assert [job.status for job in result.jobs] == ["completed"]
    # 1,000 rows at 600,000 a minute: 0.1 s of server time. At the old 1,200 a minute of the
    # client's, the import alone paced and polled for 50 s.
    assert anyio.current_time() - started < 5
"""


def test_overriding_the_emulator_fixture_sets_the_clients_rate_too(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FAST_EMULATOR)
    pytester.makepyfile(test_rate=RATE_TESTS)
    result = pytester.runpytest(*WITHOUT_PYTEST_ASYNCIO)
    result.assert_outcomes(passed=2)  # anyio's default backends: asyncio and trio


def test_pytest_fixtures_says_how_to_make_bulk_tests_fast(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing(): pass")
    result = pytester.runpytest(*WITHOUT_PYTEST_ASYNCIO, "--fixtures")
    text = result.stdout.str()
    emulator_help = text[text.index("analytex_emulator --") : text.index("analytex_client --")]
    assert "paces its client at this emulator's ``rows_per_minute``" in emulator_help
    assert "return Emulator(rows_per_minute=600_000)" in emulator_help
    client_help = text[text.index("analytex_client --") :]
    assert "@pytest.mark.asyncio" in client_help
    assert "@pytest.mark.anyio" in client_help


# -- our own suite: nothing may skip in CI -------------------------------------------------------

SKIPS = """
import pytest


def test_a_skip():
    pytest.skip("needs a package the test extra lacks")


@pytest.mark.xfail(reason="known", strict=True)
def test_an_expected_failure():
    raise AssertionError
"""


def test_our_suite_fails_a_skipped_test_in_ci_and_only_there(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_skips=SKIPS)
    monkeypatch.setenv("CI", "true")
    in_ci = pytester.runpytest(*WITHOUT_PYTEST_ASYNCIO, "-p", "tests.conftest")
    in_ci.assert_outcomes(failed=1, xfailed=1)
    in_ci.stdout.fnmatch_lines(["*skipped in CI, where every test must run*"])
    monkeypatch.delenv("CI")
    local = pytester.runpytest(*WITHOUT_PYTEST_ASYNCIO, "-p", "tests.conftest")
    local.assert_outcomes(skipped=1, xfailed=1)

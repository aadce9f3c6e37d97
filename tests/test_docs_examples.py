"""Every code example in README.md, docs/*.md and the package's docstrings runs, as written.

What is collected: each ```python block of README.md and docs/*.md, each ```python block in a
docstring of ``analytex_async``, and each docstring's ``>>>`` session (run by ``doctest``, output
compared). Each is one test, named ``file:line`` of its opening fence or first ``>>>``.

How a block runs, as a user would run it:

* Against the emulator on a loopback socket: each page (a markdown file, or a module's
  docstrings) gets its own ``Emulator`` served on a free 127.0.0.1 port, with
  ``ANALYTEX_API_KEY`` and ``ANALYTEX_BASE_URL`` pointing at it, so ``AsyncAnalytex()`` works.
  The emulator processes 6,000,000 rows a minute, so waiting for a job costs nothing.
* In a temporary directory holding the small files the examples name (``users.ndjson``,
  ``users.ndjson.gz``, ``users.csv``).
* Blocks of one page share a namespace, in page order: they are fragments read in sequence.
  The namespace starts with ``client``, an open ``AsyncAnalytex`` on the page's emulator (the
  fragments' "given a client"), and gets it back after a block whose own ``async with`` closed
  its ``client``; a docstring's blocks start from their module's globals too.
  Running one block alone first runs the blocks before it on its page.
* A block with top-level ``await`` runs in the page's event loop (asyncio, in a thread); a block
  without runs in the test's thread, so it may start its own loop (``anyio.run``,
  ``trio.run``).
* A block that defines ``test_*`` functions has them called, with the fixtures
  ``analytex_client``, ``analytex_emulator`` (an ``EmulatedAnalytex``) or ``tmp_path``, and
  without the ``ANALYTEX_*`` variables, as in a test run. An ``analytex_emulator`` fixture the
  page defined makes the emulator, as a conftest.py override would.

Markers: an HTML comment right before the fence (``<!-- example: ... -->``, invisible on the
site), one or more:

* ``raises NAME``: the block must raise ``NAME`` (a name of ``analytex_async`` or a builtin).
* ``prints TEXT``: what the block prints must contain ``TEXT``.
* ``setup: CODE``: ``CODE`` runs first in the page's namespace (it may ``await``).
* ``module NAME``: after the block, ``import NAME`` gives the page's namespace (an app module
  that a later test block imports).
* ``signature``: the block shows call signatures (``Name(a, *, b=1)``); each is compared with
  the real signature of ``Name``: the same parameters, kinds and defaults, in order.
* ``mock clock``: the block runs under trio with ``MockClock(autojump_threshold=0)``, in a loop
  of its own (no network): for an example that waits minutes on purpose.
* ``fast clock``: ``trio.run`` inside the block runs on ``MockClock(rate=30)``, and the page's
  emulator enforces no real-time limit meanwhile (it keeps real time): for an example that
  spends a 60-second rate window on purpose.
* ``redis``: a ``redis-server`` on a loopback port; ``REDIS_URL`` points at it.
* ``stub MODULE.NAME``: ``MODULE.NAME`` is replaced, for the block, by a function that only
  checks its arguments bind to the real signature (``emulator.run`` serves until Ctrl-C).
* ``env NAME=VALUE``: the environment variable is set for the block (a broker's URL, say).
* ``requires MODULE``: the block needs a package that only some users install. The test extra
  installs every one (CI skips nothing); without it the test is skipped with that reason, shown
  in pytest's summary (never silently).

What a block does to the ``analytex_async`` logger (a handler, a level) is undone after it: a
page's logging setup must not print into every later test.

``KNOWN_FAILURES`` lists examples in files this suite's authors could not fix yet: each is a
strict xfail, so fixing the example makes the test fail until its entry is removed.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

import analytex_async

from ._doc_examples import (
    API_KEY,
    ROOT,
    Example,
    Page,
    call_test_function,
    check_signatures,
    collect,
    new_namespace,
    run_doctest,
    write_sample_files,
)
from .redis_server import RedisServer

FAST_RATE = 30  # virtual seconds per real second under `fast clock`

KNOWN_FAILURES: dict[str, str] = {}

EXAMPLES = collect()
_BY_PAGE: dict[str, list[Example]] = {}
for _example in EXAMPLES:
    _BY_PAGE.setdefault(_example.page, []).append(_example)


def _param(example: Example) -> Any:
    reason = KNOWN_FAILURES.get(example.id)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(example, id=example.id, marks=marks)


def test_every_page_with_python_blocks_is_collected() -> None:
    pages = {example.page for example in EXAMPLES}
    assert {"README.md", "docs/index.md", "docs/testing.md", "analytex_async/testing.py"} <= pages
    assert len(EXAMPLES) > 50


@pytest.fixture(scope="session")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Page]]:
    opened: dict[str, Page] = {}
    yield opened
    for page in opened.values():
        page.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


def _page(pages: dict[str, Page], example: Example, tmp_path_factory: Any) -> Page:
    if example.page not in pages:
        workdir = tmp_path_factory.mktemp("example")
        write_sample_files(workdir)
        pages[example.page] = Page(example.page, workdir, new_namespace(example))
    return pages[example.page]


def _exception_named(name: str) -> type[BaseException]:
    found = getattr(analytex_async, name, None) or getattr(builtins, name, None)
    assert isinstance(found, type), name
    assert issubclass(found, BaseException), name
    return found


def _stub(dotted: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module_name, _, name = dotted.rpartition(".")
    module = importlib.import_module(module_name)
    signature = inspect.signature(getattr(module, name))

    def checked(*args: Any, **kwargs: Any) -> None:
        signature.bind(*args, **kwargs)

    monkeypatch.setattr(module, name, checked)


def _execute(page: Page, example: Example, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run one block in its page's namespace, honouring its markers."""
    namespace = page.namespace
    if example.marker("signature") is not None:
        check_signatures(example.source, namespace)
        return
    for dotted in [m[len("stub ") :] for m in example.markers if m.startswith("stub ")]:
        _stub(dotted, monkeypatch)
    for variable in [m[len("env ") :] for m in example.markers if m.startswith("env ")]:
        name, _, value = variable.partition("=")
        monkeypatch.setenv(name, value)
    sdk_logger = logging.getLogger("analytex_async")
    monkeypatch.setattr(sdk_logger, "handlers", list(sdk_logger.handlers))  # undone after it
    monkeypatch.setattr(sdk_logger, "level", sdk_logger.level)
    if example.marker("fast clock") is not None:
        real_run = trio.run
        monkeypatch.setattr(
            trio, "run", lambda *a, **kw: real_run(*a, clock=MockClock(rate=FAST_RATE), **kw)
        )
        assert page.emulator is not None
        monkeypatch.setattr(page.emulator, "realtime_requests_per_minute", None)
    path = str(ROOT / example.page)
    setup = example.marker("setup")
    if setup:
        _run_code(page, compile_block(setup, path, example.line - 1), example)
    code = compile_block(example.source, path, example.line)
    before = dict(namespace)
    _run_code(page, code, example)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and inspect.isfunction(value) and before.get(name) is not value:
            with pytest.MonkeyPatch.context() as test_run:  # as in a test run: no ANALYTEX_*
                test_run.delenv("ANALYTEX_API_KEY")
                test_run.delenv("ANALYTEX_BASE_URL")
                page.portal.call(call_test_function, value, tmp_path, namespace)
    page.reopen_client()
    module = example.marker("module")
    if module:
        page.expose_as_module(module)


def compile_block(source: str, path: str, line: int) -> Any:
    # Blank lines first, so a traceback names the line in the markdown file or the module.
    return compile(
        "\n" * line + source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )


def _run_code(page: Page, code: Any, example: Example) -> None:
    namespace = page.namespace
    if not code.co_flags & inspect.CO_COROUTINE:
        exec(code, namespace)  # noqa: S102 - running the documentation's examples is the point
        return

    async def run() -> None:
        await eval(code, namespace)  # noqa: S307 - top-level await: eval returns a coroutine

    if example.marker("mock clock") is not None:
        trio.run(run, clock=MockClock(autojump_threshold=0))
    else:
        page.portal.call(run)


def _run_with_markers(
    page: Page,
    example: Example,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    capsys.readouterr()  # what earlier blocks printed is not this block's output
    raises = example.marker("raises")
    if raises:
        with pytest.raises(_exception_named(raises)):
            _execute(page, example, monkeypatch, tmp_path)
    else:
        _execute(page, example, monkeypatch, tmp_path)
    prints = example.marker("prints")
    if prints:
        assert prints in capsys.readouterr().out


@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_example_runs(
    example: Example,
    pages: dict[str, Page],
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    if example.doctest:
        failure = run_doctest(example)
        assert failure is None, failure
        return
    required = example.marker("requires")
    if required:
        pytest.importorskip(required, reason=f"{example.id} needs {required}")
    page = _page(pages, example, tmp_path_factory)
    page.portal  # starts the page's emulator before the environment points at it
    monkeypatch.chdir(page.workdir)
    monkeypatch.setenv("ANALYTEX_API_KEY", API_KEY)
    monkeypatch.setenv("ANALYTEX_BASE_URL", page.base_url)
    if any(e.marker("redis") is not None for e in _BY_PAGE[example.page]):
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    for earlier in _BY_PAGE[example.page]:
        if earlier.line >= example.line:
            break
        needs = earlier.marker("requires")
        if needs and importlib.util.find_spec(needs) is None:
            continue
        if earlier.line not in page.ran and not earlier.doctest:
            page.ran.add(earlier.line)
            with pytest.MonkeyPatch.context() as patch:
                _run_with_markers(page, earlier, patch, capsys, tmp_path)
    page.ran.add(example.line)
    _run_with_markers(page, example, monkeypatch, capsys, tmp_path)


# The collector's own checks: a marker that does not hold fails the example.


def _lone_page(tmp_path: Path) -> Page:
    return Page("docs/x.md", tmp_path, {"__name__": "docs_example", "__builtins__": __builtins__})


def test_a_block_that_does_not_raise_what_its_marker_says_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Example("docs/x.md", 1, "x = 1", ("raises ValidationError",))
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        _run_with_markers(_lone_page(tmp_path), example, monkeypatch, capsys, tmp_path)


def test_a_block_that_prints_something_else_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Example("docs/x.md", 1, "print('queued')", ("prints completed",))
    with pytest.raises(AssertionError):
        _run_with_markers(_lone_page(tmp_path), example, monkeypatch, capsys, tmp_path)


def test_a_signature_that_drifted_from_the_code_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="company_id"):
        check_signatures("User(user_id, metadata={})", {})


def test_a_block_naming_a_missing_file_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    example = Example("docs/x.md", 1, "open('missing.ndjson').read()")
    with pytest.raises(FileNotFoundError):
        _run_with_markers(_lone_page(tmp_path), example, monkeypatch, capsys, tmp_path)

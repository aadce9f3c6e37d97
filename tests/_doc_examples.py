"""Find the code examples in the docs and the docstrings, and run them as a user would.

``tests/test_docs_examples.py`` describes the rules (what runs where, the markers); this module
holds the machinery: ``collect()`` finds every example, ``Page`` runs a page's examples in one
namespace against an emulator served on loopback.
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import gzip
import importlib
import inspect
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import attrs

from analytex_async import AsyncAnalytex
from analytex_async.emulator import Emulator, serve
from analytex_async.testing import EmulatedAnalytex

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "analytex_async"
API_KEY = "docs-example-key"

_FENCE = re.compile(r"^(?P<indent>\s*)```python\s*$")
_CLOSE = re.compile(r"^\s*```\s*$")
_MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<text>.*?)\s*-->\s*$")
_SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')

USERS = [
    {"user_id": "user_001", "metadata": {"name": "Jane Doe", "plan": "pro"}},
    {"user_id": "user_002", "metadata": {"name": "John Roe", "plan": "free"}},
    {"user_id": "user_003", "metadata": {"name": "Ada Poe", "plan": "free"}},
]


@dataclass(frozen=True)
class Example:
    """One example: a fenced block, or the ``>>>`` session of one docstring."""

    page: str  # the file, relative to the repository root
    line: int  # 1-based line of the opening fence or of the first ``>>>``
    source: str
    markers: tuple[str, ...] = ()
    doctest: bool = False
    module: str | None = None  # a docstring's module: its globals start the namespace

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def marker(self, name: str) -> str | None:
        """The text after ``name`` in a marker (``""`` for a bare one), or None."""
        for text in self.markers:
            if text == name or text.startswith((name + " ", name + ":")):
                return text[len(name) :].lstrip(" :")
        return None


def _snippet(line: str) -> str:
    """The text a ``--8<-- "path[:section]"`` line includes (mkdocs' snippets extension)."""
    spec = _SNIPPET.match(line)
    assert spec is not None
    path, _, section = spec["path"].partition(":")
    text = (ROOT / path).read_text(encoding="utf-8")
    if not section:
        return text
    start, end = f"--8<-- [start:{section}]", f"--8<-- [end:{section}]"
    lines = text.splitlines()
    begin = next(i for i, text_line in enumerate(lines) if start in text_line)
    stop = next(i for i, text_line in enumerate(lines) if end in text_line)
    return "\n".join(lines[begin + 1 : stop])


def fenced_blocks(
    lines: list[str], first_line: int = 1
) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """Yield ``(line, code, markers)`` for every fenced python block; ``lines[0]`` is line 1."""
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = index
        markers: list[str] = []
        back = index - 1
        while back >= 0 and (_MARKER.match(lines[back]) or not lines[back].strip()):
            marker = _MARKER.match(lines[back])
            if marker is not None:
                markers.insert(0, marker["text"])
            back -= 1
        body: list[str] = []
        index += 1
        while index < len(lines) and not _CLOSE.match(lines[index]):
            line = lines[index]
            body.append(_snippet(line) if _SNIPPET.match(line) else line)
            index += 1
        code = textwrap.dedent("\n".join(body))
        yield first_line + fence, code, tuple(markers)
        index += 1


def markdown_examples() -> list[Example]:
    """Every ```python block of README.md and docs/*.md."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [
        Example(str(page.relative_to(ROOT)), line, code, markers)
        for page in pages
        for line, code, markers in fenced_blocks(page.read_text(encoding="utf-8").splitlines())
    ]


def _docstrings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                yield first.lineno, first.value.value


def docstring_examples() -> list[Example]:
    """Every ```python block and every ``>>>`` session in the package's docstrings."""
    found: list[Example] = []
    parser = doctest.DocTestParser()
    for path in sorted(PACKAGE.rglob("*.py")):
        page = str(path.relative_to(ROOT))
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for start, text in sorted(_docstrings(tree)):
            lines = text.split("\n")
            for line, code, markers in fenced_blocks(lines, first_line=start):
                found.append(Example(page, line, code, markers, module=module))
            examples = parser.get_examples(text)
            if examples:
                first = start + examples[0].lineno
                found.append(Example(page, first, text, doctest=True, module=module))
    return found


def collect() -> list[Example]:
    """Every example, in page order."""
    return [*markdown_examples(), *docstring_examples()]


def write_sample_files(directory: Path) -> None:
    """The small files the examples name, in the directory they run in."""
    ndjson = "".join(f"{__import__('json').dumps(user)}\n" for user in USERS)
    (directory / "users.ndjson").write_text(ndjson, encoding="utf-8")
    (directory / "users.ndjson.gz").write_bytes(gzip.compress(ndjson.encode()))
    csv_rows = [f"{u['user_id']},{u['metadata']['name']},{u['metadata']['plan']}" for u in USERS]
    (directory / "users.csv").write_text(
        "user_id,name,plan\n" + "\n".join(csv_rows) + "\n", encoding="utf-8"
    )


def _real_default(target: object, parameter: inspect.Parameter) -> object:
    default = parameter.default
    if isinstance(target, type) and attrs.has(target):
        # attrs shows a field's factory as NOTHING in the signature; the field knows it.
        found = attrs.fields_dict(target).get(parameter.name)
        factory = getattr(found.default, "factory", None) if found else None
        default = factory() if callable(factory) else default
    return default


def check_signatures(source: str, namespace: dict[str, Any]) -> None:
    """Compare each ``Name(params)`` the block shows with the real signature of ``Name``."""
    chunks: list[list[str]] = []
    for line in source.splitlines():
        if line[:1].isidentifier():
            chunks.append([])
        if chunks:
            chunks[-1].append(line)
    assert chunks, "a signature block shows no `Name(...)`"
    for chunk in chunks:
        shown = ast.parse("def " + "\n".join(chunk).rstrip() + ": pass").body[0]
        assert isinstance(shown, ast.FunctionDef)
        target = namespace.get(shown.name) or _public(shown.name)
        real = inspect.signature(target).parameters.values()
        shown_params = [
            *((a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in shown.args.args),
            *((a, inspect.Parameter.KEYWORD_ONLY) for a in shown.args.kwonlyargs),
        ]
        shown_defaults = [None] * (len(shown.args.args) - len(shown.args.defaults))
        shown_defaults += [*shown.args.defaults, *shown.args.kw_defaults]
        got = [
            _shown(a.arg, kind, d is not None, d and ast.literal_eval(d))
            for (a, kind), d in zip(shown_params, shown_defaults)
        ]
        want = [
            _shown(p.name, p.kind, p.default is not p.empty, _real_default(target, p)) for p in real
        ]
        assert got == want, f"{shown.name}: the docs show\n  {got}\nthe code has\n  {want}"


def _shown(name: str, kind: object, has_default: bool, default: object) -> str:
    star = "*, " if kind is inspect.Parameter.KEYWORD_ONLY else ""
    return f"{star}{name}={default!r}" if has_default else f"{star}{name}"


def _public(name: str) -> Any:
    for module in ("analytex_async", "analytex_async.emulator", "analytex_async.governors"):
        found = getattr(importlib.import_module(module), name, None)
        if found is not None:
            return found
    raise AssertionError(f"{name} is not a public name of analytex_async")


def _fixture_body(fixture: Any) -> Callable[..., Any]:
    """The function under ``@pytest.fixture`` (which refuses to be called directly)."""
    if hasattr(fixture, "_get_wrapped_function"):  # pytest 8.4 and later
        return fixture._get_wrapped_function()  # type: ignore[no-any-return]
    return fixture.__pytest_wrapped__.obj  # type: ignore[no-any-return]


async def call_test_function(
    function: Callable[..., Any], tmp_path: Path, namespace: dict[str, Any]
) -> None:
    """Call a ``test_*`` function a block defined, with the fixtures it names.

    An ``analytex_emulator`` fixture the page defined replaces the default emulator, as a
    conftest.py override would; ``analytex_client`` is wired to whichever emulator is used.
    """
    override = namespace.get("analytex_emulator")
    emulator = (
        _fixture_body(override)() if override is not None else Emulator(rows_per_minute=6_000_000)
    )
    async with EmulatedAnalytex(emulator) as analytex:
        fixtures = {
            "analytex_emulator": emulator,
            "analytex_client": analytex.client,
            "tmp_path": tmp_path,
        }
        names = inspect.signature(function).parameters
        result = function(**{name: fixtures[name] for name in names})
        if inspect.isawaitable(result):
            await result


@dataclass
class Page:
    """One page's namespace, its working directory and its emulator on a loopback socket."""

    path: str
    workdir: Path
    namespace: dict[str, Any]
    ran: set[int] = field(default_factory=set)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _portal: anyio.from_thread.BlockingPortal | None = None
    emulator: Emulator | None = None
    base_url: str = ""
    client: AsyncAnalytex | None = None
    modules: list[str] = field(default_factory=list)

    @property
    def portal(self) -> anyio.from_thread.BlockingPortal:
        """The page's event loop (asyncio, in a thread), started with the emulator and client."""
        if self._portal is None:
            try:
                self._portal = self._start()
            except BaseException:
                self._stack.close()
                raise
        return self._portal

    def _start(self) -> anyio.from_thread.BlockingPortal:
        portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal("asyncio"))
        # Jobs complete as soon as they are read: waiting for one costs nothing.
        self.emulator = Emulator(rows_per_minute=6_000_000)
        self.base_url = self._stack.enter_context(
            portal.wrap_async_context_manager(serve(self.emulator))
        )
        client = portal.call(_new_client, self.base_url)
        self._stack.enter_context(portal.wrap_async_context_manager(client))
        self.client = client
        self.namespace.setdefault("client", client)
        return portal

    def reopen_client(self) -> None:
        """After a block closed its own ``client`` (an ``async with``), the next is given one."""
        current = self.namespace.get("client")
        if isinstance(current, AsyncAnalytex) and current.is_closed:
            self.namespace["client"] = self.client

    def expose_as_module(self, name: str) -> None:
        """Let later blocks ``import name`` and get this page's namespace."""
        module = types.ModuleType(name)
        module.__dict__.update(self.namespace)
        sys.modules[name] = module
        self.modules.append(name)

    def close(self) -> None:
        """Close the clients the page's blocks left open, then its client, emulator and loop."""
        for name in self.modules:
            sys.modules.pop(name, None)
        if self._portal is not None:
            for value in list(self.namespace.values()):
                if isinstance(value, AsyncAnalytex) and not value.is_closed:
                    self._portal.call(value.aclose)
        self._stack.close()


async def _new_client(base_url: str) -> AsyncAnalytex:
    return AsyncAnalytex(api_key=API_KEY, base_url=base_url)


def new_namespace(example: Example) -> dict[str, Any]:
    """A page's starting namespace: a docstring's module globals, or a fresh one (not __main__)."""
    if example.module is None:
        return {"__name__": "docs_example", "__builtins__": __builtins__}
    return dict(vars(importlib.import_module(example.module)))


def run_doctest(example: Example) -> str | None:
    """Run a docstring's ``>>>`` session; the failure report, or None when it passes."""
    globs = new_namespace(example)
    test = doctest.DocTestParser().get_doctest(
        example.source, globs, example.id, str(ROOT / example.page), example.line - 1
    )
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=report.append, clear_globs=False)
    return "".join(report) if runner.failures else None


async def submit_job(emulator: Emulator, key: str) -> str:
    """Submit a one-row bulk job to ``emulator`` in process, as ``key``; its id."""
    import httpx  # noqa: PLC0415 - only this setup helper needs it

    transport = httpx.ASGITransport(app=emulator.app)
    headers = {"Authorization": f"Token {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        response = await http.post(
            "/v1/users/bulk_identify", json={"users": [{"user_id": "u1"}]}, headers=headers
        )
    response.raise_for_status()
    return str(response.json()["job_id"])

"""What the docs state as facts matches the code: the extras, the commands, the API's hosts.

The examples in the docs run elsewhere (``test_docs_examples``); these are the tables and names a
reader trusts without running anything.
"""

from __future__ import annotations

import re
from importlib.metadata import metadata
from pathlib import Path

import click
from packaging.requirements import Requirement

from analytex_async.cli._commands import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md", ROOT / "examples" / "README.md"]
# analytex-api.md "Base URLs", and appex-api.md "Host and headers" (the export API's host).
OUR_HOSTS = {"analytex.userpilot.io", "analytex-eu.userpilot.io", "appex.userpilot.io"}


def extras() -> dict[str, set[str]]:
    """Each extra of the installed package, and the distributions it installs."""
    meta = metadata("analytex-async")
    found: dict[str, set[str]] = {name: set() for name in meta.get_all("Provides-Extra") or []}
    for line in meta.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        for name, installs in found.items():
            if requirement.marker is not None and requirement.marker.evaluate({"extra": name}):
                installs.add(requirement.name)
    return found


def table_rows(text: str, header: str) -> dict[str, list[str]]:
    """The rows of the markdown table under ``header``, by their first cell's backticked name."""
    lines = text[text.index(header) :].splitlines()[2:]
    rows: dict[str, list[str]] = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_install_table_lists_every_extra_with_what_it_installs() -> None:
    table = table_rows((DOCS / "index.md").read_text(encoding="utf-8"), "| extra | installs |")
    for extra, installs in extras().items():
        if extra in {"test", "lint", "docs"}:  # the project's own, not for users
            continue
        assert extra in table, f"docs/index.md's extras table lacks {extra!r}"
        cell = table[extra][0].lower()
        if extra == "all":
            continue  # "every extra above"
        for name in installs - {"analytex-async"}:
            assert name.lower() in cell, f"{extra!r} installs {name}, the table does not say so"


def test_the_dataframe_extra_says_it_brings_no_dataframe_library() -> None:
    assert extras()["dataframe"] == {"narwhals"}
    table = table_rows((DOCS / "index.md").read_text(encoding="utf-8"), "| extra | installs |")
    assert "bring your own pandas, polars or pyarrow" in table["dataframe"][0]


def commands(group: click.Group, prefix: str = "") -> list[str]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found += commands(command, f"{path} ")
        else:
            found.append(path)
    return found


def test_the_cli_page_names_every_command() -> None:
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    table = page[page.index("| command | does |") : page.index("## The demo")]
    for path in commands(cli):
        named = f"`analytex-async {path}" in page or f"`{path} " in page or f"`{path}`" in page
        assert named, f"docs/cli.md never names `analytex-async {path}`"
    for path in ("import users", "import companies", "import events", "sync users", "jobs"):
        assert f"`analytex-async {path}" in table or f"`{path} " in table, path


def test_every_api_host_the_docs_name_is_ours() -> None:
    for page in PAGES:
        for host in re.findall(r"https?://([A-Za-z0-9.-]+)", page.read_text(encoding="utf-8")):
            if "analytex" in host and "userpilot" not in host:
                raise AssertionError(f"{page.name} names {host}, not one of {sorted(OUR_HOSTS)}")
            if "userpilot" in host:
                assert host in OUR_HOSTS, (page.name, host)

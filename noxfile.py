"""Developer tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PACKAGE = "analytex_async"
PYTHON_PATHS = ["analytex_async", "tests", "examples", "noxfile.py"]


def ensure_redis_server(session: nox.Session) -> None:
    """The Redis tests and bench_sync start a real redis-server (Debian's package): install it."""
    if shutil.which("redis-server"):
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        session.error("the tests need redis-server: sudo apt-get install redis-server")
    session.run("apt-get", "update", "-qq", external=True)
    session.run("apt-get", "install", "-y", "-qq", "redis-server", external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (every async test on asyncio and on trio)."""
    ensure_redis_server(session)
    session.install("-e", ".[all,test]")
    session.run("pytest", *session.posargs)


@nox.session(python=["3.10", "3.11", "3.12", "3.13"])
def tests_all_pythons(session: nox.Session) -> None:
    """Run the test suite on every supported Python that is installed."""
    ensure_redis_server(session)
    session.install("-e", ".[all,test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the architecture's import contracts."""
    session.install("-e", ".[lint]")
    paths = [*PYTHON_PATHS, *(["benchmarks"] if Path("benchmarks").is_dir() else [])]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[all,lint]")
    session.run("mypy", "--strict", PACKAGE)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    session.install("-e", ".[all,docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


BENCHMARKS = [
    "throughput", "memory", "stall", "end_to_end", "peers", "background", "parquet", "sync",
    "otel", "export", "soak",
]  # fmt: skip


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks (``nox -s bench -- stall peers`` for some); fail if any misses a target.

    Every benchmark runs even after a miss, so one run shows all the figures.
    """
    ensure_redis_server(session)  # bench_sync's Redis state, bench_soak's fleet
    session.install("-e", ".[all]", "trio", "posthog", "segment-analytics-python")
    missed = []
    for name in session.posargs or BENCHMARKS:
        try:
            session.run("python", f"benchmarks/bench_{name}.py")
        except CommandFailed:
            missed.append(name)
    if missed:
        session.error(f"target missed: {', '.join(missed)}")

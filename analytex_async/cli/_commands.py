"""The commands besides ``import`` and ``sync``: demo, identify, jobs, job, emulator.

This module assembles the whole command line: importing it registers every command on the
``cli`` group (``import`` comes from ``_import_command``, ``sync`` from ``_sync_command``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any

import anyio
import click
from rich.console import Console

from .._bulk._jobs import is_finished, wait_until_finished
from .._config import is_loopback_host
from .._models import Job, JobStatus
from ._app import (
    INTERRUPTED,
    PROG,
    CliError,
    CliUsageError,
    Settings,
    cli,
    run_async,
)
from ._display import JobDisplay, import_display
from ._export_command import export, exports, lookup
from ._import_command import import_group
from ._progress import ImportWatch, counted
from ._report import job_json
from ._summary import jobs_table, output_console
from ._sync_command import sync_group

__all__ = ["cli"]

cli.add_command(import_group)
cli.add_command(sync_group)
cli.add_command(export)
cli.add_command(exports)
cli.add_command(lookup)


# -- demo ---------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--users",
    default=50_000,
    show_default=True,
    type=click.IntRange(100, 1_000_000),
    help="How many users to generate.",
)
def demo(users: int) -> None:
    """Import generated users into a local emulator: the product at work, no account needed.

    Starts the emulator on a free loopback port, writes a sample file with a few invalid
    records, imports it through the real pipeline (validation, batches, rate governor, NDJSON
    uploads, jobs) with the progress display, and prints the summary.
    """
    try:
        import uvicorn  # noqa: F401, PLC0415 - needs the optional `emulator` extra

        from ._demo import DEMO_RATE, run_demo  # noqa: PLC0415
    except ImportError as exc:
        raise CliUsageError(
            f'the demo needs {exc.name}: pip install "analytex-async[emulator]"'
        ) from None
    out = output_console()
    watch = ImportWatch(DEMO_RATE)
    display = import_display(watch, Console(stderr=True, highlight=False))
    try:
        outcome = run_async(None, partial(run_demo, out, display, users=users))
    except KeyboardInterrupt:
        click.echo(
            f"\n{PROG}: interrupted: the demo stopped after "
            f"{counted(watch.progress.rows_sent, 'row')} were sent",
            err=True,
        )
        raise click.exceptions.Exit(INTERRUPTED) from None
    if not outcome.ok:
        raise CliError(
            f"the demo did not go as planned: {outcome.report.rows_rejected} rows rejected "
            f"(expected {outcome.planted}), {len(outcome.report.failed_jobs)} job(s) failed"
        )


# -- identify -----------------------------------------------------------------------------------


def parse_metadata(pairs: Sequence[str]) -> dict[str, Any]:
    """Read ``--metadata`` options: ``KEY=VALUE`` (a string) or ``KEY:=JSON`` (any JSON value).

    Args:
        pairs: The options' values.

    Returns:
        The metadata.

    Raises:
        click.BadParameter: A pair has no ``=``, no key, or a value that is not JSON.
    """
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key == ":":
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'--metadata'")
        if key.endswith(":"):
            key = key[:-1]
            try:
                metadata[key] = json.loads(value)
            except ValueError:
                raise click.BadParameter(
                    f"{pair!r}: the value after ':=' is not JSON", param_hint="'--metadata'"
                ) from None
        else:
            metadata[key] = value
    return metadata


@cli.command()
@click.argument("user_id")
@click.option(
    "--metadata",
    "-m",
    multiple=True,
    metavar="KEY=VALUE",
    help="A profile property, repeatable. KEY:=JSON sets a number, boolean, null or object.",
)
@click.option("--company", metavar="ID", help="The id of the user's company.")
@click.pass_obj
def identify(
    settings: Settings, user_id: str, metadata: tuple[str, ...], company: str | None
) -> None:
    """Identify one user and update their profile (POST /v1/identify)."""
    properties = parse_metadata(metadata)

    async def send() -> None:
        async with settings.client() as client:
            await client.identify(user_id, metadata=properties or None, company=company)

    run_async(settings, send)
    click.echo(f"identified {user_id}" + (f" (company {company})" if company else ""))


# -- jobs ---------------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.pass_obj
def jobs(settings: Settings, as_json: bool) -> None:
    """List the account's background jobs."""

    async def fetch() -> list[Job]:
        async with settings.client() as client:
            return await client.list_jobs()

    listed = run_async(settings, fetch)
    if as_json:
        click.echo(settings.redact(json.dumps([job_json(job) for job in listed])))
    elif not listed:
        click.echo("no jobs")
    else:
        output_console().print(jobs_table(listed, settings.redact))


async def _watch_job(
    settings: Settings, job_id: str, wait: bool, rows_per_minute: float | None, console: Console
) -> Job:
    options = {} if rows_per_minute is None else {"rows_per_minute": rows_per_minute}
    async with settings.client(**options) as client:
        job = await client.get_job(job_id)
        seen_at = anyio.current_time()
        if not wait or is_finished(job):
            return job
        with JobDisplay(console, settings.redact(job_id)) as display:
            display.show(job)
            job = await wait_until_finished(
                client.get_job,
                job,
                rows_per_minute=client.rows_per_minute,
                seen_at=seen_at,
                on_poll=display.show,
            )
            display.show(job)
    return job


@cli.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Wait until the job completes or fails.")
@click.option(
    "--rows-per-minute",
    type=click.FloatRange(min=0, min_open=True),
    help="The server's processing rate, which sets how often a waited-for job is polled "
    "(the API processes 1,200).  [default: 1200]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.pass_obj
def job(
    settings: Settings, job_id: str, wait: bool, rows_per_minute: float | None, as_json: bool
) -> None:
    """Show a background job; exit status 1 if it failed."""
    err = Console(stderr=True, highlight=False)
    found = run_async(settings, partial(_watch_job, settings, job_id, wait, rows_per_minute, err))
    if as_json:
        click.echo(settings.redact(json.dumps(job_json(found))))
    else:
        output_console().print(jobs_table([found], settings.redact))
    if found.status is JobStatus.FAILED:
        reason = found.raw.get("error")
        detail = f": {reason}" if isinstance(reason, str) and reason else ""
        raise CliError(settings.redact(f"job {found.job_id} failed{detail}"))


# -- emulator -----------------------------------------------------------------------------------


def _check_emulator_keys(
    ctx: click.Context, param: click.Parameter, keys: tuple[str, ...]
) -> tuple[str, ...]:
    # The key itself is never quoted: it may be a real one.
    for key in keys:
        if not key:
            raise click.BadParameter("a key must not be empty", ctx, param)
        if key != key.strip():
            # The server strips the header's surrounding spaces: such a key could never match.
            raise click.BadParameter("a key must not start or end with white space", ctx, param)
    return keys


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--rows-per-minute",
    default=1200.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="How fast bulk jobs are processed.",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    metavar="KEY",
    callback=_check_emulator_keys,
    help="Accept only this API key (repeatable); without it, any non-empty key. The global "
    "--api-key and ANALYTEX_API_KEY configure clients, never the emulator.",
)
def emulator(host: str, port: int, rows_per_minute: float, api_keys: tuple[str, ...]) -> None:
    """Serve a local Analytex emulator.

    It accepts any non-empty API key unless --api-key names the ones to accept. What it stored
    can be read at /_emulator/users/ID, /_emulator/companies/ID, /_emulator/events and
    /_emulator/jobs (read-only, no key).
    """
    try:
        from ..emulator import run  # noqa: PLC0415 - needs the optional `emulator` extra
    except ImportError as exc:
        raise CliUsageError(
            f'the emulator needs {exc.name}: pip install "analytex-async[emulator]"'
        ) from None
    accepted = "the --api-key keys only" if api_keys else "any API key"
    if not is_loopback_host(host):
        click.echo(
            f"warning: serving on {host}, reachable beyond this machine; the emulator "
            f"accepts {accepted}",
            err=True,
        )
    click.echo(
        f"Analytex emulator on http://{host}:{port}, accepting {accepted} "
        f"(what it stored: http://{host}:{port}/_emulator/jobs; Ctrl-C to stop)",
        err=True,
    )
    try:
        run(
            host=host,
            port=port,
            rows_per_minute=rows_per_minute,
            api_keys=list(api_keys) if api_keys else None,
        )
    except KeyboardInterrupt:
        click.echo("emulator stopped", err=True)

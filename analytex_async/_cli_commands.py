"""The command line's commands (click). Every error is one line on stderr, never the key."""

from __future__ import annotations

import click

from ._client import is_loopback_host
from ._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="analytex-async")
def cli() -> None:
    """analytex-async: the Analytex server API from your shell."""


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
def emulator(host: str, port: int, rows_per_minute: float) -> None:
    """Serve a local Analytex emulator (any non-empty API key is accepted)."""
    try:
        from .emulator import run  # noqa: PLC0415 - needs the optional `emulator` extra
    except ImportError as exc:
        raise click.ClickException(
            f'the emulator needs {exc.name}: pip install "analytex-async[emulator]"'
        ) from None
    if not is_loopback_host(host):
        click.echo(
            f"warning: serving on {host}, reachable beyond this machine; the emulator "
            "accepts any API key",
            err=True,
        )
    click.echo(f"Analytex emulator on http://{host}:{port} (Ctrl-C to stop)", err=True)
    run(host=host, port=port, rows_per_minute=rows_per_minute)

"""The ``analytex-async`` command (and ``python -m analytex_async``).

The commands live in ``_commands`` (which assembles the click group); this module only makes a
missing ``cli`` extra a clear one-line error rather than a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line.

    Args:
        argv: The arguments (defaults to ``sys.argv[1:]``).
    """
    try:
        from ._commands import cli  # noqa: PLC0415 - needs the optional `cli` extra
    except ImportError as exc:
        missing = exc.name or "a dependency"
        print(
            f'analytex-async: the command line needs {missing}: pip install "analytex-async[cli]"',
            file=sys.stderr,
        )
        raise SystemExit(USAGE_ERROR) from None
    cli.main(args=list(argv) if argv is not None else None, prog_name="analytex-async")

"""``python -m analytex_async``: the same as the ``analytex-async`` command."""

from .cli import main

main()

"""The ``--rejects`` file: every rejected record, written as it is found.

The library keeps only the first 1,000 rejections in its result (a file of bad rows must not
grow memory), so the file is fed by the import's ``on_invalid`` callable, one line per
rejection as it happens, and holds every one of them however many there are.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO

from .._models import Rejection


def rejection_json(rejection: Rejection) -> str:
    """One rejection as the file's line: a JSON object, without the newline.

    It holds ``position`` (zero-based, among the source's records), ``line`` (one-based line in
    the file; ``null`` when unknown), ``reason`` and ``record`` (the record as read, or the raw
    text of a line that did not decode; a value JSON cannot hold is written as its ``repr``).

    Args:
        rejection: The rejection.
    """
    entry = {
        "position": rejection.position,
        "line": rejection.line,
        "reason": rejection.reason,
        "record": rejection.record,
    }
    return json.dumps(entry, ensure_ascii=False, default=repr)


class RejectsFile:
    """Writes rejections to a file as NDJSON, in the order they are found (source order).

    Call it with each ``Rejection`` (it is the import's ``on_invalid`` callable). Opening
    truncates the file, so that a mistake in the path fails before anything is sent and the
    file never mixes two runs.

    Writes go through a buffered stream: one line costs no system call, so writing on the event
    loop does not stall it.

    Args:
        path: The file to (over)write.

    Attributes:
        path: The file.
        written: Rejections written so far.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._out: IO[str] | None = None

    def open(self) -> RejectsFile:
        """Create (or empty) the file.

        Raises:
            OSError: The file cannot be written.
        """
        self._out = self.path.open("w", encoding="utf-8")
        return self

    def __call__(self, rejection: Rejection) -> None:
        """Write one rejection as a line.

        Args:
            rejection: The rejection.
        """
        if self._out is None:
            raise RuntimeError("the rejects file is not open")
        self._out.write(rejection_json(rejection) + "\n")
        self.written += 1

    def close(self) -> None:
        """Flush and close the file (again: nothing happens)."""
        if self._out is not None:
            out, self._out = self._out, None
            out.close()

    def __enter__(self) -> RejectsFile:
        return self if self._out is not None else self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""The ``--rejects`` file: every rejected record, written as it is found.

The library keeps only the first 1,000 rejections in its result (a file of bad rows must not
grow memory), so the file is fed by the import's ``on_invalid`` callable, one line per
rejection as it happens, and holds every one of them however many there are.

The lines go to a partial file beside the target (the same directory, so that the final rename
is atomic) and replace the target only when the import ends: an interrupted or aborted run
leaves an existing file as it was, and the partial one says what that run found.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import IO

from .._models import Rejection

PARTIAL_SUFFIX = ".partial"


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
    """Writes rejections as NDJSON, in the order they are found (source order).

    Call it with each ``Rejection`` (it is the import's ``on_invalid`` callable). ``open``
    creates the partial file beside ``path`` (so that a mistake in the path fails before
    anything is sent); ``keep`` moves it into place once the import has ended; ``abandon``
    leaves ``path`` untouched and keeps the partial file only if it holds a rejection.

    Writes go through a buffered stream: one line costs no system call, so writing on the event
    loop does not stall it.

    Args:
        path: The file the rejections are for.

    Attributes:
        path: The file the rejections are for.
        partial: The partial file, once open.
        written: Rejections written so far.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial: Path | None = None
        self.written = 0
        self._out: IO[str] | None = None

    def open(self) -> RejectsFile:
        """Create the partial file beside ``path``.

        Raises:
            OSError: The directory cannot be written.
        """
        while self._out is None:
            # A name of its own: two runs writing the same target never share a partial file.
            candidate = self.path.with_name(
                f"{self.path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
            )
            with contextlib.suppress(FileExistsError):
                self._out = candidate.open("x", encoding="utf-8")
                self.partial = candidate
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

    def _close(self) -> None:
        if self._out is not None:
            out, self._out = self._out, None
            out.close()

    def keep(self) -> None:
        """The import ended: flush, and move the partial file into place (atomically).

        An existing file keeps its permissions.

        Raises:
            OSError: The partial file cannot be moved into place.
        """
        self._close()
        if self.partial is None:
            return
        with contextlib.suppress(OSError):
            shutil.copymode(self.path, self.partial)
        os.replace(self.partial, self.path)
        self.partial = None

    def abandon(self) -> Path | None:
        """The import did not end: leave ``path`` as it was.

        Returns:
            The partial file, kept when it holds a rejection (else removed), or ``None``.
        """
        self._close()
        partial, self.partial = self.partial, None
        if partial is not None and not self.written:
            with contextlib.suppress(OSError):
                partial.unlink()
            return None
        return partial

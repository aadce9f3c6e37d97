"""``Export`` and ``ExportFile``: an export job as the appex host describes it.

Read liberally (appex-api.md): ``progress`` is a string that may hold ``"42"``, ``"42.5"`` or
``"42%"``; any status but ``completed`` and ``failed`` means running; files come in
``all_chunks`` order. A download link's query is a credential (a signed URL), so neither class
shows it in ``repr`` or ``str``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from .._models import _parse_time, job_id_of

TERMINAL_STATUSES = frozenset({"completed", "failed"})
"""The statuses that end an export; anything else means it still runs."""


def without_query(url: str) -> str:
    """A link as it may be shown: its query (a signature) and fragment replaced by ``…``.

    Args:
        url: A download link.

    Returns:
        The link without its query, e.g. ``"https://bucket.example/a.ndjson?…"``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable link>"
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return shown + ("?…" if parts.query or parts.fragment else "")


def parse_progress(value: object) -> float | None:
    """A server's ``progress`` as a percentage from 0 to 100, or ``None`` when unknown.

    Numbers and numeric strings (``"42"``, ``"42.5"``, ``"42%"``, ``" 7 % "``) are taken as
    percentages and kept within 0 to 100; anything else is unknown, never an error.

    Args:
        value: The field as the server sent it.

    Returns:
        The percentage, or ``None``.

    Examples:
        >>> parse_progress("42.5%")
        42.5
        >>> parse_progress("soon") is None
        True
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            number = float(text)
        except ValueError:
            return None
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        return None
    if not math.isfinite(number):
        return None
    return min(max(number, 0.0), 100.0)


def _count(value: object) -> int | None:
    return len(value) if isinstance(value, list) else None


@attrs.frozen(repr=False)
class ExportFile:
    """One file of a finished export: its name and its download link.

    The link is signed (its query is a credential that expires): ``repr`` and ``str`` show it
    without the query.

    Attributes:
        filename: The file's name (downloads are saved under it).
        url: The full download link.
    """

    filename: str
    url: str

    def __repr__(self) -> str:
        return f"ExportFile(filename={self.filename!r}, url={without_query(self.url)!r})"

    __str__ = __repr__


def _order_files(files: list[ExportFile], chunks: object) -> tuple[ExportFile, ...]:
    """The files in ``all_chunks`` order, when every file names its chunk; else as sent."""
    if not isinstance(chunks, list) or not chunks:
        return tuple(files)
    names = [str(chunk) for chunk in chunks]

    def position(file: ExportFile) -> int | None:
        for index, chunk in enumerate(names):
            if chunk == file.filename or chunk in file.filename or file.filename in chunk:
                return index
        return None

    positions = [position(file) for file in files]
    if any(p is None for p in positions):
        return tuple(files)
    order = sorted(range(len(files)), key=lambda i: positions[i] or 0)
    return tuple(files[i] for i in order)


@attrs.frozen(repr=False)
class Export:
    """An export job of the appex host (``client.start_export`` / ``get_export``).

    Attributes:
        job_id: The server's id for the export (opaque; may look like ``export:jobs:…``).
        status: The status as the server says it (``"pending"``, ``"completed"``, ...).
        progress: How far it is, as a percentage from 0 to 100; ``None`` when unknown.
        files: Its files, in chunk order (filled in once the export completed).
        chunks_total: How many chunks the export has, when the server says.
        chunks_completed: How many of them are done, when the server says.
        start_time: When it started, when known (aware).
        end_time: When it ended, when known (aware).
        raw: The object as the server sent it (it holds the links: never printed).

    Examples:
        >>> Export.from_api({"job_id": "e1", "status": "pending", "progress": "42%"}).progress
        42.0
    """

    job_id: str
    status: str
    progress: float | None = None
    files: tuple[ExportFile, ...] = ()
    chunks_total: int | None = None
    chunks_completed: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False)

    @property
    def is_finished(self) -> bool:
        """Whether the export has stopped for good (``completed`` or ``failed``)."""
        return self.status.lower() in TERMINAL_STATUSES

    @property
    def is_completed(self) -> bool:
        """Whether the export completed (its files can be downloaded)."""
        return self.status.lower() == "completed"

    def __repr__(self) -> str:
        progress = "None" if self.progress is None else f"{self.progress:g}"
        return (
            f"Export(job_id={self.job_id!r}, status={self.status!r}, progress={progress}, "
            f"files={list(self.files)!r}, chunks_completed={self.chunks_completed!r}, "
            f"chunks_total={self.chunks_total!r})"
        )

    __str__ = __repr__

    def file(self, filename: str) -> ExportFile | None:
        """The file of that name, if the export has one.

        Args:
            filename: The file's name.
        """
        return next((f for f in self.files if f.filename == filename), None)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Export:
        """Build an export from the server's JSON object, liberally.

        Only ``job_id`` is required; a missing status reads as ``"pending"``, and links without
        a usable ``filename`` and ``url`` are skipped.

        Args:
            data: The decoded JSON object.

        Returns:
            The export.

        Raises:
            ValueError: ``data`` has no usable ``job_id``.
        """
        job_id = job_id_of(data)
        if job_id is None:
            raise ValueError("export object without a job_id")
        status = data.get("status")
        links = data.get("presigned_urls")
        files = [
            ExportFile(link["filename"], link["url"])
            for link in (links if isinstance(links, list) else [])
            if isinstance(link, Mapping)
            and isinstance(link.get("filename"), str)
            and isinstance(link.get("url"), str)
            and link["filename"]
        ]
        return cls(
            job_id=job_id,
            status=status if isinstance(status, str) and status else "pending",
            progress=parse_progress(data.get("progress")),
            files=_order_files(files, data.get("all_chunks")),
            chunks_total=_count(data.get("all_chunks")),
            chunks_completed=_count(data.get("completed_chunks")),
            start_time=_parse_time(data.get("start_time")),
            end_time=_parse_time(data.get("end_time")),
            raw=dict(data),
        )

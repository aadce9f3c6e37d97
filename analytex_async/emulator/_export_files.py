"""The files an emulated export serves: its events in NDJSON (gzip), CSV, Parquet or Avro.

The layouts are the ones appex-api.md decides: every event schema column; ``metadata`` an
object in NDJSON and a JSON string elsewhere; ``inserted_at`` an ISO string in the text formats
and a UTC timestamp in Parquet and Avro; an absent value left out of NDJSON and an empty cell
in CSV. Written from the spec, not from the client's readers (the emulator never imports them).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import importlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["EVENT_COLUMNS", "FILE_SUFFIXES", "render"]

EVENT_COLUMNS: tuple[str, ...] = (
    "app_token",
    "event_type",
    "event_name",
    "user_id",
    "company_id",
    "source",
    "inserted_at",
    "hostname",
    "pathname",
    "screen_width",
    "screen_height",
    "device_type",
    "user_agent",
    "operating_system",
    "browser",
    "browser_language",
    "session",
    "country_code",
    "metadata",
)
"""The vendor's event data schema, in its order."""
_INTS = ("screen_width", "screen_height")
FILE_SUFFIXES: Mapping[str, str] = {
    "ndjson": ".ndjson.gz",
    "csv": ".csv",
    "parquet": ".parquet",
    "avro": ".avro",
}

Row = Mapping[str, Any]
"""An event as the emulator exports it: schema fields, ``inserted_at`` an aware datetime."""


def _iso(moment: dt.datetime) -> str:
    return (
        moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def _ndjson(rows: Sequence[Row]) -> bytes:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
    lines = []
    for row in rows:
        body = {name: row[name] for name in EVENT_COLUMNS if row.get(name) is not None}
        body["inserted_at"] = _iso(row["inserted_at"])
        lines.append(dumps(body))
    text = "\n".join(lines) + "\n" if lines else ""
    return gzip.compress(text.encode(), compresslevel=1, mtime=0)


def _csv(rows: Sequence[Row]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: a lone \r in a cell is quoted
    writer.writerow(EVENT_COLUMNS)
    for row in rows:
        cells = []
        for name in EVENT_COLUMNS:
            value = row.get(name)
            if value is None:
                cells.append("")
            elif name == "metadata":
                cells.append(json.dumps(value, ensure_ascii=False, default=str))
            elif name == "inserted_at":
                cells.append(_iso(value))
            else:
                cells.append(str(value))
        writer.writerow(cells)
    return out.getvalue().encode()


def _columns(rows: Sequence[Row]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {name: [] for name in EVENT_COLUMNS}
    for row in rows:
        for name in EVENT_COLUMNS:
            value = row.get(name)
            if name == "metadata":
                value = json.dumps(value if value is not None else {}, default=str)
            columns[name].append(value)
    return columns


def _parquet(rows: Sequence[Row]) -> bytes:
    try:
        pa = importlib.import_module("pyarrow")
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise RuntimeError(
            "the emulator writes Parquet with pyarrow, which is not installed"
        ) from None
    fields = [
        pa.field(
            name,
            pa.timestamp("us", tz="UTC")
            if name == "inserted_at"
            else pa.int64()
            if name in _INTS
            else pa.string(),
        )
        for name in EVENT_COLUMNS
    ]
    table = pa.table(_columns(rows), schema=pa.schema(fields))
    out = io.BytesIO()
    parquet.write_table(table, out, row_group_size=max(1, min(len(rows), 50_000)))
    return out.getvalue()


def _avro(rows: Sequence[Row]) -> bytes:
    try:
        fastavro = importlib.import_module("fastavro")
    except ImportError:
        raise RuntimeError(
            "the emulator writes Avro with fastavro, which is not installed"
        ) from None

    def kind(name: str) -> object:
        if name == "inserted_at":
            return {"type": "long", "logicalType": "timestamp-micros"}
        if name in _INTS:
            return ["null", "long"]
        if name == "metadata":
            return "string"
        return ["null", "string"]

    schema = {
        "type": "record",
        "name": "Event",
        "namespace": "analytex.export",
        "fields": [{"name": name, "type": kind(name)} for name in EVENT_COLUMNS],
    }
    columns = _columns(rows)
    records = [{name: columns[name][index] for name in EVENT_COLUMNS} for index in range(len(rows))]
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records)
    return out.getvalue()


def render(rows: Sequence[Row], file_format: str) -> bytes:
    """One export file's bytes.

    Args:
        rows: Its events, in order.
        file_format: ``"ndjson"`` (gzip-compressed), ``"csv"``, ``"parquet"`` or ``"avro"``.

    Returns:
        The file.

    Raises:
        RuntimeError: The format's writer (pyarrow, fastavro) is not installed.
    """
    writers = {"ndjson": _ndjson, "csv": _csv, "parquet": _parquet, "avro": _avro}
    return writers[file_format](rows)

"""Export a month of events into one Parquet file for the warehouse (and a summary on stdout).

The export API writes the events as files (chunks) on object storage; ``export_table`` starts an
export, waits for it, downloads each Parquet file (without the API key: the links are signed)
and reads it row group by row group into one Arrow table. ``metadata`` stays a JSON string
column (its keys vary from event to event); ``inserted_at`` is a UTC timestamp.

What it shows:

* ``export_table`` with filters (``--event-type``, repeatable);
* progress while the server works (``wait_for_export(on_progress=...)``);
* writing the table with pyarrow, ready for DuckDB, Spark, BigQuery or pandas/polars;
* an exit status a scheduler can act on: 0 written, 1 the export failed.

Run it (``ANALYTEX_API_KEY``, and ``ANALYTEX_BASE_URL`` or ``ANALYTEX_APPEX_URL``, from the
environment)::

    pip install "analytex-async[parquet]"
    python examples/export_to_parquet.py --start 2026-11-01 --end 2026-12-01 events-nov.parquet
"""

import argparse
import collections
import sys

import anyio
import pyarrow.parquet as pq

from analytex_async import AsyncAnalytex, Export, ExportFailedError


def show(export: Export) -> None:
    """Progress on stderr: the server's status and percentage."""
    progress = "" if export.progress is None else f" {export.progress:g}%"
    print(f"export {export.job_id}: {export.status}{progress}", file=sys.stderr)


# --8<-- [start:export]
async def export_month(start: str, end: str, output: str, event_types: list[str] | None) -> int:
    """Write the events of [start, end) to ``output``; the exit status."""
    async with AsyncAnalytex() as client:  # reads ANALYTEX_API_KEY
        export = await client.start_export(
            start=start, end=end, format="parquet", event_types=event_types
        )
        try:
            export = await client.wait_for_export(export, on_progress=show)
        except ExportFailedError as exc:
            print(f"export failed: {exc}", file=sys.stderr)
            return 1
        table = await client.export_table(job_id=export)  # the finished export's files
    pq.write_table(table, output)
    kinds = collections.Counter(table.column("event_type").to_pylist())
    print(f"{table.num_rows} events in {len(export.files)} files -> {output}")
    for kind, count in sorted(kinds.items()):
        print(f"  {kind}: {count}")
    return 0


# --8<-- [end:export]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the Parquet file to write")
    parser.add_argument("--start", required=True, help="first day (ISO 8601, UTC)")
    parser.add_argument("--end", required=True, help="the day after the last (exclusive)")
    parser.add_argument("--event-type", action="append", help="only this event type")
    args = parser.parse_args()
    sys.exit(anyio.run(export_month, args.start, args.end, args.output, args.event_type))

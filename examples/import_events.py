"""Import historical events (a backfill) from an NDJSON or CSV export, through ``import_events``.

What it shows:

* ``import_events`` on a file: each line is checked against the event schema, valid events go
  out in files of up to 10,000 events, one import job at a time, retried when the API asks;
* progress as it goes (a backfill of millions of events takes a while);
* a journal: run the same command again after a crash or Ctrl-C and what was accepted is
  skipped, so nothing is sent twice;
* rejected events written to a file, to fix and import on their own.

The export has one event per line (NDJSON), ``event_type`` one of ``identify_user``,
``identify_company``, ``page_view`` or ``track`` with that type's fields; ``source`` defaults
to ``backend-http-import``, and a timestamp without an offset is UTC. A line (shown wrapped)::

    {"event_type": "track", "user_id": "user_001", "event_name": "Signed Up",
     "inserted_at": "2024-07-28T08:55:35Z", "metadata": {"plan": "pro"}}

A CSV export has the same fields as columns (``metadata`` a JSON object; any other column a
metadata key). Events from your own tables are built with ``Event.track(...)``,
``Event.page_view(...)``, ``Event.identify_user(...)``: any iterable of them is a source too.

Run it (``ANALYTEX_API_KEY`` and ``ANALYTEX_BASE_URL`` from the environment)::

    python examples/import_events.py events-2024.ndjson
"""

import argparse
import json
import sys

import anyio

from analytex_async import AsyncAnalytex, ImportAbortedError, ImportProgress, Rejection


def show_progress(progress: ImportProgress) -> None:
    """Print how far the import got."""
    print(f"  {progress.rows_sent:,} events sent, {progress.rows_rejected:,} rejected", flush=True)


# --8<-- [start:backfill]
async def backfill(export: str, journal: str, rejects_path: str) -> int:
    """Import the export; the exit status: 0 all sent, 1 some rejected, 2 stopped."""
    async with await anyio.open_file(rejects_path, "w", encoding="utf-8") as rejects:

        async def keep(rejection: Rejection) -> None:  # every rejection, as it happens
            line = {"position": rejection.position, "line": rejection.line}
            await rejects.write(json.dumps({**line, "reason": rejection.reason}) + "\n")

        async with AsyncAnalytex() as client:  # reads ANALYTEX_API_KEY
            try:
                result = await client.import_events(
                    export, journal=journal, on_progress=show_progress, on_invalid=keep
                )
            except ImportAbortedError as exc:
                print(f"import stopped: {exc}; run again to resume", file=sys.stderr)
                return 2
    print(
        f"{result.rows_sent} events imported, {result.rows_skipped} already imported by an "
        f"earlier run, {result.rows_rejected} rejected (see {rejects_path})"
    )
    return 1 if result.rows_rejected else 0


# --8<-- [end:backfill]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="a .ndjson, .jsonl or .csv file (optionally .gz)")
    parser.add_argument("--journal", help="resume file (default: EXPORT.journal)")
    parser.add_argument("--rejects", default="rejected-events.ndjson", help="rejected events")
    args = parser.parse_args()
    journal = args.journal or f"{args.export}.journal"
    sys.exit(anyio.run(backfill, args.export, journal, args.rejects))

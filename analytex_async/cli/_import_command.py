"""``analytex-async import users`` / ``companies`` / ``events``: the options and the run.

Exit status: 0 all sent (and completed), 1 records rejected, a job failed or the server refused
a batch, 2 usage or configuration error, 3 the API could not be reached or kept failing, 130
interrupted (the summary of what was accepted is printed first, with how to resume).

The options, the rejects file and the run itself are shared with ``sync`` (``_file_command``);
what is the import's own here: ``--journal``, ``--dry-run``, the library call and the hints on
how to resume.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import click

from .._client import AsyncAnalytex
from .._models import ImportResult
from ._app import PROG
from ._display import ImportDisplay
from ._file_command import FileCommand, add_file_commands, file_options
from ._import import RejectionSink, run_import
from ._progress import counted
from ._report import ImportReport
from ._summary import resume_hint


@click.group("import")
def import_group() -> None:
    """Import users, companies or events from a file or stdin, through the bulk pipeline.

    FILE is NDJSON (.ndjson, .jsonl) or CSV (.csv), optionally gzipped (.gz), a Parquet file
    (.parquet, with the parquet extra), or - for stdin (NDJSON unless --format csv; gzip is
    recognised). Every record is validated first; invalid
    ones are reported (--rejects saves them), valid ones go in batches at the rate, one job at a
    time. Exit status: 0 all sent (and completed), 1 records rejected or a job failed, 2 usage or
    configuration error, 3 the API could not be reached or kept failing, 130 interrupted.
    """


_import_options = file_options(
    rejects_help="Write each rejected record, with its reason and line, to this file (replaced "
    "when the import ends; a run stopped early leaves it as it was).",
    no_wait_help="Return once the last batch is accepted.",
    csv_multiline_help="Read CSV quoted cells that span lines (up to 100 lines, 1 MiB a "
    "record). Without it one line is one record, and a line whose quotes do not pair up is "
    "rejected.",
    before_rejects=[
        click.option(
            "--journal",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Record each accepted batch in this file; the same command run again with "
            "it resumes where the import stopped.",
        ),
    ],
    before_json=[
        click.option(
            "--dry-run", is_flag=True, help="Read and validate every record; send nothing."
        ),
    ],
)


@attrs.frozen(kw_only=True)
class _ImportFile(FileCommand):
    """One ``import`` run: the library's ``import_*`` call, resumable with ``--journal``."""

    journal: Path | None = None

    action = "import"

    async def send(
        self, client: AsyncAnalytex, display: ImportDisplay, on_invalid: RejectionSink | None
    ) -> ImportResult:
        return await run_import(client, self.request, display, on_invalid=on_invalid)

    def accepted(self, report: ImportReport) -> str:
        return f" in {counted(report.batches, 'batch')}; their jobs go on ({PROG} jobs)"

    def hint_after_interrupt(self) -> str | None:
        return None if self.dry_run else resume_hint(self.journal)

    def hint_after_stop(self, report: ImportReport) -> str | None:
        return resume_hint(self.journal) if report.rows_sent else None


add_file_commands(
    import_group,
    _import_options,
    _ImportFile,
    {
        "users": ("user", "Import users (user_id, company_id, metadata) from FILE."),
        "companies": ("company", "Import companies (company_id, metadata) from FILE."),
        "events": (
            "event",
            "Import historical events (event_type, user_id, ..., inserted_at) from FILE.",
        ),
    },
)

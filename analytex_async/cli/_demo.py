"""``analytex-async demo``: the whole product in one command, with no account and no network.

It starts the emulator on a free loopback port, writes a sample file of generated users (a few
of them deliberately invalid), imports it through the real pipeline over HTTP exactly as
``analytex-async import users FILE`` would (with the same progress display), and prints the
summary: rows read, sent and rejected with the reasons, the jobs the server completed.

Both the emulator and the client run at an accelerated 600,000 rows a minute (the real API
processes 1,200), so 50,000 users take seconds rather than 42 minutes.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import anyio
import anyio.to_thread
import attrs
from rich.console import Console

from .._client import AsyncAnalytex
from ._display import ImportDisplay
from ._import import run_import
from ._progress import count
from ._report import ImportReport, ImportRequest
from ._summary import print_summary

DEMO_USERS = 50_000
DEMO_RATE = 600_000.0
"""Rows a minute, for the emulator's jobs and the client's governor alike."""
DEMO_KEY = "demo-key"
"""The emulator takes any key: this one never leaves the machine."""
NEXT_RATE = 60_000
"""Rows a minute of the emulator the demo suggests next, and of the import it suggests: the
client keeps to the server's pace (its default is the real API's 1,200)."""
SAMPLE_NAME = "demo-users.ndjson"
MIN_USERS = 100

# Where (as a fraction of the sample) the invalid records go, and what is wrong with each: one
# of every kind of mistake the pipeline catches before sending.
PLANTED: tuple[tuple[float, str], ...] = (
    (0.0247, '{"user_id": "", "metadata": {"plan": "pro"}}'),
    (0.19998, '{"metadata": {"plan": "free", "seats": 3}}'),
    (0.34, '{"user_id": "{id}", "metadata": {"address": {"city": "Lyon"}}}'),
    (0.46912, '{"user_id": "{id}", "metadata": {"tags": ["beta", "vip"]}}'),
    (0.62674, '{"user_id": "{id}", "plan": "pro"}'),
    (0.88888, '{"user_id": "{id}", "metadata": {"plan": "pro"'),
)
PLANS = ("free", "starter", "pro", "enterprise")


def planted_positions(users: int) -> dict[int, str]:
    """The positions of the deliberately invalid records in a sample, with their lines.

    Args:
        users: The sample's size (at least 100).

    Returns:
        Position → the NDJSON line at that position.
    """
    return {
        round(fraction * users): line.replace("{id}", f"user_{round(fraction * users):05d}")
        for fraction, line in PLANTED
    }


def write_sample(path: Path, users: int, seed: int = 7) -> int:
    """Write the sample: ``users`` NDJSON records, a few of them invalid.

    Args:
        path: The file to write.
        users: How many records.
        seed: Seeds the generated values, so every demo shows the same data.

    Returns:
        How many records are invalid on purpose.
    """
    rng = random.Random(seed)  # noqa: S311 - sample data, not a secret
    planted = planted_positions(users)
    with path.open("w", encoding="utf-8") as out:
        for position in range(users):
            if position in planted:
                out.write(planted[position] + "\n")
                continue
            record = {
                "user_id": f"user_{position:05d}",
                "company_id": f"company_{position % 400:03d}",
                "metadata": {
                    "name": f"User {position}",
                    "email": f"user{position}@example.com",
                    "plan": rng.choice(PLANS),
                    "seats": rng.randint(1, 50),
                    "trial": rng.random() < 0.2,
                    "signed_up": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                },
            }
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    return len(planted)


def next_commands() -> list[str]:
    """The commands the demo suggests next: an emulator, and an import at the emulator's pace."""
    return [
        f"analytex-async emulator --rows-per-minute {NEXT_RATE}      # in another shell",
        "ANALYTEX_API_KEY=any ANALYTEX_BASE_URL=http://127.0.0.1:8000 analytex-async import "
        f"users FILE.ndjson --rows-per-minute {NEXT_RATE} --rejects rejects.ndjson",
    ]


@attrs.frozen
class DemoOutcome:
    """What the demo did.

    Attributes:
        report: The import's report.
        planted: Records that were invalid on purpose.
        stored: Users the emulator holds at the end.
    """

    report: ImportReport
    planted: int
    stored: int

    @property
    def ok(self) -> bool:
        """Whether the demo showed what it should.

        Exactly the planted records rejected, every other one sent, and no job failed.
        """
        report = self.report
        return (
            report.rows_rejected == self.planted
            and report.rows_sent == report.rows_read - self.planted
            and not report.failed_jobs
            and report.error is None
        )


async def run_demo(out: Console, display: ImportDisplay, *, users: int = DEMO_USERS) -> DemoOutcome:
    """Serve the emulator, import a generated sample through it, and print the summary.

    Args:
        out: Where the narration and the summary go (stdout).
        display: The progress display (on stderr), watching at ``DEMO_RATE``.
        users: The sample's size (at least 100).

    Returns:
        What happened.
    """
    from ..emulator import Emulator, serve  # noqa: PLC0415 - needs the optional `emulator` extra

    emulator = Emulator(rows_per_minute=DEMO_RATE)
    with tempfile.TemporaryDirectory(prefix="analytex-demo-") as folder:
        path = Path(folder) / SAMPLE_NAME
        planted = await anyio.to_thread.run_sync(write_sample, path, users)
        async with serve(emulator) as base_url:
            out.print(
                f"[bold]Emulator[/] serving the Analytex API on {base_url} "
                f"(jobs run at {count(DEMO_RATE)} rows/min; the real API: 1,200)",
                soft_wrap=True,
            )
            out.print(
                f"[bold]Sample[/] {SAMPLE_NAME}: {count(users)} users, {planted} of them "
                "invalid on purpose",
                soft_wrap=True,
            )
            out.print(
                f"[bold]Importing[/] through the real pipeline: validate, batch (10,000 rows), "
                f"govern ({count(DEMO_RATE)} rows/min), upload NDJSON, wait for each job",
                soft_wrap=True,
            )
            request = ImportRequest("user", path, SAMPLE_NAME, total=users)
            async with AsyncAnalytex(
                api_key=DEMO_KEY, base_url=base_url, rows_per_minute=DEMO_RATE
            ) as client:
                result = await run_import(client, request, display)
            stored = len(emulator.users)
    report = ImportReport.of_result(request, result)
    out.print()
    print_summary(out, report, rejects=None, redact=lambda text: text)
    out.print()
    out.print(
        f"The emulator ended with {count(stored)} users stored. Next, against a server of "
        "your own:",
        soft_wrap=True,
    )
    for command in next_commands():
        out.print(f"  {command}", soft_wrap=True, markup=False)
    return DemoOutcome(report, planted, stored)

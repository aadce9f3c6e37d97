"""The progress displays and the record count ahead, without a server.

Each display is driven by hand-made ``ImportProgress`` reports and a fake clock.
"""

from __future__ import annotations

import gzip
import io
import re
import threading
from pathlib import Path

import pytest
from rich.console import Console

from analytex_async import ImportProgress
from analytex_async.cli._display import PlainImportDisplay, RichImportDisplay
from analytex_async.cli._import import count_records
from analytex_async.cli._progress import ImportWatch, clock_time


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_watch_measures_the_pace_after_the_first_batch_and_the_eta() -> None:
    clock = FakeClock()
    watch = ImportWatch(rows_per_minute=1_200, total=30_000, clock=clock)
    assert watch.eta() == pytest.approx(30_000 * 60 / 1_200)  # the configured rate, at first
    watch.update(ImportProgress(rows_read=20_000, rows_sent=10_000, batches_sent=1))
    clock.now += 500
    watch.update(ImportProgress(rows_read=30_000, rows_sent=15_000, rows_completed=10_000))
    assert watch.rate() == pytest.approx(1_200)  # 10,000 rows paced the 500 s before batch 2
    assert watch.eta() == pytest.approx(20_000 * 60 / 1_200)  # 30,000 less 10,000 completed
    assert watch.waiting_text() == "reading and sending"
    watch.update(ImportProgress(rows_sent=15_000, rows_rejected=3, waiting_for="rate"))
    assert watch.expected_rows == 29_997
    # The 5,000 rows of batch 2 pay for 250 s at 1,200 rows a minute.
    next_batch = clock_time(watch.wall_clock() + 250)
    assert watch.waiting_text() == f"next batch at {next_batch}: the rate (1,200 rows/min)"


def test_the_plain_display_writes_a_line_per_batch_and_a_progress_line() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    watch = ImportWatch(rows_per_minute=1_200, total=50_000, clock=clock)
    display = PlainImportDisplay(watch, lambda: stream)
    display.update(ImportProgress(rows_read=10_001, rows_sent=10_000, batches_sent=1))
    clock.now += 65
    display.update(ImportProgress(rows_read=20_001, rows_sent=10_000, waiting_for="job"))
    assert stream.getvalue() == "analytex-async: batch 1 accepted: 10,000 rows (10,000 sent)\n"
    assert watch.line(display.stages) == (
        "[0:01:05] read 20,001 of 50,000, sent 10,000, completed 0, rejected 0; "
        "rate -, ETA 0:41:40; waiting for the server's running job"
    )


def test_accepted_batches_are_noted_at_most_twice_a_second() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    display = PlainImportDisplay(ImportWatch(rows_per_minute=60_000, clock=clock), lambda: stream)
    for batch in range(1, 6):
        display.update(ImportProgress(rows_sent=batch * 10, batches_sent=batch))
        clock.now += 0.2
    assert stream.getvalue().splitlines() == [
        "analytex-async: batch 1 accepted: 10 rows (10 sent)",
        "analytex-async: batches 2-4 accepted: 30 rows (40 sent)",
    ]


def test_the_rich_display_draws_the_stages_the_rate_and_what_it_waits_for() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    watch = ImportWatch(rows_per_minute=600, total=1_000)
    display = RichImportDisplay(watch, console)
    with display:
        display.update(ImportProgress(rows_read=400, rows_sent=300, batches_sent=3))
        display.update(
            ImportProgress(
                rows_read=500, rows_sent=300, rows_completed=200, rows_rejected=2,
                batches_sent=3, waiting_for="retry",
            )
        )  # fmt: skip
        display.board.refresh()
    drawn = out.getvalue()
    assert "batches 1-3 accepted: 300 rows (300 sent)" in drawn
    assert "500 / 1,000   50%" in drawn
    assert "completed by the server" in drawn
    assert "200 / 998" in drawn
    assert "2 rejected" in drawn
    assert "waiting for a retry after an error" in drawn


def screen(output: str) -> list[str]:
    """What a terminal shows after ``output``: text, newlines, cursor up, erase line."""
    lines = [""]
    row = 0
    for match in re.finditer(r"\x1b\[\??([0-9;]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+", output):
        text = match.group(0)
        if text == "\n":
            row += 1
            lines.extend([""] * (row + 1 - len(lines)))
        elif match.group(2) == "A":
            row -= int(match.group(1) or 1)
        elif match.group(2) == "K":
            lines[row] = ""
        elif text not in ("\r",) and not text.startswith("\x1b"):
            lines[row] += text
    return [line for line in lines if line]


def test_the_rich_board_redraws_in_place() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    watch = ImportWatch(rows_per_minute=600, total=1_000)
    display = RichImportDisplay(watch, console)
    with display:
        for rows in range(100, 1_100, 100):
            display.update(ImportProgress(rows_read=rows))
            display.board.refresh()
    shown = screen(out.getvalue())
    assert [line.split()[0] for line in shown] == ["read", "sent", "completed", "0"]
    assert "1,000 / 1,000  100%" in shown[0]
    assert shown[-1].endswith("· done")


def test_counting_records_ahead_reads_ndjson_csv_and_gzip(tmp_path: Path) -> None:
    stop = threading.Event()
    ndjson = tmp_path / "a.ndjson"
    ndjson.write_bytes(b'{"user_id": "a"}\n\n{"user_id": "b"}')
    assert count_records(ndjson, None, stop) == 2
    csv_gz = tmp_path / "a.csv.gz"
    csv_gz.write_bytes(gzip.compress(b"user_id\nu1\nu2\nu3\n"))
    assert count_records(csv_gz, None, stop) == 3
    assert count_records(tmp_path / "missing.ndjson", None, stop) is None
    stop.set()
    assert count_records(ndjson, None, stop) is None


def test_a_parquet_file_is_counted_from_its_footer(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "users.parquet"
    # Text cells full of newlines: counting lines of the file's bytes would be far off.
    pq.write_table(pa.table({"user_id": [f"u{i}\n\n" for i in range(1_234)]}), path)
    assert count_records(path, None, threading.Event()) == 1_234
    path.write_bytes(b"not parquet\n\n")
    assert count_records(path, None, threading.Event()) is None

"""How the command line shows an import moving: rich on a terminal, a plain line elsewhere.

A display shows an :class:`~._progress.ImportWatch`: :class:`RichImportDisplay` redraws a live
board on a terminal, :class:`PlainImportDisplay` writes one line every few seconds (logs, CI,
pipes). Both also note each accepted batch as it happens. Everything goes to stderr, so stdout
stays for the summary. :class:`JobDisplay` shows one job being waited for.

The pipeline may wait minutes without reporting (the rate budget between two batches of 10,000
rows at the real API's 1,200 rows a minute is over 8 minutes), so the displays redraw on their
own clock (``keep_showing``), not only when a report arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import IO, Any, ClassVar

import anyio
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from .._models import ImportProgress, Job
from ._progress import DRY_RUN_STAGES, STAGES, ImportWatch, count, counted, duration

PLAIN_INTERVAL = 5.0
"""Seconds between two progress lines when stderr is not a terminal."""
RICH_REFRESH = 0.2
"""Seconds between two redraws of the live board."""
NOTE_SPACING = 0.5
"""Seconds between two lines about accepted batches at least."""


class ImportDisplay:
    """Shows an ``ImportWatch``; the base does the bookkeeping both displays share.

    Use it as a context manager around the import, pass ``update`` as ``on_progress``, and run
    ``keep_showing`` in a task for as long as the import runs.

    Args:
        watch: The state to show.
        stages: Which counts to show: ``"read"``, ``"sent"``, ``"completed"``.
    """

    def __init__(self, watch: ImportWatch, stages: Iterable[str] = STAGES) -> None:
        self.watch = watch
        self.stages = tuple(stages)
        self._batches = 0
        self._sent = 0
        self._noted_at: float | None = None

    def __enter__(self) -> ImportDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def update(self, progress: ImportProgress) -> None:
        """Take a report of the pipeline (the ``on_progress`` callback).

        Args:
            progress: The report.
        """
        self.watch.update(progress)
        now = self.watch.clock()
        spaced = self._noted_at is None or now - self._noted_at >= NOTE_SPACING
        if progress.batches_sent > self._batches and spaced:
            # With small batches, several are accepted a second: one line says them all.
            first, last = self._batches + 1, progress.batches_sent
            which = f"batch {last}" if first == last else f"batches {first}-{last}"
            rows = progress.rows_sent - self._sent
            self._batches, self._sent, self._noted_at = last, progress.rows_sent, now
            sent = count(progress.rows_sent)
            self.note(f"{which} accepted: {counted(rows, 'row')} ({sent} sent)")
        self.redraw()

    def set_total(self, total: int) -> None:
        """Tell how many records the source holds, once counted.

        Args:
            total: The number of records.
        """
        self.watch.total = total
        self.redraw()

    def note(self, text: str) -> None:
        """Show one event (an accepted batch) as a line of its own."""

    def redraw(self) -> None:
        """Bring the display up to date with the watch."""

    async def keep_showing(self) -> None:
        """Redraw on the display's own clock until cancelled."""
        await anyio.sleep_forever()


class PlainImportDisplay(ImportDisplay):
    """One progress line every few seconds, and a line per accepted batch, on a stream.

    Args:
        watch: The state to show.
        stream: Returns where to write (stderr), looked up at each write.
        stages: Which counts to show.
        interval: Seconds between two progress lines.
        prefix: Put before every line.
    """

    def __init__(
        self,
        watch: ImportWatch,
        stream: Callable[[], IO[str]],
        stages: Iterable[str] = STAGES,
        *,
        interval: float = PLAIN_INTERVAL,
        prefix: str = "analytex-async: ",
    ) -> None:
        super().__init__(watch, stages)
        self._stream = stream
        self.interval = interval
        self.prefix = prefix

    def _write(self, text: str) -> None:
        stream = self._stream()
        stream.write(f"{self.prefix}{text}\n")
        stream.flush()

    def note(self, text: str) -> None:
        """Write one event as a line."""
        self._write(text)

    async def keep_showing(self) -> None:
        """Write the progress line every ``interval`` seconds until cancelled."""
        while True:
            await anyio.sleep(self.interval)
            self._write(self.watch.line(self.stages))


class _CountColumn(ProgressColumn):
    """``12,345 / 50,000  25%``, or ``12,345`` while the total is unknown."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text(count(task.completed), style="progress.download")
        percent = task.completed * 100 / task.total if task.total else 100.0
        return Text(
            f"{count(task.completed)} / {count(task.total)}  {min(percent, 100):3.0f}%",
            style="progress.download",
        )


class _Board(Progress):
    """rich's ``Progress`` with the import's status line under the rows."""

    def __init__(
        self,
        watch: ImportWatch,
        stages: tuple[str, ...],
        *columns: ProgressColumn,
        **options: Any,
    ) -> None:
        # Set first: rich may draw while it initialises.
        self.watch = watch
        self.stages = stages
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterable[RenderableType]:
        """The rows, then the rejected count, rate, ETA and what the import waits for."""
        yield self.make_tasks_table(self.tasks)
        rejected = f"{count(self.watch.progress.rows_rejected)} rejected"
        if self.watch.progress.rows_skipped:
            rejected += f" · {count(self.watch.progress.rows_skipped)} skipped (journal)"
        if self.stages == DRY_RUN_STAGES:
            parts = [rejected, f"elapsed {duration(self.watch.elapsed)}"]
        else:
            parts = [rejected, *self.watch.status_parts()]
        yield Text(" · ".join(parts), style="progress.description")


class RichImportDisplay(ImportDisplay):
    """A live board on a terminal: a bar per stage, the rate, the ETA, what it waits for.

    Args:
        watch: The state to show.
        console: The console to draw on (stderr).
        stages: Which counts to show.
    """

    LABELS: ClassVar[dict[str, str]] = {
        "read": "read",
        "sent": "sent",
        "completed": "completed by the server",
    }

    def __init__(
        self, watch: ImportWatch, console: Console, stages: Iterable[str] = STAGES
    ) -> None:
        super().__init__(watch, stages)
        self.board = _Board(
            watch,
            self.stages,
            TextColumn("{task.description:<24}"),
            BarColumn(bar_width=32),
            _CountColumn(),
            console=console,
            auto_refresh=False,
            transient=False,
        )
        self._tasks = {
            stage: self.board.add_task(self.LABELS[stage], total=None) for stage in self.stages
        }

    def __enter__(self) -> ImportDisplay:
        self.board.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.watch.outcome = "done" if exc is None else "stopped"
        self.redraw()
        self.board.refresh()
        self.board.stop()

    def note(self, text: str) -> None:
        """Print one event above the board."""
        self.board.console.print(Text(text), soft_wrap=True)

    def redraw(self) -> None:
        """Update every bar from the watch (``keep_showing`` draws them)."""
        p = self.watch.progress
        values = {"read": p.rows_read, "sent": p.rows_sent, "completed": self.watch.rows_completed}
        totals = {
            "read": self.watch.total,
            "sent": self.watch.expected_rows,
            "completed": self.watch.expected_rows,
        }
        for stage, task in self._tasks.items():
            self.board.update(task, completed=values[stage], total=totals[stage])

    async def keep_showing(self) -> None:
        """Draw a few times a second (elapsed time and ETA move between reports).

        Reports only update the counts: with small batches they come many times a second,
        and drawing each would cost more than the import.
        """
        while True:
            self.board.refresh()
            await anyio.sleep(RICH_REFRESH)


def import_display(
    watch: ImportWatch,
    console: Console,
    *,
    stages: Iterable[str] = STAGES,
    interval: float = PLAIN_INTERVAL,
) -> ImportDisplay:
    """The display that suits ``console``: live on a terminal, plain lines elsewhere.

    Args:
        watch: The state to show.
        console: A console on stderr.
        stages: Which counts to show.
        interval: Seconds between two plain progress lines.

    Returns:
        The display.
    """
    if console.is_terminal and not console.is_dumb_terminal:
        return RichImportDisplay(watch, console, stages)
    return PlainImportDisplay(watch, lambda: console.file, stages, interval=interval)


class JobDisplay:
    """Shows a job being waited for (``job JOB_ID --wait``).

    On a terminal, a live bar; elsewhere, a line whenever the status changes and every few
    seconds while it does not.

    Args:
        console: The console to draw on (stderr).
        label: The job's name as shown (its id, redacted).
        interval: Seconds between two plain lines while nothing changes.
        clock: Seconds, for the plain lines' spacing.
    """

    def __init__(
        self,
        console: Console,
        label: str,
        *,
        interval: float = PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.label = label
        self.interval = interval
        self.clock = clock
        self._live = console.is_terminal and not console.is_dumb_terminal
        self._last: tuple[str, float] | None = None
        self.board = Progress(
            TextColumn("job {task.description}"),
            BarColumn(bar_width=32),
            _CountColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self._task = self.board.add_task(label, total=None, status="")

    def __enter__(self) -> JobDisplay:
        if self._live:
            self.board.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live:
            self.board.stop()

    def show(self, job: Job) -> None:
        """Show the job's latest state.

        Args:
            job: The job as last fetched.
        """
        status = job.status.value
        done = job.completed_rows or 0
        if self._live:
            self.board.update(self._task, completed=done, total=job.total_rows, status=status)
            return
        now = self.clock()
        last = self._last
        if last is not None and last[0] == status and now - last[1] < self.interval:
            return
        self._last = (status, now)
        rows = f"{count(done)}" + (f" / {count(job.total_rows)}" if job.total_rows else "")
        self.console.print(
            Text(f"analytex-async: job {self.label}: {status}, {rows} rows"), soft_wrap=True
        )

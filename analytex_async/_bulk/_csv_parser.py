"""The CSV parser: rows under a header become record dicts, one physical line per record.

A CSV file read a line at a time cannot lose lines to a stray quote: a line whose quotes do not
pair up is rejected on its own and the next line is read as usual. Quoted cells that span lines
are read only when asked (``multiline=True``, the import option ``csv_multiline``), and then a
record may run only so far (``CSV_MULTILINE_MAX_LINES``, ``CSV_MULTILINE_MAX_CHARS``) before it
is rejected and the lines it took are read again. The C ``csv`` reader does the parsing; this
module only decides which lines it sees.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator

from .._errors import ValidationError
from .._events import CLIENT_NUMBER_FIELDS
from .._types import RecordKind
from ._parsers import BlockParser, SourceRecord, encode_text, raw_text
from ._records import MISSING, EventColumns

# How far one CSV record may run when quoted cells may span lines (``csv_multiline=True``):
# far enough for any real multi-line note or address, short enough that a stray quote costs
# a bounded amount of memory and re-reading before it is rejected. They live with the parser,
# not in ``_constants``, because they bound how it reads, not anything the API limits.
CSV_MULTILINE_MAX_LINES = 100
CSV_MULTILINE_MAX_CHARS = 1 << 20
# Handed to the csv reader in place of the next line to end a record held open by a quoted
# cell: the quote closes the cell and the line end ends the record.
_CLOSE_QUOTE = '"\n'


class CsvParser(BlockParser):
    """CSV rows (dialect ``excel``) under a header, each row a record dict.

    By default one physical line is one record: a line whose quotes do not pair up (an odd
    number of them, or a quoted cell still open at the line's end) is a bad record naming that
    line, and reading goes on at the next line, so one stray quote can neither swallow the rows
    after it nor stop the file. A doubled quote inside a quoted cell (``"b""c"``) is a quote,
    as always.

    With ``multiline=True`` a quoted cell may span lines, up to ``CSV_MULTILINE_MAX_LINES``
    lines and ``CSV_MULTILINE_MAX_CHARS`` characters for the whole record; a record that runs
    past either, or is still open at the end of the file, is a bad record naming the line where
    it opened, and reading goes on at the line after that one, so the lines it swallowed are
    read again as records of their own. A row the csv module refuses (a cell over its field
    size limit) is a bad record too, with the same resumption.

    Args:
        lines: The file's text, line by line, opened with ``newline=""``.
        name: The file, as the user named it.
        kind: Which id column the header must have (``user_id`` or ``company_id``).
        multiline: Read quoted cells that span lines.
    """

    def __init__(
        self, lines: Iterable[str], name: str, kind: RecordKind, *, multiline: bool = False
    ) -> None:
        super().__init__(name)
        self._lines = iter(lines)
        self._max_lines = CSV_MULTILINE_MAX_LINES if multiline else 1
        self._multiline = multiline
        # What the feeder and _fill share: the number of the line that starts the record being
        # read, the lines handed to the csv reader for it (numbered on from _start), why the
        # feeder cut it short (or None), and lines read but still to hand over, last first.
        self._start = 1
        self._row: list[str] = []
        self._cut: str | None = None
        self._replay: list[str] = []
        self._rows = csv.reader(self._feed(), dialect="excel")
        self._kind = kind
        self._id_column = {"user": "user_id", "company": "company_id", "event": "event_type"}[kind]
        self._header: list[str] | None = None
        self._id_index = 0
        self._company_index: int | None = None
        self._metadata: list[tuple[int, str]] = []
        self._events: EventColumns | None = None  # an event file's columns

    def _lines_read(self) -> int:
        return self._start - 1 + len(self._row) + len(self._replay)

    def _feed(self) -> Iterator[str]:
        """The lines for the csv reader, cutting short a record that runs past its bound.

        The reader asks for a second line within one record only while a quoted cell is open,
        so a record is cut by handing over ``_CLOSE_QUOTE`` instead of the next line: the
        reader returns the record, and ``_fill`` sees ``_cut`` and rejects it. The line held
        back is handed over later. The common path (a record of one line) does no more than
        take a line and note it.
        """
        replay = self._replay
        row = self._row
        keep = row.append
        for line in self._lines:
            if row and self._too_long(line):
                replay.append(line)
                yield _CLOSE_QUOTE
            else:
                keep(line)
                yield line
            if replay:
                yield from self._feed_again()
        # The input has ended; what is left is lines to read again, or a quoted cell still open.
        while row or replay:
            if row:
                self._cut = "end"
                yield _CLOSE_QUOTE
            yield from self._feed_again()

    def _feed_again(self) -> Iterator[str]:
        """Hand over the lines ``_reject_row`` put back, as ``_feed`` hands over new ones."""
        replay = self._replay
        row = self._row
        while replay:
            line = replay.pop()
            if row and self._too_long(line):
                replay.append(line)
                yield _CLOSE_QUOTE
            else:
                row.append(line)
                yield line

    def _too_long(self, line: str) -> bool:
        """Whether ``line`` would take the open record past its bound (noted in ``_cut``)."""
        row = self._row
        if len(row) >= self._max_lines:
            self._cut = "lines"
        elif sum(map(len, row)) + len(line) > CSV_MULTILINE_MAX_CHARS:
            self._cut = "chars"
        return self._cut is not None

    def _fill(self, out: list[SourceRecord], max_lines: int) -> bool:
        rows = self._rows
        row_lines = self._row
        single_line = not self._multiline
        stop = self._start + max_lines
        while self._start < stop:
            try:
                row = next(rows)
            except StopIteration:
                if self._header is None:
                    raise ValidationError(
                        f"{self.name}: the file is empty: a CSV file needs a header row with "
                        f"a {self._id_column!r} column",
                        field="source",
                        line=1,
                    ) from None
                return True
            except csv.Error as exc:
                self._reject_row(out, f"not valid CSV: {exc}")
                continue
            # One line per record: a line with an odd number of quotes is rejected even when
            # the csv module would read it (a bare quote inside an unquoted cell): that is the
            # shape of the last line of a cell meant to span lines, and a quote inside a cell
            # must be doubled in a quoted cell anyway.
            if self._cut is not None or (
                single_line and '"' in row_lines[0] and row_lines[0].count('"') & 1
            ):
                self._reject_row(out, self._unclosed_quote())
                continue
            start = self._start
            self._start = start + len(row_lines)
            row_lines.clear()
            if not any(cell.strip() for cell in row):
                continue  # blank lines, or rows of empty cells: no data, not a record
            if self._header is None:
                self._set_header(row, start)
            else:
                out.append(self._row_record(row, start))
        return False

    def _unclosed_quote(self) -> str:
        """The reason a record with an unclosed quote is rejected (``_cut`` says why it ended)."""
        start = self._start
        if not self._multiline:
            return (
                f"unclosed quote on line {start}: its quotes do not pair up, and a quoted cell "
                "must end on the line where it opens (cells that span lines are read only with "
                "csv_multiline=True, or --csv-multiline on the command line)"
            )
        if self._cut == "end":
            return (
                f"unclosed quote: the quoted cell opened on line {start} is still open at the "
                "end of the file"
            )
        if self._cut == "lines":
            return (
                f"unclosed quote: the quoted cell opened on line {start} runs past "
                f"{CSV_MULTILINE_MAX_LINES} lines"
            )
        return (
            f"unclosed quote: the record opened on line {start} runs past "
            f"{CSV_MULTILINE_MAX_CHARS:,} characters"
        )

    def _reject_row(self, out: list[SourceRecord], reason: str) -> None:
        """Reject the record being read as its first line, and read on from the line after it.

        The lines after the first are handed to the reader again: each becomes a record (or a
        rejection) of its own, so no line is lost inside a record that was never read.
        """
        lines = self._row
        start = self._start
        raw = lines[0].rstrip("\r\n") if lines else ""
        self._replay.extend(reversed(lines[1:]))
        lines.clear()
        self._cut = None
        self._start = start + 1
        if self._header is None:
            raise ValidationError(
                f"{self.name}: the header row is not usable: {reason}", field="source", line=start
            )
        out.append(self._bad_record(start, raw_text(encode_text(raw)), reason))

    def _set_header(self, row: list[str], line: int) -> None:
        # A BOM survives in a text stream opened without utf-8-sig.
        names = [cell.strip() for cell in row]
        names[0] = names[0].lstrip("\ufeff").strip()
        found = ", ".join(repr(raw_text(encode_text(name))) for name in names)
        if _bad_cell(names) is not None:
            raise ValidationError(
                f"{self.name}: the header is not valid UTF-8 (columns: {found})",
                field="source",
                line=line,
            )
        if "" in names:
            raise ValidationError(
                f"{self.name}: header column {names.index('') + 1} has no name (columns: {found})",
                field="source",
                line=line,
            )
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValidationError(
                f"{self.name}: duplicate header column(s) "
                f"{', '.join(map(repr, duplicates))} (columns: {found})",
                field="source",
                line=line,
            )
        if self._id_column not in names:
            raise ValidationError(
                f"{self.name}: the header has no {self._id_column!r} column, which {self._kind} "
                f"records need (columns: {found})",
                field="source",
                line=line,
            )
        self._header = names
        self._id_index = names.index(self._id_column)
        if self._kind == "user" and "company_id" in names:
            self._company_index = names.index("company_id")
        if self._kind == "event":
            self._events = EventColumns(names)
        taken = {self._id_index, self._company_index}
        self._metadata = [(i, name) for i, name in enumerate(names) if i not in taken]

    def _row_record(self, row: list[str], line: int) -> SourceRecord:
        assert self._header is not None  # noqa: S101  # rows come after the header
        width = len(self._header)
        if len(row) > width:
            return self._bad_row(row, line, f"row has {len(row)} fields, header has {width}")
        bad = _bad_cell(row)
        if bad is not None:
            return self._bad_row(
                row, line, f"line {line} is not valid UTF-8 (in column {self._header[bad]!r})"
            )
        if len(row) < width:
            row = row + [""] * (width - len(row))
        if self._events is not None:
            record = self._events.record(row, _CSV_CELLS)
        else:
            record = {self._id_column: row[self._id_index]}
            if self._company_index is not None and row[self._company_index]:
                record["company_id"] = row[self._company_index]
            record["metadata"] = {name: row[i] for i, name in self._metadata if row[i]}
        result = SourceRecord(self._position, line, record)
        self._position += 1
        return result

    def _bad_row(self, row: list[str], line: int, reason: str) -> SourceRecord:
        buffer = io.StringIO()
        csv.writer(buffer, dialect="excel").writerow(row)
        return self._bad_record(
            line, raw_text(encode_text(buffer.getvalue().rstrip("\r\n"))), reason
        )


def _bad_cell(cells: list[str]) -> int | None:
    """The index of the first cell holding a lone surrogate (an undecodable byte), if any."""
    for index, cell in enumerate(cells):
        if not cell.isascii():
            try:
                cell.encode("utf-8")
            except UnicodeEncodeError:
                return index
    return None


class _CsvEventCells:
    """How an event file's CSV cells read (see ``EventColumns``): text, empty meaning missing.

    CSV cannot say null, so an empty cell is left out. ``screen_width`` and ``screen_height``
    cells made of digits are numbers; a ``metadata`` cell holds a JSON object, whose values keep
    their JSON types (text that is not JSON is kept for the event check to refuse).
    """

    def field(self, name: str, cell: str) -> object:
        if not cell:
            return MISSING
        # isdigit() alone takes "²", which int() refuses.
        digits = cell.isascii() and cell.isdigit()
        return int(cell) if digits and name in CLIENT_NUMBER_FIELDS else cell

    def metadata(self, cell: str) -> object:
        if not cell:
            return MISSING
        try:
            return json.loads(cell)
        except ValueError:
            return cell

    def key(self, name: str, cell: str) -> object:
        return cell or MISSING


_CSV_CELLS = _CsvEventCells()

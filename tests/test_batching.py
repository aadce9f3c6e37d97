"""Batching: wire records → NDJSON lines → batches under the record and byte limits."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytex_async import ValidationError
from analytex_async._bulk._batching import (
    MAX_BATCH_BYTES,
    MAX_RECORDS,
    MAX_REQUEST_BYTES,
    Batch,
    Batcher,
    encode_record,
)
from analytex_async._bulk._multipart import multipart_overhead


def line_of(size: int, fill: bytes = b"x") -> bytes:
    """An NDJSON-shaped line of exactly ``size`` bytes (newline included)."""
    return fill * (size - 1) + b"\n"


def feed(batcher: Batcher, items: list[tuple[int, bytes]]) -> list[tuple[Batch, int | None]]:
    """Add every item, then flush; return each batch with the position whose add closed it."""
    out: list[tuple[Batch, int | None]] = []
    for position, line in items:
        closed = batcher.add(position, line)
        if closed is not None:
            out.append((closed, position))
    last = batcher.flush()
    if last is not None:
        out.append((last, None))
    return out


# -- encode_record --------------------------------------------------------------------------


def test_encode_record_is_compact_utf8_json_ending_with_one_newline() -> None:
    line = encode_record({"user_id": "u1", "metadata": {"city": "Zürich", "n": 1.5, "ok": True}})
    assert line == '{"user_id":"u1","metadata":{"city":"Zürich","n":1.5,"ok":true}}\n'.encode()


def test_encode_record_escapes_newlines_so_the_only_newline_ends_the_line() -> None:
    line = encode_record({"user_id": "a\nb\r\u2028", "metadata": {"k\n": "v\n"}})
    assert line.count(b"\n") == 1
    assert line.endswith(b"\n")
    assert json.loads(line) == {"user_id": "a\nb\r\u2028", "metadata": {"k\n": "v\n"}}


def test_encode_record_refuses_nan() -> None:
    with pytest.raises(ValidationError):
        encode_record({"user_id": "u1", "metadata": {"x": float("nan")}})


# -- Batch -----------------------------------------------------------------------------------


def test_batch_counts_its_lines_and_bytes() -> None:
    batch = Batch(4, [b"ab\n", b"c\n"], [7, 9])
    assert (batch.index, batch.count, batch.size) == (4, 2, 5)
    assert batch.lines == (b"ab\n", b"c\n")
    assert batch.positions == (7, 9)
    assert batch.part == ()
    assert batch.label == "4"


def test_batch_repr_does_not_print_the_payload() -> None:
    batch = Batch(0, [line_of(100_000)] * 3, [5, 6, 9])
    text = repr(batch)
    assert len(text) < 120
    assert "<3 lines>" in text
    assert "<5..9>" in text


def test_a_batch_is_never_empty() -> None:
    with pytest.raises(ValueError, match="at least one line"):
        Batch(0, [], [])


def test_a_batch_needs_one_position_per_line() -> None:
    with pytest.raises(ValueError, match="one position per line"):
        Batch(0, [b"a\n", b"b\n"], [1])


def test_halves_keep_the_index_and_extend_the_part() -> None:
    batch = Batch(7, [b"a\n", b"bb\n", b"ccc\n", b"dddd\n", b"e\n"], [0, 2, 3, 5, 8])
    first, second = batch.halves()
    assert (first.index, first.part, first.label) == (7, (0,), "7.0")
    assert (second.index, second.part, second.label) == (7, (1,), "7.1")
    assert first.lines == (b"a\n", b"bb\n")
    assert second.lines == (b"ccc\n", b"dddd\n", b"e\n")
    assert first.positions == (0, 2)
    assert second.positions == (3, 5, 8)
    assert (first.size, second.size) == (5, 11)
    deeper = second.halves()
    assert [half.label for half in deeper] == ["7.1.0", "7.1.1"]


def test_a_one_line_batch_cannot_be_halved() -> None:
    with pytest.raises(ValueError, match="single record"):
        Batch(3, [b"x\n"], [0]).halves()


@given(
    st.lists(st.binary(max_size=20).map(lambda b: b + b"\n"), min_size=2, max_size=60),
    st.integers(0, 1000),
    st.lists(st.integers(0, 1), max_size=3),
)
def test_halves_partition_the_batch_exactly(
    lines: list[bytes], index: int, part: list[int]
) -> None:
    positions = list(range(0, 3 * len(lines), 3))
    batch = Batch(index, lines, positions, part)
    first, second = batch.halves()
    assert first.lines + second.lines == batch.lines
    assert first.positions + second.positions == batch.positions
    assert first.size + second.size == batch.size
    assert first.count >= 1
    assert second.count >= 1
    assert 0 <= second.count - first.count <= 1
    assert (first.index, second.index) == (index, index)
    assert (first.part, second.part) == ((*part, 0), (*part, 1))


# -- Batcher: limits and arguments ------------------------------------------------------------


def test_api_limits_and_the_default_batch_budget() -> None:
    assert (MAX_RECORDS, MAX_REQUEST_BYTES) == (10_000, 50_000_000)
    # The batch budget leaves exactly the room of the framing with the longest upload file name
    # (a 32-character boundary).
    longest = "0" * 16 + "-" + "9" * 12 + ".1" * 20 + ".ndjson"
    assert MAX_REQUEST_BYTES - multipart_overhead(longest, "0" * 32) == MAX_BATCH_BYTES
    assert MAX_BATCH_BYTES == 49_999_752
    batcher = Batcher()
    assert (batcher.max_records, batcher.max_bytes) == (MAX_RECORDS, MAX_BATCH_BYTES)


@pytest.mark.parametrize("max_records", [0, -1, 10_001, True, 2.5, "10"])
def test_max_records_must_be_1_to_10000(max_records: object) -> None:
    with pytest.raises(ValueError, match="max_records"):
        Batcher(max_records=max_records)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_bytes", [0, -5, False, 1.0])
def test_max_bytes_must_be_a_positive_integer(max_bytes: object) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Batcher(max_bytes=max_bytes)  # type: ignore[arg-type]


def test_the_extreme_limits_are_accepted() -> None:
    assert Batcher(max_records=1, max_bytes=1).max_records == 1
    assert Batcher(max_records=10_000).max_records == 10_000


def test_25000_small_records_make_batches_of_10000_10000_5000() -> None:
    batcher = Batcher()
    items = [(position, encode_record({"user_id": f"u{position}"})) for position in range(25_000)]
    batches = feed(batcher, items)
    assert [(b.index, b.count) for b, _ in batches] == [(0, 10_000), (1, 10_000), (2, 5_000)]
    # A full batch comes out when the next record arrives, and the last one from flush().
    assert [closed_by for _, closed_by in batches] == [10_000, 20_000, None]
    assert batches[1][0].positions[0] == 10_000
    assert batches[2][0].positions[-1] == 24_999
    assert [line for b, _ in batches for line in b.lines] == [line for _, line in items]


def test_a_batch_closes_when_the_next_line_would_pass_the_byte_limit() -> None:
    batcher = Batcher(max_records=100, max_bytes=10)
    assert batcher.add(0, line_of(4)) is None
    assert batcher.add(1, line_of(6)) is None  # exactly 10 bytes: still fits
    closed = batcher.add(2, line_of(1))  # 11 would not
    assert closed is not None
    assert (closed.index, closed.positions, closed.size) == (0, (0, 1), 10)
    assert batcher.add(3, line_of(9)) is None  # 1 + 9 = 10
    closed = batcher.add(4, line_of(10))
    assert closed is not None
    assert (closed.index, closed.positions, closed.size) == (1, (2, 3), 10)
    last = batcher.flush()
    assert last is not None
    assert (last.index, last.positions, last.size) == (2, (4,), 10)
    assert batcher.flush() is None


def test_a_line_of_exactly_max_bytes_fits_alone_and_one_byte_more_does_not() -> None:
    batcher = Batcher(max_bytes=10)
    assert batcher.fits_alone(line_of(10))
    assert not batcher.fits_alone(line_of(11))
    with pytest.raises(ValueError, match=r"position 5 is 11 bytes encoded, over the 10-byte"):
        batcher.add(5, line_of(11))
    assert batcher.flush() is None  # the refused line was not kept


def test_a_line_without_its_newline_is_refused() -> None:
    batcher = Batcher()
    with pytest.raises(ValueError, match="must end with"):
        batcher.add(0, b'{"user_id":"u1"}')
    assert batcher.flush() is None


def test_flush_of_an_empty_batcher_is_none_and_indexes_continue_after_a_flush() -> None:
    batcher = Batcher(max_records=2)
    assert batcher.flush() is None
    batcher.add(0, b"a\n")
    first = batcher.flush()
    batcher.add(1, b"b\n")
    second = batcher.flush()
    assert first is not None
    assert second is not None
    assert (first.index, second.index) == (0, 1)
    assert second.positions == (1,)


def test_positions_need_not_be_contiguous() -> None:
    batcher = Batcher(max_records=3)
    batches = feed(batcher, [(p, b"{}\n") for p in (0, 1, 4, 9, 10)])
    assert [b.positions for b, _ in batches] == [(0, 1, 4), (9, 10)]


# -- Batcher: properties ---------------------------------------------------------------------


@st.composite
def batching_runs(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, bytes]]]:
    max_records = draw(st.integers(1, 12))
    max_bytes = draw(st.integers(1, 80))
    sizes = draw(st.lists(st.integers(1, 100), max_size=150))
    gaps = draw(st.lists(st.integers(1, 3), min_size=len(sizes), max_size=len(sizes)))
    positions = [sum(gaps[: i + 1]) for i in range(len(sizes))]
    items = [(p, line_of(size, bytes([97 + p % 26]))) for p, size in zip(positions, sizes)]
    return max_records, max_bytes, items


@settings(max_examples=300, deadline=None)
@given(batching_runs())
def test_every_line_lands_in_exactly_one_maximal_batch_in_order(
    run: tuple[int, int, list[tuple[int, bytes]]],
) -> None:
    max_records, max_bytes, items = run
    batcher = Batcher(max_records=max_records, max_bytes=max_bytes)
    # As the pipeline does: a line too large for any batch is rejected, never added.
    kept = [(p, line) for p, line in items if batcher.fits_alone(line)]

    batches = feed(batcher, kept)

    assert [b.index for b, _ in batches] == list(range(len(batches)))
    assert [line for b, _ in batches for line in b.lines] == [line for _, line in kept]
    assert [p for b, _ in batches for p in b.positions] == [p for p, _ in kept]
    for batch, closed_by in batches:
        assert 1 <= batch.count <= max_records
        assert 1 <= batch.size <= max_bytes
        assert batch.size == sum(map(len, batch.lines))
    for (batch, closed_by), (following, _) in itertools.pairwise(batches):
        # Closed only because the next line did not fit, and by the add of that very line.
        assert closed_by == following.positions[0]
        next_line = following.lines[0]
        assert batch.count == max_records or batch.size + len(next_line) > max_bytes
    if batches:
        assert batches[-1][1] is None  # the last batch comes from flush()

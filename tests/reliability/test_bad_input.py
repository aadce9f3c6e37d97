"""The bad-input corpus: whatever a caller hands over, the SDK answers with a clear
``ValidationError`` (before sending) or a ``Rejection`` (in an import), sends what is valid
intact, never crashes and never drops a record silently.

Hypothesis generates the corpus (unicode of every kind, lone surrogates, NUL, emoji, RTL,
integers beyond 64 bits, NaN / ±inf / -0.0, non-string keys, nested values, empty and white
space ids, files with a BOM, CRLF, blank lines, a truncated last line, invalid UTF-8, gzip
streams cut short). Every example is checked against an independent statement of the rules
(``*_ok`` below, written from the spec) and against what the in-process emulator stored.
The few huge-string cases near the 50 MB limit are written out by hand.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytex_async import ImportResult, PayloadTooLargeError, User, ValidationError
from analytex_async._bulk._batching import MAX_BATCH_BYTES, encode_record
from analytex_async.cli._commands import cli
from analytex_async.emulator import Emulator, serve
from analytex_async.testing import EmulatedAnalytex

from .conftest import REPORT

MAX_DEPTH = 32
INT64 = (-(2**63), 2**63 - 1)
FAST: dict[str, Any] = {"rows_per_minute": 1e9, "requests_per_minute": None, "max_retries": 0}
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def emulator() -> Emulator:
    return Emulator(rows_per_minute=1e9, realtime_requests_per_minute=None)


# -- the rules, stated independently -----------------------------------------------------------


def utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def id_ok(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and utf8_ok(value)


def value_ok(value: object, depth: int, *, primitives_only: bool) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return utf8_ok(value)
    if isinstance(value, int):
        return INT64[0] <= value <= INT64[1]
    if isinstance(value, float):
        return math.isfinite(value)
    if primitives_only or depth >= MAX_DEPTH:
        return False
    if isinstance(value, Mapping):
        return entries_ok(value, depth + 1, primitives_only=False)
    if isinstance(value, list | tuple):
        return all(value_ok(item, depth + 1, primitives_only=False) for item in value)
    return False


def entries_ok(value: Mapping[Any, Any], depth: int, *, primitives_only: bool) -> bool:
    return all(
        isinstance(key, str)
        and utf8_ok(key)
        and value_ok(item, depth, primitives_only=primitives_only)
        for key, item in value.items()
    )


def metadata_ok(value: object, *, primitives_only: bool) -> bool:
    if value is None:
        return True
    return isinstance(value, Mapping) and entries_ok(value, 1, primitives_only=primitives_only)


def bulk_record_ok(record: object) -> bool:
    if isinstance(record, User):
        return metadata_ok(record.metadata, primitives_only=True)
    if not isinstance(record, Mapping):
        return False
    if set(record) - {"user_id", "company_id", "metadata"}:
        return False
    company = record.get("company_id")
    return (
        id_ok(record.get("user_id"))
        and (company is None or id_ok(company))
        and metadata_ok(record.get("metadata"), primitives_only=True)
    )


def as_json(value: Any) -> Any:
    """What a value looks like after a JSON round trip (tuples become lists)."""
    if isinstance(value, Mapping):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value


# -- the corpus --------------------------------------------------------------------------------

SPECIAL_TEXT = [
    "", " ", "\t\n", "\u00a0", "\u2028", "\u3000", "\x1c", "\x00", "a\x00b", "\ufeff",
    "\u202eevil", "مرحبا بالعالم", "שלום", "👩‍👩‍👧‍👦", "🏳️‍🌈", "e\u0301", "Z̸͎̈a̶l̷g̷o",
    "\ud800", "x\udfffy", "\udbff\udc00", "\U0010ffff", "\\", '"', "\n{", "null",
]  # fmt: skip
text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(SPECIAL_TEXT),
    st.lists(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=8).map("".join),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**40, -(10**40)]),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]),
)
primitive = st.one_of(st.none(), st.booleans(), numbers, text)
not_json = st.one_of(
    st.binary(max_size=4), st.frozensets(st.integers(), max_size=2), st.just(object()),
    st.complex_numbers(max_magnitude=2),
)  # fmt: skip
key = st.one_of(text, st.integers(), st.none(), st.booleans(), st.tuples(st.integers()))
json_like = st.recursive(
    st.one_of(primitive, not_json),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children),
        st.dictionaries(key, children, max_size=3),
    ),
    max_leaves=8,
)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"n": value}
    return value


metadata = st.one_of(
    st.none(),
    st.dictionaries(key, json_like, max_size=4),
    st.dictionaries(text, primitive, max_size=4),
    st.sampled_from([deep(MAX_DEPTH - 2), deep(MAX_DEPTH + 1)]),
    json_like,  # not even a mapping, sometimes
)
ids = st.one_of(text, st.integers(), st.none(), st.binary(max_size=3),
                st.text(" \t\n\r\x0b\x0c\u00a0\u2000\u2028\u3000\x1c", min_size=1))  # fmt: skip


# -- identify and track ------------------------------------------------------------------------


@settings(FUZZ, max_examples=250)  # each example is a real request: the suite stays fast
@given(user_id=ids, props=metadata)
def test_identify_refuses_bad_input_before_sending_and_sends_good_input_intact(
    user_id: Any, props: Any
) -> None:
    REPORT.count_fuzzed("identify() calls")
    valid = id_ok(user_id) and metadata_ok(props, primitives_only=False)
    server = emulator()

    async def main() -> None:
        async with EmulatedAnalytex(server, **FAST) as analytex:
            if valid:
                await analytex.client.identify(user_id, metadata=props)
            else:
                with pytest.raises(ValidationError) as info:
                    await analytex.client.identify(user_id, metadata=props)
                assert info.value.field is not None
                assert str(info.value)

    anyio.run(main)
    if valid:
        assert server.users[user_id].metadata == as_json(props or {})
    else:
        assert server.requests == []


@settings(FUZZ, max_examples=250)  # each example is a real request: the suite stays fast
@given(user_id=ids, event=ids, props=metadata)
def test_track_refuses_bad_input_before_sending_and_sends_good_input_intact(
    user_id: Any, event: Any, props: Any
) -> None:
    REPORT.count_fuzzed("track() calls")
    valid = id_ok(user_id) and id_ok(event) and metadata_ok(props, primitives_only=False)
    server = emulator()

    async def main() -> None:
        async with EmulatedAnalytex(server, **FAST) as analytex:
            if valid:
                await analytex.client.track(user_id, event, metadata=props)
            else:
                with pytest.raises(ValidationError):
                    await analytex.client.track(user_id, event, metadata=props)

    anyio.run(main)
    if valid:
        (tracked,) = server.events
        assert (tracked.user_id, tracked.event_name) == (user_id, event)
        assert tracked.metadata == as_json(props or {})
    else:
        assert server.requests == []


# -- import_users: records ---------------------------------------------------------------------

record = st.one_of(
    st.fixed_dictionaries({"user_id": ids}, optional={"company_id": ids, "metadata": metadata}),
    st.fixed_dictionaries(
        {"user_id": text}, optional={"metadata": st.dictionaries(text, primitive, max_size=4)}
    ),
    st.builds(lambda uid, meta: {"user_id": uid, "metadata": meta, "extra": 1}, text, metadata),
    st.builds(lambda meta: {1: "x", "metadata": meta}, metadata),
    st.builds(User, st.sampled_from(["plain", "مرحبا", "👩‍👩‍👧‍👦", "a\x00b"]),
              metadata=st.dictionaries(text, primitive, max_size=3)),
    st.one_of(st.none(), st.integers(), text, st.lists(st.integers(), max_size=2)),
)  # fmt: skip


def unique(records: list[Any]) -> list[Any]:
    """Make valid records' ids distinct (the server merges duplicates), keeping them weird."""
    out: list[Any] = []
    for position, item in enumerate(records):
        if isinstance(item, User):
            out.append(User(f"{item.user_id}#{position}", metadata=item.metadata))
        elif isinstance(item, dict) and id_ok(item.get("user_id")):
            out.append({**item, "user_id": f"{item['user_id']}#{position}"})
        else:
            out.append(item)
    return out


def check_accounting(server: Emulator, records: list[Any], result: ImportResult) -> None:
    """Every valid record stored intact, every invalid one rejected once, nothing else."""
    valid = [bulk_record_ok(r) for r in records]
    assert [r.position for r in result.rejected] == [i for i, ok in enumerate(valid) if not ok]
    assert all(r.reason for r in result.rejected)
    assert result.rows_read == len(records)
    assert result.rows_sent == sum(valid)
    assert result.ok == all(valid)
    expected = {}
    for item, ok in zip(records, valid, strict=True):
        if ok:
            uid = item.user_id if isinstance(item, User) else item["user_id"]
            meta = item.metadata if isinstance(item, User) else item.get("metadata") or {}
            expected[uid] = as_json(meta)
    assert {uid: user.metadata for uid, user in server.users.items()} == expected


@FUZZ
@given(records=st.lists(record, max_size=25).map(unique), batch_size=st.integers(1, 10))
def test_import_rejects_each_bad_record_and_sends_every_good_one(
    records: list[Any], batch_size: int
) -> None:
    REPORT.count_fuzzed("records in generated import_users sources", len(records))
    server = emulator()

    async def main() -> ImportResult:
        async with EmulatedAnalytex(server, **FAST) as analytex:
            return await analytex.client.import_users(records, batch_size=batch_size)

    check_accounting(server, records, anyio.run(main))


@settings(FUZZ, max_examples=60)
@given(records=st.lists(record, min_size=1, max_size=15).map(unique))
def test_import_with_on_invalid_raise_names_the_first_bad_record(records: list[Any]) -> None:
    REPORT.count_fuzzed("records in generated sources, on_invalid='raise'", len(records))
    first_bad = next((i for i, r in enumerate(records) if not bulk_record_ok(r)), None)

    async def main() -> None:
        async with EmulatedAnalytex(emulator(), **FAST) as analytex:
            if first_bad is None:
                await analytex.client.import_users(records, on_invalid="raise")
                return
            with pytest.raises(ValidationError) as info:
                await analytex.client.import_users(records, on_invalid="raise")
            assert info.value.position == first_bad
            assert info.value.result is not None
            assert info.value.result.rows_read == first_bad + 1

    anyio.run(main)


# -- import_users: files -----------------------------------------------------------------------

INVALID_RECORD_LINES = [
    b'{"user_id": ""}',
    b'{"user_id": 5}',
    b'{"user_id": "x", "metadata": {"a": [1]}}',
    b'{"user_id": "x", "y": 1}',
    b'{"user_id": "x", "metadata": {"big": 18446744073709551616}}',
    b'{"user_id": "x", "metadata": {"n": NaN}}',
    b'{"user_id": "\\ud800"}',
]
LINE_KINDS = ["valid", "blank", "spaces", "junk", "bad_utf8", "not_object", "invalid_record"]


@st.composite
def ndjson_files(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, str]]]:
    """A file's bytes and, per record line, its line number and kind (blank lines are none)."""
    kinds = draw(st.lists(st.sampled_from(LINE_KINDS), max_size=30))
    bom = draw(st.booleans())
    truncate_last = draw(st.booleans())
    final_newline = draw(st.booleans())
    lines: list[bytes] = []
    expected: list[tuple[int, str]] = []
    for number, kind in enumerate(kinds, start=1):
        if kind == "valid":
            name = draw(st.sampled_from(["ok", "مرحبا", "👩‍👩‍👧‍👦", "a b", "\u202e"]))
            meta = draw(st.dictionaries(st.text(max_size=4), st.one_of(st.integers(*INT64),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
                        st.none(), st.booleans()), max_size=3))  # fmt: skip
            line = json.dumps({"user_id": f"{name}#{number}", "metadata": meta}).encode()
        elif kind == "blank":
            line = b""
        elif kind == "spaces":
            line = draw(st.sampled_from([b" ", b"\t", b"  \t "]))
        elif kind == "junk":
            line = draw(st.sampled_from([b"{", b"not json", b'{"user_id": "x"', b"[}", b"NaN"]))
        elif kind == "bad_utf8":
            line = b'{"user_id": "\xff\xfe' + str(number).encode() + b'"}'
        elif kind == "not_object":
            line = draw(st.sampled_from([b"5", b"[1, 2]", b'"u1"', b"null", b"true"]))
        else:
            line = draw(st.sampled_from(INVALID_RECORD_LINES))
        crlf = draw(st.booleans())
        lines.append(line + (b"\r" if crlf else b""))
        if kind not in ("blank", "spaces"):
            expected.append((number, kind))
    if truncate_last and expected and expected[-1][1] == "valid":
        number, _ = expected[-1]
        full = lines[number - 1].rstrip(b"\r")
        lines[number - 1] = full[: draw(st.integers(1, len(full) - 1))]
        expected[-1] = (number, "truncated")
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    if bom:
        data = b"\xef\xbb\xbf" + data
    return data, expected


async def import_file(server: Emulator, source: Any, batch_size: int = 7) -> ImportResult:
    async with EmulatedAnalytex(server, **FAST) as analytex:
        return await analytex.client.import_users(source, batch_size=batch_size)


def check_file_accounting(
    server: Emulator, expected: list[tuple[int, str]], result: ImportResult
) -> None:
    good = [number for number, kind in expected if kind == "valid"]
    bad = [number for number, kind in expected if kind != "valid"]
    assert [r.line for r in result.rejected] == bad
    assert [r.position for r in result.rejected] == [
        i for i, (_, kind) in enumerate(expected) if kind != "valid"
    ]
    assert result.rows_read == len(expected)
    assert sorted(int(uid.rsplit("#", 1)[1]) for uid in server.users) == good


@FUZZ
@given(file=ndjson_files(), gzipped=st.booleans())
def test_files_with_boms_crlf_blanks_truncation_and_bad_utf8_are_fully_accounted(
    file: tuple[bytes, list[tuple[int, str]]], gzipped: bool
) -> None:
    data, expected = file
    REPORT.count_fuzzed(
        "lines in generated NDJSON files (BOM, CRLF, blanks, bad UTF-8, cut)", len(expected) + 1
    )
    server = emulator()
    source = io.BytesIO(gzip.compress(data) if gzipped else data)
    check_file_accounting(server, expected, anyio.run(import_file, server, source))


@FUZZ
@given(file=ndjson_files(), cut=st.floats(0.05, 0.95))
def test_a_gzip_stream_cut_short_is_a_clear_error_naming_the_line(
    file: tuple[bytes, list[tuple[int, str]]], cut: float
) -> None:
    data, expected = file
    REPORT.count_fuzzed("generated gzip streams cut short")
    packed = gzip.compress(data)
    damaged = packed[: max(10, int(len(packed) * cut))]
    server = emulator()
    with pytest.raises(ValidationError) as info:
        anyio.run(import_file, server, io.BytesIO(damaged))
    error = info.value
    assert error.field == "source"
    assert error.line is not None
    assert "gzip stream is corrupt" in str(error)
    assert f"line {error.line}" in str(error)
    result = error.result
    assert result is not None
    # What was read before the damage is accounted for: stored, rejected, or (in the batch
    # being filled when the error came) reported unsent by the error itself.
    complete = [(n, kind) for n, kind in expected if n < error.line]
    assert result.rows_read <= len(expected)
    stored = {int(uid.rsplit("#", 1)[1]) for uid in server.users}
    assert stored <= {n for n, kind in complete if kind == "valid"}
    assert result.rows_sent == len(stored)
    assert {r.line for r in result.rejected} <= {n for n, kind in expected if kind != "valid"}


def test_a_gzip_stream_with_garbage_inside_is_a_clear_error(tmp_path: Path) -> None:
    lines = [json.dumps({"user_id": f"u{i}", "metadata": {"n": i}}) for i in range(20_000)]
    packed = bytearray(gzip.compress("\n".join(lines).encode(), compresslevel=1))
    middle = len(packed) // 2
    packed[middle : middle + 64] = bytes(64)  # zeroed: a damaged disk block
    path = tmp_path / "users.ndjson.gz"
    path.write_bytes(bytes(packed))
    server = emulator()
    with pytest.raises(ValidationError) as info:
        anyio.run(import_file, server, path, 10_000)
    REPORT.count_fuzzed("hand-written: gzip stream with garbage inside")
    assert info.value.line is not None
    assert "gzip stream is corrupt" in str(info.value)
    # Nothing that the damage garbled reached the server as if it were a record.
    for uid, user in server.users.items():
        assert user.metadata == {"n": int(uid[1:])}


def test_a_csv_file_with_bom_crlf_blank_lines_and_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(
        b"\xef\xbb\xbfuser_id,plan\r\n"
        b"u1,pro\r\n"
        b"\r\n"
        b"u2,\xff\xfe\r\n"
        b",free\r\n"
        b"u3,\xf0\x9f\x91\xa9\r\n"
        b"u4,free,extra\r\n"
        b"u5,trunc"
    )
    server = emulator()
    result = anyio.run(import_file, server, path)
    REPORT.count_fuzzed("hand-written: CSV with BOM, CRLF, blank and bad lines")
    assert [(r.line, r.position) for r in result.rejected] == [(4, 1), (5, 2), (7, 4)]
    assert {uid: u.metadata for uid, u in server.users.items()} == {
        "u1": {"plan": "pro"}, "u3": {"plan": "👩"}, "u5": {"plan": "trunc"},
    }  # fmt: skip


# -- the command line: exit 1 or 2 with one line ----------------------------------------------


@pytest.fixture(scope="module")
def served_emulator() -> Iterator[str]:
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(serve(emulator())) as url,
    ):
        yield url


def cli_import(url: str, *args: str) -> Result:
    env = {"ANALYTEX_API_KEY": "sk_test_cli_bad_input", "ANALYTEX_BASE_URL": url,
           "FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None}  # fmt: skip
    return CliRunner().invoke(cli, ["import", "users", *args, "--rows-per-minute", "1e9"], env=env)


def test_the_cli_turns_a_corrupt_gzip_into_exit_2_and_one_line(
    served_emulator: str, tmp_path: Path
) -> None:
    path = tmp_path / "users.ndjson.gz"
    path.write_bytes(gzip.compress(b'{"user_id": "a"}\n{"user_id": "b"}\n' * 500)[:-40])
    result = cli_import(served_emulator, str(path))
    REPORT.count_fuzzed("hand-written: command-line imports of bad files")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert "gzip stream is corrupt" in line
    assert "line" in line
    assert "Traceback" not in result.output


def test_the_cli_reports_every_bad_line_and_exits_1(served_emulator: str, tmp_path: Path) -> None:
    path = tmp_path / "users.ndjson"
    path.write_bytes(
        b'\xef\xbb\xbf{"user_id": "ok1"}\r\n\r\n{"user_id": "\xff"}\r\n  \n'
        b'{"user_id": ""}\n{"user_id": "ok2", "metadata": {"n": NaN}}\n{"user_id": "tr'
    )
    rejects = tmp_path / "rejects.ndjson"
    result = cli_import(served_emulator, str(path), "--rejects", str(rejects))
    REPORT.count_fuzzed("hand-written: command-line imports of bad files")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [json.loads(line)["line"] for line in rejects.read_text().splitlines()]
    assert lines == [3, 5, 6, 7]


# -- huge strings near the 50 MB limit ---------------------------------------------------------


def sized_record(line_bytes: int) -> dict[str, Any]:
    """A record whose NDJSON line is exactly ``line_bytes`` long, mostly 4-byte emoji."""
    shell = len(encode_record({"user_id": "huge", "metadata": {"s": ""}}))
    room = line_bytes - shell
    return {"user_id": "huge", "metadata": {"s": "😀" * (room // 4) + "x" * (room % 4)}}


@pytest.mark.parametrize(("over", "accepted"), [(0, True), (1, False)])
def test_a_record_at_the_batch_byte_limit_is_sent_and_one_byte_more_is_rejected(
    over: int, accepted: bool
) -> None:
    REPORT.count_fuzzed("hand-written: records at and over the 50 MB batch limit")
    big = sized_record(MAX_BATCH_BYTES + over)
    assert len(encode_record(big)) == MAX_BATCH_BYTES + over
    records = [{"user_id": "before"}, big, {"user_id": "after"}]
    server = emulator()

    async def main() -> ImportResult:
        async with EmulatedAnalytex(server, **FAST) as analytex:
            return await analytex.client.import_users(records)

    result = anyio.run(main)
    if accepted:
        assert result.ok
        assert server.users["huge"].metadata == big["metadata"]
        assert max(r.body_size for r in server.requests) <= 50_000_000
    else:
        assert [(r.position, "more than a request may carry" in r.reason)
                for r in result.rejected] == [(1, True)]  # fmt: skip
        assert "huge" not in server.users
    assert {"before", "after"} <= set(server.users)


@pytest.mark.parametrize("call", ["identify", "track"])
def test_a_real_time_call_over_50_mb_is_refused_before_sending(call: str) -> None:
    REPORT.count_fuzzed("hand-written: real-time calls near 50 MB")
    props = {"s": "x" * 50_000_001}
    server = emulator()

    async def main() -> None:
        async with EmulatedAnalytex(server, **FAST) as analytex:
            send = (
                analytex.client.identify("u1", metadata=props)
                if call == "identify"
                else analytex.client.track("u1", "big", metadata=props)
            )
            try:
                await send
            except PayloadTooLargeError:
                pytest.fail(f"{call}() sent a body over 50 MB and got 413; it must refuse it first")
            except ValidationError:
                pass
            else:
                pytest.fail(f"{call}() sent a body the API refuses")

    anyio.run(main)
    assert server.requests == []


def test_a_real_time_call_just_under_50_mb_is_sent() -> None:
    props = {"s": "é" * 24_999_000}  # 49,998,000 bytes of UTF-8
    server = emulator()

    async def main() -> None:
        async with EmulatedAnalytex(server, **FAST) as analytex:
            await analytex.client.identify("u1", metadata=props)

    anyio.run(main)
    REPORT.count_fuzzed("hand-written: real-time calls near 50 MB")
    assert server.users["u1"].metadata == props

"""The sync's canonical digest and its SQLite state: comparisons, marks, writes, binding, locks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytex_async import ConfigurationError, SQLiteSyncState, SyncState
from analytex_async._bulk._digests import (
    canonical_digest,
    rejected_id,
    source_digest,
    source_id,
)
from analytex_async._errors import ValidationError
from analytex_async._models import Company, User
from analytex_async._validation import bulk_record

pytestmark = pytest.mark.anyio


def digest(line: str) -> tuple[str, bytes]:
    return canonical_digest(line.encode(), "user")


# -- the canonical digest ------------------------------------------------------------------------


def test_key_order_spacing_and_escapes_are_not_a_change() -> None:
    a = digest('{"user_id":"u1","company_id":"c","metadata":{"city":"Zürich","n":1}}')
    b = digest('{"metadata": {"n": 1, "city": "Z\\u00fcrich"}, "company_id": "c", "user_id": "u1"}')
    assert a == b
    assert a[0] == "u1"
    assert len(a[1]) == 16


def test_an_integral_float_is_its_integer_but_other_values_differ() -> None:
    base = digest('{"user_id":"u1","metadata":{"n":1}}')
    assert digest('{"user_id":"u1","metadata":{"n":1.0}}') == base
    assert digest('{"user_id":"u1","metadata":{"n":1.5}}') != base
    assert digest('{"user_id":"u1","metadata":{"n":"1"}}') != base
    assert digest('{"user_id":"u1","metadata":{"n":true}}') != base
    assert digest('{"user_id":"u1","metadata":{"n":null}}') != base
    assert digest('{"user_id":"u1","metadata":{"n":1,"m":null}}') != base
    assert digest('{"user_id":"u1","company_id":"c","metadata":{"n":1}}') != base


def test_companies_are_keyed_by_company_id() -> None:
    line = b'{"company_id":"c9","metadata":{"seats":3}}'
    assert canonical_digest(line, "company")[0] == "c9"
    assert source_id({"company_id": "c9", "metadata": {"seats": 3}}, "company") == "c9"
    assert source_id({"company_id": "c9", "user_id": "u1"}, "user") == "u1"


primitives = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
records = st.one_of(
    st.fixed_dictionaries(
        {"user_id": st.text(max_size=4) | st.integers() | st.none()},
        optional={
            "company_id": st.text(max_size=3) | st.integers(),
            "metadata": st.dictionaries(st.text(max_size=3), primitives | st.lists(primitives)),
            "extra": primitives,
        },
    ),
    st.builds(
        User,
        st.from_regex(r"[a-z]{1,4}", fullmatch=True),
        metadata=st.dictionaries(st.text(max_size=3), primitives),
    ),
    st.builds(Company, st.from_regex(r"[a-z]{1,4}", fullmatch=True)),
    primitives,
)


@given(record=records)
def test_every_valid_record_carries_the_id_read_before_validation(record: object) -> None:
    """The sync looks records up before validating them: a valid one was looked up by its id."""
    try:
        wire = bulk_record(record, "user")
    except ValidationError:
        return
    assert source_id(record, "user") == wire["user_id"]


def test_the_source_digest_tells_apart_what_the_validation_does() -> None:
    base = {"user_id": "u1", "metadata": {"n": 1}}
    assert source_digest(base) == source_digest({"user_id": "u1", "metadata": {"n": 1}})
    assert len(source_digest(base)) == 16
    for other in (
        {"user_id": "u1", "metadata": {"n": 1.0}},
        {"user_id": "u1", "metadata": {"n": True}},
        {"user_id": "u1", "metadata": {"n": "1"}},
        {"user_id": "u1", "metadata": {"n": (1,)}},
        {"user_id": "u1", "metadata": {"n": [1]}},
        {"metadata": {"n": 1}, "user_id": "u1"},  # another order: the canonical digest decides
        {"user_id": "u1", "metadata": {1: 1}},
    ):
        assert source_digest(other) != source_digest(base), other
    assert source_digest({"user_id": "\ud800"}) != source_digest({"user_id": "\\ud800"})


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"user_id": "u1", "metadata": {"x": [1]}}, "u1"),
        ({"user_id": 42}, "42"),
        ({"user_id": ""}, None),
        ({"metadata": {}}, None),
        ('{"user_id": "u2", "metadata": {"x": {}}}', "u2"),
        ("{not json", None),
        ("[1, 2]", None),
        (User("u3"), "u3"),
        (7, None),
    ],
)
def test_the_id_of_a_rejected_record_is_read_when_it_has_one(
    record: object, expected: str | None
) -> None:
    assert rejected_id(record, "user") == expected


# -- the SQLite state ------------------------------------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "users.sqlite"


async def test_sqlite_state_is_a_sync_state(path: Path) -> None:
    assert isinstance(SQLiteSyncState(path), SyncState)


async def test_present_answers_the_stored_digest_then_this_runs_earlier_one(path: Path) -> None:
    state = SQLiteSyncState(path)
    await state.begin("user", "api.test")
    assert await state.present([("a", b"1"), ("b", b"2")]) == [None, None]
    await state.store([("a", b"1"), ("b", b"2"), ("a", b"1b")])  # a later pair wins
    await state.end()

    await state.begin("user", "api.test")
    answers = await state.present([("a", b"x"), ("c", b"3"), ("a", b"y"), ("b", None)])
    assert answers == [b"1b", None, b"x", b"2"]
    # In a later call of the same run, the digest marked earlier in the run comes first; a
    # rejected record (None) marks the id without replacing it.
    assert await state.present([("a", None), ("a", b"z"), ("c", b"4"), ("b", b"2")]) == [
        b"y",
        b"y",
        b"3",
        b"2",
    ]
    await state.end()


async def test_missing_lists_stored_ids_not_marked_and_forget_drops_them(path: Path) -> None:
    state = SQLiteSyncState(path)
    await state.begin("user", "api.test")
    await state.store([(f"u{i}", b"d") for i in range(2_500)])
    await state.end()

    await state.begin("user", "api.test")
    await state.present([(f"u{i}", b"d") for i in range(0, 2_500, 2)])
    await state.present([("u1", None)])  # a rejected record's id counts as present
    chunks = [chunk async for chunk in state.missing(1_000)]
    assert [len(c) for c in chunks] == [1_000, 249]
    gone = [i for chunk in chunks for i in chunk]
    assert "u1" not in gone
    assert sorted(gone) == sorted(f"u{i}" for i in range(3, 2_500, 2))
    await state.forget(gone)
    assert [chunk async for chunk in state.missing(1_000)] == []
    await state.end()

    await state.begin("user", "api.test")  # a new run: no marks
    remaining = [i for chunk in [c async for c in state.missing(5_000)] for i in chunk]
    assert len(remaining) == 1_251
    await state.end()


async def test_a_state_of_another_kind_or_host_is_refused(path: Path) -> None:
    state = SQLiteSyncState(path)
    await state.begin("user", "api.analytex.test")
    await state.end()
    with pytest.raises(ConfigurationError, match="holds users, not companies"):
        await SQLiteSyncState(path).begin("company", "api.analytex.test")
    with pytest.raises(ConfigurationError, match=r"belongs to the API at api\.analytex\.test"):
        await SQLiteSyncState(path).begin("user", "eu.analytex.test")
    again = SQLiteSyncState(path)
    await again.begin("user", "api.analytex.test")
    await again.end()


async def test_a_second_run_on_the_same_file_fails_clearly_and_the_first_goes_on(
    path: Path,
) -> None:
    first = SQLiteSyncState(path)
    await first.begin("user", "api.test")
    await first.store([("a", b"1")])
    with pytest.raises(ConfigurationError, match="in use by another sync"):
        await SQLiteSyncState(path, lock_timeout=0.05).begin("user", "api.test")
    await first.store([("b", b"2")])
    await first.end()
    second = SQLiteSyncState(path)
    await second.begin("user", "api.test")
    assert await second.present([("a", b""), ("b", b"")]) == [b"1", b"2"]
    await second.end()


async def test_a_file_that_is_not_a_sync_state_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(ConfigurationError, match="not a sync state file"):
        await SQLiteSyncState(other).begin("user", "api.test")
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all" * 100)
    with pytest.raises(ConfigurationError, match="not a sync state file"):
        await SQLiteSyncState(text).begin("user", "api.test")


async def test_lookups_and_writes_are_a_few_statements_per_run_of_records(path: Path) -> None:
    state = SQLiteSyncState(path)
    await state.begin("user", "api.test")
    await state.store([(f"u{i}", b"d") for i in range(2_000)])
    db = state._db
    assert db is not None
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    await state.present([(f"u{i}", b"e") for i in range(2_000)])
    await state.store([(f"u{i}", b"e") for i in range(2_000)])
    db.set_trace_callback(None)
    await state.end()
    # executemany traces each row's execution; count the queries and the transactions.
    selects = [s for s in statements if s.startswith("SELECT")]
    commits = [s for s in statements if s == "COMMIT"]
    assert len(selects) == 2 * 4  # 2,000 ids in chunks of 500, in two tables
    assert len(commits) == 2


async def test_the_state_file_stays_small(path: Path) -> None:
    state = SQLiteSyncState(path)
    await state.begin("user", "api.test")
    for start in range(0, 50_000, 5_000):
        await state.store(
            [
                canonical_digest(b'{"user_id":"user_%07d"}' % i, "user")
                for i in range(start, start + 5_000)
            ]
        )
    await state.end()
    assert not await anyio.Path(f"{path}-wal").exists()  # folded back in when the run ends
    assert (await anyio.Path(path).stat()).st_size / 50_000 < 60


async def test_methods_need_a_begun_run(path: Path) -> None:
    state = SQLiteSyncState(path)
    with pytest.raises(RuntimeError, match="begin"):
        await state.store([("a", b"1")])
    await state.begin("user", "api.test")
    with pytest.raises(RuntimeError, match="already in use"):
        await state.begin("user", "api.test")
    await state.end()
    await state.end()  # twice is harmless
    assert repr(state) == f"SQLiteSyncState({str(path)!r})"

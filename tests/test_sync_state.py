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


def test_the_repr_names_the_file(path: Path) -> None:
    assert repr(SQLiteSyncState(path)) == f"SQLiteSyncState({str(path)!r})"

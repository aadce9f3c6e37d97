"""Bad input is refused before anything is sent, naming the field and the record position."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from analytex_async import AsyncAnalytex, Company, User, ValidationError
from analytex_async._validation import bulk_record, check_metadata

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _nothing_is_sent(router: respx.MockRouter) -> Any:
    yield
    assert not router.calls, "a request was sent for invalid input"


@pytest.mark.parametrize("user_id", ["", "   ", None, 42, b"u1", "\ud800"])
async def test_identify_refuses_bad_user_ids(client: AsyncAnalytex, user_id: object) -> None:
    with pytest.raises(ValidationError) as info:
        await client.identify(user_id)  # type: ignore[arg-type]
    assert info.value.field == "user_id"
    assert "user_id" in str(info.value)


@pytest.mark.parametrize(
    ("company", "message"),
    [({}, "must have an 'id'"), ({"company_id": ""}, "must not be empty"),
     ({"id": ""}, "must not be empty"), ({"id": 5}, "must be a string"), (7, "company id")],
)  # fmt: skip
async def test_identify_refuses_a_company_without_a_usable_id(
    client: AsyncAnalytex, company: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        await client.identify("u1", company=company)  # type: ignore[arg-type]
    assert (info.value.field or "").startswith("company")


@pytest.mark.parametrize(
    ("metadata", "field", "message"),
    [
        ({"score": float("nan")}, "metadata.score", "finite"),
        ({"score": float("inf")}, "metadata.score", "finite"),
        ({1: "x"}, "metadata", "keys must be strings"),
        ({"when": object()}, "metadata.when", "not JSON-serialisable"),
        ({"deep": {"er": {2: 1}}}, "metadata.deep.er", "keys must be strings"),
        ({"big": 2**64}, "metadata.big", "64 bits"),
        ({"bad": "\udc80"}, "metadata.bad", "surrogate"),
        ("name=Jane", "metadata", "must be a mapping"),
    ],
)
async def test_realtime_metadata_is_checked(
    client: AsyncAnalytex, metadata: Any, field: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        await client.track("u1", "Signed Up", metadata=metadata)
    assert info.value.field == field


async def test_track_needs_an_event_name(client: AsyncAnalytex) -> None:
    with pytest.raises(ValidationError, match="event_name"):
        await client.track("u1", "")


async def test_self_referencing_metadata_is_refused_not_a_recursion_error(
    client: AsyncAnalytex,
) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValidationError, match="nested more than"):
        await client.identify("u1", metadata={"loop": loop})


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        ({"user_id": "u1", "metadata": {"tags": ["a"]}}, "metadata.tags", "primitives only"),
        ({"user_id": "u1", "metadata": {"o": {"a": 1}}}, "metadata.o", "primitives only"),
        ({"user_id": ""}, "user_id", "must not be empty"),
        ({"metadata": {}}, "user_id", "must be a string"),
        ({"user_id": "u1", "company_id": ""}, "company_id", "must not be empty"),
        ({"user_id": "u1", "email": "a@b.c"}, "email", "unknown field"),
        ({"user_id": "u1", "metadata": {"x": float("-inf")}}, "metadata.x", "finite"),
    ],
)
async def test_bulk_records_are_checked_with_their_position(
    client: AsyncAnalytex, record: dict[str, Any], field: str, message: str
) -> None:
    users = [{"user_id": "ok0"}, {"user_id": "ok1"}, record]
    with pytest.raises(ValidationError, match=message) as info:
        await client.bulk_identify(users)
    assert info.value.position == 2
    assert info.value.field == field
    assert str(info.value).startswith("record 2")


async def test_bulk_record_of_the_wrong_type(client: AsyncAnalytex) -> None:
    with pytest.raises(ValidationError, match="must be a User or a mapping, got Company"):
        await client.bulk_identify([Company("c1")])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="not a single dict"):
        await client.bulk_identify({"user_id": "u1"})  # type: ignore[arg-type]


async def test_bulk_needs_between_one_and_ten_thousand_records(client: AsyncAnalytex) -> None:
    with pytest.raises(ValidationError, match="at least one"):
        await client.bulk_identify([])
    with pytest.raises(ValidationError, match="more than 10,000 records") as info:
        await client.bulk_identify({"user_id": f"u{i}"} for i in range(10_001))
    assert info.value.position == 10_000
    assert "import_users" in str(info.value)


async def test_bulk_body_over_50_mb_is_refused(client: AsyncAnalytex) -> None:
    big = "x" * 5_000_000
    users = [{"user_id": f"u{i}", "metadata": {"blob": big}} for i in range(10)]
    with pytest.raises(ValidationError, match="over the API's 50,000,000-byte limit"):
        await client.bulk_identify(users)


async def test_delete_ids_are_checked(client: AsyncAnalytex) -> None:
    with pytest.raises(ValidationError, match="record 1, field 'users'"):
        await client.delete_users(["u1", ""])
    with pytest.raises(ValidationError, match="not a single str"):
        await client.delete_users("u1")
    with pytest.raises(ValidationError, match="at least one"):
        await client.delete_companies([])


async def test_job_id_must_be_given(client: AsyncAnalytex) -> None:
    with pytest.raises(ValidationError, match="job_id"):
        await client.get_job("")


def test_models_check_their_ids_at_construction() -> None:
    with pytest.raises(ValidationError, match="user_id"):
        User("")
    with pytest.raises(ValidationError, match="company_id"):
        User("u1", company_id=" ")
    with pytest.raises(ValidationError, match="company_id"):
        Company(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="mapping"):
        User("u1", metadata=["a"])  # type: ignore[arg-type]


def test_models_copy_their_metadata() -> None:
    source = {"plan": "pro"}
    user = User("u1", metadata=source)
    source["plan"] = "free"
    assert user.metadata == {"plan": "pro"}


def test_bulk_wire_form_leaves_out_empty_optionals() -> None:
    assert bulk_record(User("u1"), "user") == {"user_id": "u1"}
    assert bulk_record({"user_id": "u1", "company_id": None, "metadata": None}, "user") == {
        "user_id": "u1"
    }
    assert bulk_record(Company("c1", metadata={"a": 1}), "company") == {
        "company_id": "c1",
        "metadata": {"a": 1},
    }


@pytest.mark.parametrize("value", ["s", 1, -(2**63), 2**63 - 1, 1.5, -0.0, True, False, None])
def test_every_primitive_is_accepted_in_bulk_metadata(value: object) -> None:
    assert check_metadata({"k": value}, primitives_only=True) == {"k": value}


def test_validation_error_names_line_too() -> None:
    error = ValidationError("bad", field="user_id", position=4, line=5)
    assert str(error) == "record 4, line 5, field 'user_id': bad"
    assert (error.field, error.position, error.line, error.reason) == ("user_id", 4, 5, "bad")

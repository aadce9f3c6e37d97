"""The durable outbox: per-process spill files, claims by file lock, torn-tail tolerant reads."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from analytex_async._delivery import _outbox
from analytex_async._delivery._outbox import ClaimedFile, Outbox, OutboxError, OutboxRecord
from analytex_async._errors import ConfigurationError
from tests._net import wait_until
from tests.delivery._outbox_child import records as tracks

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
CHILD = "tests.delivery._outbox_child"

RECORDS = [
    OutboxRecord(
        "identify",
        {
            "user_id": "u-ü1",
            "metadata": {"name": "Zoë 北京 🚀", "plan": "pro", "nested": {"a": [1, 2.5, None]}},
            "company": {"id": "c1"},
        },
    ),
    OutboxRecord("identify_company", {"company_id": "c1", "metadata": {"seats": 12}}),
    OutboxRecord("track", {"user_id": "u-ü1", "event_name": "Signed Up", "metadata": {"ok": True}}),
]


def outbox_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("outbox-*.ndjson"))


async def claim_all(directory: Path) -> list[ClaimedFile]:
    claimer = Outbox(directory)
    try:
        return await claimer.claim()
    finally:
        await claimer.aclose()


async def spilled_file(directory: Path, records: list[OutboxRecord]) -> Path:
    """A file left by an outbox that spilled and closed: claimable."""
    outbox = Outbox(directory)
    await outbox.spill(records)
    path = outbox.spill_path
    assert path is not None
    await outbox.aclose()
    return path


# --- one process -----------------------------------------------------------------------------


async def test_records_round_trip_once_the_spilling_outbox_lets_its_file_go(
    tmp_path: Path,
) -> None:
    first = Outbox(tmp_path / "outbox")
    assert await first.spill(RECORDS[:2]) == 2
    assert await first.spill(RECORDS[2:]) == 1
    second = Outbox(tmp_path / "outbox")

    assert await second.claim() == []  # the first one's lock is held
    await first.aclose()
    claimed = await second.claim()

    assert len(claimed) == 1
    assert claimed[0].records == tuple(RECORDS)
    assert claimed[0].unreadable == 0
    assert claimed[0].path == outbox_files(tmp_path / "outbox")[0]
    assert await second.claim() == []  # never twice
    await second.aclose()


async def test_spill_writes_one_versioned_line_per_record_to_a_private_file_named_by_pid(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path)
    await outbox.spill(RECORDS)
    path = outbox.spill_path
    await outbox.aclose()

    assert path is not None
    assert path.name.startswith(f"outbox-{os.getpid()}-")
    assert path.suffix == ".ndjson"
    assert path.stat().st_mode & 0o777 == 0o600
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line) for line in lines[:-1]] == [
        {"v": 1, "kind": r.kind, "payload": r.payload} for r in RECORDS
    ]
    assert "Zoë 北京 🚀" in path.read_text("utf-8")  # readable UTF-8, not \u escapes
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind


async def test_a_record_kind_outside_the_three_calls_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        OutboxRecord("page", {})  # type: ignore[arg-type]


async def test_spill_of_nothing_creates_no_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    assert await outbox.spill([]) == 0
    assert not (tmp_path / "outbox").exists()
    assert await outbox.claim() == []  # a missing directory holds nothing to claim
    await outbox.aclose()


async def test_a_torn_last_line_is_ignored_and_the_complete_records_are_claimed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = await spilled_file(tmp_path, RECORDS)
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"v":1,"kind":"track","payload":{"user_id":"torn')
    with_newline = await spilled_file(tmp_path, RECORDS[:1])
    with_newline.write_bytes(with_newline.read_bytes() + b'{"v":1,"kind":"tr\n')

    with caplog.at_level(logging.WARNING, logger="analytex_async"):
        claimed = {file.path: file for file in await claim_all(tmp_path)}

    assert claimed[path].records == tuple(RECORDS)
    assert claimed[path].unreadable == 0
    assert claimed[with_newline].records == tuple(RECORDS[:1])
    assert claimed[with_newline].unreadable == 0
    assert caplog.records == []  # a crash mid-write is expected, not a damaged file


async def test_a_garbage_line_in_the_middle_is_skipped_counted_and_logged_without_contents(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = await spilled_file(tmp_path, RECORDS)
    first, *rest = path.read_bytes().splitlines(keepends=True)
    secret_garbage = b"SECRET-GARBAGE {not json\n"
    wrong_shape = b'{"v":1,"kind":"page","payload":{"user_id":"SECRET-SHAPE"}}\n'
    path.write_bytes(first + secret_garbage + wrong_shape + b"".join(rest))

    with caplog.at_level(logging.WARNING, logger="analytex_async"):
        [claimed] = await claim_all(tmp_path)

    assert claimed.records == tuple(RECORDS)
    assert claimed.unreadable == 2
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert warning.name == "analytex_async"
    message = warning.getMessage()
    assert str(path) in message
    assert "2 unreadable" in message
    assert "SECRET" not in message
    assert "Zoë" not in message


async def test_files_with_nothing_to_replay_are_removed_at_once(tmp_path: Path) -> None:
    empty = tmp_path / "outbox-1-aa.ndjson"
    empty.write_bytes(b"")
    only_torn = tmp_path / "outbox-2-bb.ndjson"
    only_torn.write_bytes(b'{"v":1,"kind":"track","pay')
    unrelated = tmp_path / "export.ndjson"
    unrelated.write_bytes(b"")

    assert await claim_all(tmp_path) == []

    assert not empty.exists()
    assert not only_torn.exists()
    assert unrelated.exists()  # not an outbox file: never touched


async def test_remove_deletes_the_file_and_is_idempotent(tmp_path: Path) -> None:
    await spilled_file(tmp_path, RECORDS)
    claimer = Outbox(tmp_path)
    [claimed] = await claimer.claim()

    await claimed.remove()
    await claimed.remove()

    assert not claimed.path.exists()
    assert await claim_all(tmp_path) == []
    await claimer.aclose()


async def test_aclose_lets_claimed_files_not_removed_be_claimed_again(tmp_path: Path) -> None:
    path = await spilled_file(tmp_path, RECORDS)
    claimer = Outbox(tmp_path)
    [claimed] = await claimer.claim()
    assert await claim_all(tmp_path) == []  # held by the claimer

    await claimer.aclose()
    await claimer.aclose()
    await claimed.remove()  # no longer ours: the file stays

    [again] = await claim_all(tmp_path)
    assert again.path == path
    assert again.records == tuple(RECORDS)


async def test_a_closed_outbox_spills_to_a_new_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    await outbox.spill(RECORDS[:1])
    first = outbox.spill_path
    await outbox.aclose()
    await outbox.spill(RECORDS[1:])
    second = outbox.spill_path
    await outbox.aclose()

    assert first is not None
    assert second is not None
    assert first != second
    claimed = await claim_all(tmp_path)
    assert sorted(r.kind for f in claimed for r in f.records) == sorted(r.kind for r in RECORDS)


async def test_a_file_removed_by_another_claimer_between_open_and_lock_is_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await spilled_file(tmp_path, RECORDS)
    first = Outbox(tmp_path)
    [claimed] = await first.claim()
    real_open = os.open

    def open_then_first_claimer_removes(target: Any, flags: int, *args: Any) -> int:
        fd = real_open(target, flags, *args)
        if Path(target) == path:
            claimed._held.remove()  # delivered, deleted and unlocked by the first claimer
        return fd

    monkeypatch.setattr(os, "open", open_then_first_claimer_removes)
    second = Outbox(tmp_path)
    late = await second.claim()
    monkeypatch.undo()

    assert late == []  # the lock it got is on a deleted file: its records were delivered
    await second.aclose()
    await first.aclose()


async def test_spill_writes_even_when_the_caller_is_being_cancelled(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    with anyio.CancelScope() as scope:
        scope.cancel()
        written = await outbox.spill(RECORDS)
    await outbox.aclose()

    assert written == 3
    [claimed] = await claim_all(tmp_path)
    assert claimed.records == tuple(RECORDS)


async def test_spill_fsyncs_the_file_and_the_directory_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        status = os.fstat(fd)
        synced.append((status.st_dev, status.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    outbox = Outbox(tmp_path / "outbox")
    await outbox.spill(RECORDS[:1])
    path = outbox.spill_path
    assert path is not None
    file_id = (path.stat().st_dev, path.stat().st_ino)
    directory = (tmp_path / "outbox").stat()
    assert synced.count(file_id) == 1
    assert synced.count((directory.st_dev, directory.st_ino)) == 1

    await outbox.spill(RECORDS[1:])
    await outbox.aclose()

    assert synced.count(file_id) == 2  # every spill, not only the first
    assert synced.count((directory.st_dev, directory.st_ino)) == 1  # only when created


async def test_an_unwritable_directory_raises_outbox_error_naming_the_path(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the outbox directory should be")
    outbox = Outbox(blocker / "outbox")

    with pytest.raises(OutboxError, match="not-a-directory/outbox") as caught:
        await outbox.spill(RECORDS)

    assert "Not a directory" in str(caught.value)
    await outbox.aclose()


async def test_a_failed_write_is_cut_off_so_later_spills_stay_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox(tmp_path)
    await outbox.spill(RECORDS[:1])
    real_write = os.write

    def half_then_disk_full(fd: int, data: Any) -> int:
        if len(data) > 8:
            real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_disk_full)
    with pytest.raises(OutboxError, match="No space left on device") as caught:
        await outbox.spill(RECORDS[1:2])
    monkeypatch.undo()
    assert str(outbox.spill_path) in str(caught.value)
    await outbox.spill(RECORDS[2:])
    await outbox.aclose()

    [claimed] = await claim_all(tmp_path)
    assert claimed.records == (RECORDS[0], RECORDS[2])
    assert claimed.unreadable == 0


async def test_without_posix_file_locks_the_outbox_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_outbox, "fcntl", None)

    with pytest.raises(ConfigurationError, match="the outbox needs POSIX file locks"):
        Outbox(tmp_path)


# --- several processes ---------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", CHILD, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def wait_for(ready: Callable[[], bool], process: subprocess.Popen[str] | None = None) -> None:
    assert await anyio.to_thread.run_sync(lambda: wait_until(ready, process=process))


async def read_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return await anyio.to_thread.run_sync(process.stdout.readline)


async def finish(process: subprocess.Popen[str], stdin: str = "") -> str:
    out, err = await anyio.to_thread.run_sync(lambda: process.communicate(stdin, timeout=60))
    assert process.returncode == 0, err
    return out


async def test_a_live_process_keeps_its_file_until_it_dies_even_by_sigkill(
    tmp_path: Path,
) -> None:
    child = spawn("hold", str(tmp_path), "child", "4")
    try:
        path = Path((await read_line(child)).strip())
        assert path.name.startswith(f"outbox-{child.pid}-")
        assert await claim_all(tmp_path) == []  # the child is alive and holds the lock

        child.send_signal(signal.SIGKILL)
        await wait_for(lambda: child.poll() is not None)
        assert child.returncode == -signal.SIGKILL
    finally:
        child.kill()
        await anyio.to_thread.run_sync(child.communicate)

    [claimed] = await claim_all(tmp_path)
    assert claimed.path == path
    assert claimed.records == tuple(tracks("child", 4))


async def test_three_processes_spill_and_a_fourth_claims_every_record_exactly_once(
    tmp_path: Path,
) -> None:
    count = 40
    spillers = [spawn("exit", str(tmp_path), f"p{n}", str(count)) for n in range(3)]
    for spiller in spillers:
        await finish(spiller)

    claimer = Outbox(tmp_path)
    claimed = await claimer.claim()
    assert await claimer.claim() == []
    for file in claimed:
        await file.remove()
    await claimer.aclose()

    assert len(claimed) == 3
    got = [record for file in claimed for record in file.records]
    assert sorted(got, key=repr) == sorted(
        [r for n in range(3) for r in tracks(f"p{n}", count)], key=repr
    )
    assert outbox_files(tmp_path) == []


@pytest.mark.parametrize("then", ["remove", "hold"])
async def test_two_racing_claimers_never_claim_the_same_file(tmp_path: Path, then: str) -> None:
    files = 12
    for n in range(files):
        await spilled_file(tmp_path, tracks(f"f{n}", 5))
    claimers = [spawn("claim", str(tmp_path), then) for _ in range(2)]
    try:
        for claimer in claimers:
            assert await read_line(claimer) == "ready\n"
        for claimer in claimers:  # as close to "at once" as two processes get
            assert claimer.stdin is not None
            claimer.stdin.write("go\n")
            claimer.stdin.flush()
        results = [json.loads(await read_line(claimer)) for claimer in claimers]
    finally:
        outputs = [await finish(claimer) for claimer in claimers]  # closes stdin: "hold" ends

    assert outputs == ["", ""]
    paths = [path for result in results for path in result["paths"]]
    ids = [user_id for result in results for user_id in result["ids"]]
    assert len(paths) == len(set(paths)) == files
    assert sorted(ids) == sorted(f"f{n}-{i}" for n in range(files) for i in range(5))
    if then == "remove":
        assert outbox_files(tmp_path) == []
    else:
        assert len(outbox_files(tmp_path)) == files  # released, not removed: claimable again


async def test_a_forked_child_cannot_claim_or_release_its_parents_files(tmp_path: Path) -> None:
    out = await finish(spawn("fork", str(tmp_path)))
    result = json.loads(out)

    # A new Outbox in the child, and the inherited one, both find the parent's files locked.
    assert result["child"]["own"] == 0
    assert result["child"]["inherited"] == 0
    # The inherited outbox spilled into a file of the child's own, not the parent's.
    child_file = result["child"]["spill_path"]
    assert Path(child_file).name.startswith(f"outbox-{result['child_pid']}-")
    assert child_file not in result["parent_files"]
    # The child removing the inherited claim, closing the inherited outbox and exiting neither
    # deleted nor released the parent's files: a fresh claimer gets only the child's own file.
    assert result["while_held"] == [child_file]
    # Once the parent closes its outbox, its spill file and the orphan it claimed are claimable.
    assert result["after_close"] == result["parent_files"]
    assert result["records"] == 3 + 2

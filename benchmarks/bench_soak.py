"""Soak: three background-delivery workers and one sync sharing one Redis, in real time.

Against the emulator at its real rates (600 identify and 600 track requests a minute, 429
beyond; bulk jobs processed at 1,200 rows a minute), served by uvicorn in its own process,
with a ``redis-server`` started on a free loopback port (persistence off), for ``--seconds``
(300) of real time:

* **three worker processes**, each an ``AsyncAnalytex(governor=RedisGovernor(...),
  delivery=DeliveryPolicy(outbox="redis://...?name=soak"))`` on asyncio, hand over, at a
  steady ``--rate`` (1.5) users a second each, one ``identify`` then one ``track`` of a new
  user through ``client.background``: together 270 identifies and 270 tracks a minute, 45% of
  each shared window (the ``RedisGovernor`` shares the identify and track windows and the
  row budget across the processes);
* **one sync process** runs ``sync_users`` of a generated table (``--sync-rows``, by default
  40% of what the 1,200 rows a minute move in the run) with ``state="redis://...?name=soak"``
  under the same ``RedisGovernor``, then syncs it again with every 100th user changed (only
  those are sent: the state is shared through Redis);
* **a restart**: at 30% of the run, worker 1 hands over a burst of ``--burst`` (450) users, a
  login storm larger than the windows' room, and closes (``drain_timeout`` 2 s, a pod's
  short grace): what the windows did not let out is spilled to the Redis outbox. Its successor
  starts once a crash below happened (a rescheduled pod takes a while), so the other workers'
  periodic claims (every 15 s) take the spill;
* **a crash**: the worker holding the most claimed records of the spill is killed (``SIGKILL``) two
  seconds after it claimed them; its records must be taken over by the others within a minute
  (its 40 s lease, then the next claim); its successor starts at once.

At the end every worker stops handing over, flushes and closes; then the emulator's store (its
users' metadata and its tracks, from the report ``_emulated.EmulatorProcess`` writes) is
compared, user by user, with what each worker wrote to its hand-over log (one line per user,
written unbuffered *before* handing it over):

* **lost** (target 0): records handed over by any process but the killed one, or held in the
  outbox, that never reached the server;
* **lost to the crash (by design)**: records only in the killed process's memory (its own
  hand-overs not yet delivered: a crash loses what was only in memory; the outbox holds what was
  spilled or claimed). Reported, and checked against what its last stats report (written every
  second) said it had pending, plus what it handed over after that report;
* **duplicates** (at-least-once): events stored twice, and identifies accepted more often than
  there are users. Allowed only for the restarted worker's users (their records went through
  the outbox), at most the records in flight at its close (``max_concurrency``, 16) plus the
  records the killed process held claimed;
* **429s** (target 0): from the emulator's request log;
* **RSS**: each process's ``VmRSS`` sampled every 5 s: start, after warm-up (60 s into the
  process's life, or a fifth of the run if shorter, 10 s at least), peak, end; flat when end
  <= 1.2x the value after warm-up (judged for processes that lived at least twice the warm-up).

Also checked: the spill happened and was replayed, the outbox stream is empty at the end, and
the sync stored every row and its second run sent only the changed ones.

Usage: ``python benchmarks/bench_soak.py [--seconds 300] [--rate 1.5] [--burst 450]``.
A default run takes about 6 minutes. Exits 1 on a miss (each printed as MISSED, with its cause).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
from _emulated import EmulatorProcess
from _table import Table, verdict
from _workload import API_KEY, describe_machine, user_row
from bench_sync import redis_server, rows

from analytex_async import AsyncAnalytex, DeliveryPolicy
from analytex_async.governors import RedisGovernor, api_key_hash

RATE = 600
"""The emulator's real-time budget: requests a minute per endpoint (the real API's)."""
ROWS_PER_MINUTE = 1200
"""The emulator's and the governor's bulk rate (the real API's)."""
NAME = "soak"
EVENT = "Soak Tick"
WORKERS = 3
DRAIN_TIMEOUT = 2.0
MAX_CONCURRENCY = 16
"""The client's default: records in flight at once at most (the duplicates' allowance)."""
RESTART_SHARE = 0.3
HOLD_BEFORE_KILL = 2.0
"""Seconds a worker holds claimed records before it is killed."""
CLAIM_WAIT = 40.0
"""Seconds the parent waits for a worker to claim the spill (the claim interval is 15 s)."""
TARGET_TAKEOVER = 60.0
TARGET_RSS_RATIO = 1.2
RSS_INTERVAL = 5.0
FINAL_FLUSH = 240.0
"""Seconds a worker's last flush may take, after the run."""
STEP = 0.25


def user_id(label: str, n: int) -> str:
    return f"soak-{label}-{n:06d}"


# -- a worker, in its own process -------------------------------------------------------------


def _write_json(path: Path, document: dict[str, Any]) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(document))
    partial.replace(path)


def _stats(client: AsyncAnalytex) -> dict[str, int]:
    stats = client.background.stats
    names = ("queued", "pending", "delivered", "coalesced", "via_bulk", "dropped", "failed")
    return {name: int(getattr(stats, name)) for name in (*names, "spilled", "replayed")}


async def worker(args: argparse.Namespace) -> None:
    """Hand over users at ``args.rate`` a second until ``args.stop_at``; burst or flush; close."""
    directory, label = Path(args.dir), args.label
    log = os.open(directory / f"handover-{label}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    report = directory / f"stats-{label}.json"
    governor = RedisGovernor(args.redis, rows_per_minute=ROWS_PER_MINUTE, name=NAME)
    policy = DeliveryPolicy(outbox=f"{args.redis}?name={NAME}", drain_timeout=DRAIN_TIMEOUT)
    handed = 0
    async with (
        governor,
        AsyncAnalytex(API_KEY, base_url=args.url, governor=governor, delivery=policy) as client,
    ):
        background = client.background

        def hand_over() -> None:
            nonlocal handed
            uid = user_id(label, handed)
            os.write(log, f"{uid}\n".encode())  # before: a kill in between counts it as lost
            background.identify(uid, metadata={"worker": label, "n": handed})
            background.track(uid, EVENT, metadata={"worker": label, "n": handed})
            handed += 1

        async def report_forever() -> None:
            while True:
                _write_json(report, {"time": time.time(), "handed": handed, **_stats(client)})
                await anyio.sleep(1.0)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(report_forever)
            await anyio.sleep(max(0.0, args.start_at - time.time()))
            due = time.monotonic()
            while time.time() < args.stop_at:
                hand_over()
                due += 1 / args.rate
                await anyio.sleep(max(0.0, due - time.monotonic()))
            flushed = None
            if args.burst:
                for _ in range(args.burst):
                    hand_over()
            else:
                started = time.monotonic()
                await background.flush(timeout=FINAL_FLUSH)
                flushed = time.monotonic() - started
            tasks.cancel_scope.cancel()
    final = {"time": time.time(), "handed": handed, "flush_seconds": flushed, **_stats(client)}
    _write_json(directory / f"final-{label}.json", final)
    os.close(log)


# -- the sync, in its own process -------------------------------------------------------------


async def sync(args: argparse.Namespace) -> None:
    """Sync the table, then sync it again with every 100th row changed; write the results."""
    await anyio.sleep(max(0.0, args.start_at - time.time()))
    governor = RedisGovernor(args.redis, rows_per_minute=ROWS_PER_MINUTE, name=NAME)
    runs = []
    async with governor, AsyncAnalytex(API_KEY, base_url=args.url, governor=governor) as client:
        for changed in (None, 100):
            started = time.monotonic()
            result = await client.sync_users(
                rows(args.sync_rows, changed), state=f"{args.redis}?name={NAME}"
            )
            runs.append(
                {
                    "seconds": time.monotonic() - started,
                    "sent": result.rows_sent,
                    "new": result.rows_new,
                    "changed": result.rows_changed,
                    "unchanged": result.rows_unchanged,
                    "ok": result.ok,
                }
            )
    _write_json(Path(args.dir) / "final-sync.json", {"runs": runs})


# -- the parent: start, restart, kill, watch, judge -------------------------------------------


def rss_kib(pid: int) -> int | None:
    """The process's resident set (``VmRSS``) in KiB; ``None`` once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Fleet:
    """The child processes, their RSS samples, and what happened to them."""

    def __init__(self, args: argparse.Namespace, url: str, redis_url: str, directory: Path):
        self.args, self.url, self.redis_url, self.directory = args, url, redis_url, directory
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.born: dict[str, float] = {}
        self.samples: dict[str, list[tuple[float, int]]] = {}
        self._next_sample = 0.0
        self.events: list[str] = []

    def start(self, label: str, *extra: str) -> None:
        common = ["--url", self.url, "--redis", self.redis_url, "--dir", str(self.directory)]
        errors = (self.directory / f"stderr-{label}.txt").open("wb")
        self.processes[label] = subprocess.Popen(  # our own script, no shell
            [sys.executable, __file__, "--child", label, *common, *extra],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        errors.close()
        self.born[label] = time.time()
        self.samples[label] = []

    def start_worker(self, label: str, start_at: float, stop_at: float, burst: int = 0) -> None:
        self.start(label, "--rate", str(self.args.rate), "--start-at", str(start_at),
                   "--stop-at", str(stop_at), "--burst", str(burst))  # fmt: skip

    def sample(self, force: bool = False) -> None:
        now = time.time()
        if not force and now < self._next_sample:
            return
        self._next_sample = now + RSS_INTERVAL
        for label, process in self.processes.items():
            age = now - self.born[label]
            kib = rss_kib(process.pid) if process.poll() is None and age >= 1.0 else None
            if kib:  # skipped in its first second: it may still be being exec'd
                self.samples[label].append((age, kib))

    def wait(self, seconds: float, until: Any = None) -> bool:
        """Sample while waiting ``seconds`` or until ``until()`` is true (returned)."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.sample()
            if until is not None and until():
                return True
            time.sleep(STEP)
        return bool(until is not None and until())

    def check_exit(self, label: str) -> None:
        process = self.processes[label]
        if process.returncode not in (0, -signal.SIGKILL):
            tail = (self.directory / f"stderr-{label}.txt").read_text()[-3000:]
            raise RuntimeError(f"{label} exited with {process.returncode}:\n{tail}")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def holders(redis_url: str) -> dict[int, int]:
    """The outbox's consumers that hold records: pid -> records held."""
    import redis  # noqa: PLC0415 -- the redis extra

    key = f"analytex:outbox:{{{NAME}:{_key_hash()}}}:records"
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        if not client.exists(key):
            return {}
        try:
            consumers = client.xinfo_consumers(key, "delivery")
        except redis.ResponseError:  # no group yet
            return {}
    held: dict[int, int] = {}
    for consumer in consumers:
        pid = int(str(consumer["name"]).split("/")[1])
        if consumer["pending"]:
            held[pid] = held.get(pid, 0) + int(consumer["pending"])
    return held


def outbox_length(redis_url: str) -> int:
    import redis  # noqa: PLC0415 -- the redis extra

    key = f"analytex:outbox:{{{NAME}:{_key_hash()}}}:records"
    with redis.Redis.from_url(redis_url) as client:
        return int(client.xlen(key))


def _key_hash() -> str:
    return api_key_hash(API_KEY)


def read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.exists() else {}


def stored(report: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], Counter[str]]:
    """Every user the emulator stored (id -> metadata) and the soak's events per user."""
    events = Counter(user for user, name, _ in report["events"] if name == EVENT)
    return dict(report["users"]), events


def run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """Run the soak; everything the judgement needs."""
    seconds = args.seconds
    emulator = EmulatorProcess(directory, "soak", API_KEY, RATE, ROWS_PER_MINUTE)
    with redis_server(directory) as redis_url, emulator:
        fleet = Fleet(args, emulator.url, redis_url, directory)
        try:
            t0 = time.time() + 5.0  # every child has imported and opened by then
            end = t0 + seconds
            restart_at = t0 + RESTART_SHARE * seconds
            for slot in range(1, WORKERS + 1):
                burst = args.burst if slot == 1 else 0
                fleet.start_worker(f"{slot}a", t0, restart_at if slot == 1 else end, burst)
            fleet.start("sync", "--start-at", str(t0), "--sync-rows", str(args.sync_rows))
            figures = _restart_and_kill(fleet, t0, end)
            fleet.wait(end - time.time())
            workers = [label for label in fleet.processes if label != "sync"]
            fleet.wait(FINAL_FLUSH + 60, until=lambda: all(
                fleet.processes[w].poll() is not None for w in workers))  # fmt: skip
            fleet.wait(FINAL_FLUSH, until=lambda: fleet.processes["sync"].poll() is not None)
            for label in fleet.processes:
                if fleet.processes[label].poll() is None:
                    raise RuntimeError(f"{label} did not finish in time")
                fleet.check_exit(label)
            figures["outbox_left"] = outbox_length(redis_url)
        finally:
            fleet.stop_all()
    report = emulator.report()
    figures["users"], figures["events"] = stored(report)
    figures["log"], figures["too_many"] = report["requests"], int(report["too_many"])
    figures["samples"] = fleet.samples
    figures["labels"] = list(fleet.processes)
    return figures


def _restart_and_kill(fleet: Fleet, t0: float, end: float) -> dict[str, Any]:
    """Worker 1 bursts and closes; the holder of its spill is killed; both are succeeded."""
    figures: dict[str, Any] = {"killed": None, "held_at_kill": 0, "takeover": None}
    first = fleet.processes["1a"]
    fleet.wait(end - time.time(), until=lambda: first.poll() is not None)
    fleet.check_exit("1a")
    pids = {fleet.processes[label].pid: label for label in ("2a", "3a")}
    found: dict[int, int] = {}

    def claimed() -> bool:
        found.update({p: n for p, n in holders(fleet.redis_url).items() if p in pids})
        return bool(found)

    closed_at = time.time()
    if fleet.wait(CLAIM_WAIT, until=claimed):
        pid = max(found, key=found.__getitem__)  # the one holding the most
        label = pids[pid]
        figures["claimed_after"] = time.time() - closed_at
        fleet.wait(HOLD_BEFORE_KILL)
        figures["held_at_kill"] = holders(fleet.redis_url).get(pid, 0)
        figures["last_report"] = read_json(fleet.directory / f"stats-{label}.json")
        fleet.processes[label].send_signal(signal.SIGKILL)
        killed_at = time.time()
        fleet.processes[label].wait()
        figures["killed"], figures["killed_at"] = label, killed_at
        fleet.start_worker(f"{label[0]}b", time.time(), end)
        fleet.events.append(f"{label} killed holding {figures['held_at_kill']} record(s)")
    fleet.start_worker("1b", time.time(), end)
    if figures["killed"] is not None:
        dead = fleet.processes[figures["killed"]].pid
        if fleet.wait(end - time.time(), until=lambda: dead not in holders(fleet.redis_url)):
            figures["takeover"] = time.time() - figures["killed_at"]
    return figures


# -- the judgement ----------------------------------------------------------------------------


def handed_over(directory: Path, label: str) -> list[str]:
    path = directory / f"handover-{label}.log"
    return path.read_text().split() if path.exists() else []


def rss_row(samples: list[tuple[float, int]], warm_up: float) -> dict[str, float]:
    after = next((kib for age, kib in samples if age >= warm_up), samples[-1][1])
    return {
        "start": samples[0][1] / 1024,
        "warm": after / 1024,
        "peak": max(kib for _, kib in samples) / 1024,
        "end": samples[-1][1] / 1024,
        "life": samples[-1][0],
    }


def judge(args: argparse.Namespace, directory: Path, figures: dict[str, Any]) -> bool:
    users, events = figures["users"], figures["events"]
    killed = figures["killed"]
    workers = [label for label in figures["labels"] if label != "sync"]
    finals = {label: read_json(directory / f"final-{label}.json") for label in workers}
    per: dict[str, dict[str, int]] = {}
    for label in workers:
        uids = handed_over(directory, label)
        missing = 0
        duplicates = 0
        for uid in uids:
            ok = users.get(uid, {}).get("worker") == label
            missing += (not ok) + (events[uid] == 0)
            duplicates += max(0, events[uid] - 1)
        per[label] = {"users": len(uids), "missing": missing, "duplicates": duplicates}
    handed_ids = {uid for label in workers for uid in handed_over(directory, label)}
    strangers = sum(1 for uid in events if uid not in handed_ids)

    table = Table(["worker", "users handed over", "stored in full", "missing records",
                   "duplicate events", "spilled", "replayed", "via bulk"])  # fmt: skip
    for label in workers:
        final = finals[label] or figures.get("last_report", {})
        row = per[label]
        note = " (killed)" if label == killed else ""
        table.add(
            f"{label}{note}",
            f"{row['users']:,}",
            f"{row['users'] - row['missing']:,}" if not row["missing"] else "",
            f"{row['missing']:,}",
            f"{row['duplicates']:,}",
            f"{final.get('spilled', 0):,}",
            f"{final.get('replayed', 0):,}",
            f"{final.get('via_bulk', 0):,}",
        )
    table.print()

    lost = sum(row["missing"] for label, row in per.items() if label != killed)
    crash = per[killed]["missing"] if killed else 0
    report = figures.get("last_report", {})
    in_memory = 0
    if killed:
        after_report = per[killed]["users"] - int(report.get("handed", 0))
        in_memory = int(report.get("pending", 0)) + 2 * after_report
    event_dupes = sum(row["duplicates"] for row in per.values())
    outside = sum(row["duplicates"] for label, row in per.items() if label != "1a")
    log = figures["log"]
    identify_ok = sum(n for s, n in log.get("POST /v1/identify", {}).items() if s.startswith("2"))
    identified = sum(1 for label in workers for uid in handed_over(directory, label)
                     if users.get(uid, {}).get("worker") == label)  # fmt: skip
    identify_dupes = identify_ok - identified
    allowance = MAX_CONCURRENCY + int(figures["held_at_kill"])
    spilled = int(finals["1a"].get("spilled", 0))
    replayed = sum(int((finals[label] or report).get("replayed", 0)) for label in workers)
    sync_final = read_json(directory / "final-sync.json")
    runs = sync_final.get("runs", [])
    sync_users = sum(1 for uid in users if uid.startswith("user-"))
    changed = len(range(0, args.sync_rows, 100))
    changed_ok = sum(
        1 for i in range(0, args.sync_rows, 100)
        if users.get(user_row(i)["user_id"], {}).get("score") == -1.5
    )  # fmt: skip
    warm_up = min(60.0, max(10.0, args.seconds / 5))

    print()
    targets = Table(["target", "figure", "target value"])
    targets.add("records lost", f"{lost:,}", "0", met=lost == 0)
    targets.add(
        "lost to the crash (by design: only in the killed process's memory)",
        f"{crash:,}",
        f"<= {in_memory:,} in its memory",
        met=crash <= in_memory if killed else None,
    )
    targets.add("events of users never handed over", f"{strangers:,}", "0", met=strangers == 0)
    targets.add(
        "duplicates: events stored twice + identifies accepted twice",
        f"{event_dupes:,} + {identify_dupes:,}",
        f"<= {allowance} (in flight at the close or held at the kill)",
        met=event_dupes + identify_dupes <= allowance and outside == 0 and identify_dupes >= 0,
    )
    too_many = figures["too_many"]
    targets.add("429s drawn (emulator's log)", f"{too_many:,}", "0", met=too_many == 0)
    targets.add(
        "the restart spilled, the others replayed",
        f"{spilled:,} spilled, {replayed:,} replayed",
        "> 0, replayed >= spilled",
        met=spilled > 0 and replayed >= spilled,
    )
    takeover = figures["takeover"]
    targets.add(
        "crash: claimed records taken over",
        f"{takeover:.1f} s after the kill" if takeover is not None else "never",
        f"<= {TARGET_TAKEOVER:g} s",
        met=takeover is not None and takeover <= TARGET_TAKEOVER,
    )
    targets.add(
        "outbox stream at the end", f"{figures['outbox_left']:,} records", "0",
        met=figures["outbox_left"] == 0,
    )  # fmt: skip
    first_ok = len(runs) == 2 and runs[0]["sent"] == args.sync_rows and runs[0]["ok"]
    second_ok = len(runs) == 2 and runs[1]["sent"] == changed and runs[1]["ok"]
    targets.add(
        "sync: rows stored / second run sent (changed stored)",
        f"{sync_users:,} / {runs[1]['sent'] if len(runs) == 2 else '?'} ({changed_ok})",
        f"{args.sync_rows:,} / {changed} ({changed})",
        met=first_ok and second_ok and sync_users == args.sync_rows and changed_ok == changed,
    )
    flat_ok = True
    rss = Table(["process", "MiB start", "after warm-up", "peak", "end", "end / warm-up"])
    for label in figures["labels"]:
        samples = figures["samples"][label]
        if not samples:
            continue
        memory = rss_row(samples, warm_up)
        judged = memory["life"] >= 2 * warm_up
        ratio = memory["end"] / memory["warm"]
        flat_ok &= ratio <= TARGET_RSS_RATIO or not judged
        rss.add(
            f"{label} ({memory['life']:.0f} s)",
            f"{memory['start']:.1f}",
            f"{memory['warm']:.1f}",
            f"{memory['peak']:.1f}",
            f"{memory['end']:.1f}",
            f"{ratio:.3f}x" if judged else f"{ratio:.3f}x (short life)",
            met=ratio <= TARGET_RSS_RATIO if judged else None,
        )
    targets.add("RSS flat (every process)", "see below", f"end <= {TARGET_RSS_RATIO}x warm-up",
                met=flat_ok)  # fmt: skip
    targets.print()
    print()
    rss.print()

    print(
        f"\nworkers: {args.rate:g} users/s each ({WORKERS * args.rate * 60:,.0f} identifies and "
        f"as many tracks a minute together, {WORKERS * args.rate * 60 / RATE:.0%} of each "
        f"window); burst of {args.burst:,} at the restart."
    )
    if killed:
        print(
            f"crash: {killed} claimed the spill {figures['claimed_after']:.1f} s after the close, "
            f"was killed {HOLD_BEFORE_KILL:g} s later holding {figures['held_at_kill']:,} "
            f"record(s); its last stats report ({figures['killed_at'] - report['time']:.1f} s "
            f"before the kill) had {report.get('pending', 0):,} pending, so about "
            f"{max(0, int(report.get('pending', 0)) - int(figures['held_at_kill'])):,} of its "
            "own only in memory (pending less the claimed records it held)."
        )
    for number, run_figures in enumerate(runs, 1):
        print(f"sync run {number}: {run_figures}")
    flushes = {label: finals[label].get("flush_seconds") for label in workers if finals[label]}
    print(f"final flushes (s): { {k: round(v, 2) for k, v in flushes.items() if v is not None} }")
    print(f"identify requests accepted: {identify_ok:,}; users identified: {identified:,}")
    shortfall = ", ".join(f"{label}: {row['missing']}" for label, row in per.items())
    causes = {
        f"{lost:,} record(s) lost (missing per worker: {shortfall})": lost > 0,
        f"{outside:,} duplicate event(s) of users whose records never went through the outbox": (
            outside > 0
        ),
        f"duplicates past the allowance: {event_dupes + identify_dupes:,} > {allowance}": (
            event_dupes + identify_dupes > allowance
        ),
        f"429s drawn: { {p: c['429'] for p, c in log.items() if c.get('429')} }": too_many > 0,
        "the restart spilled nothing: the windows had room for the burst within the drain "
        "(raise --burst)": spilled == 0,
        f"no worker claimed the spill within {CLAIM_WAIT:g} s, so none was killed holding "
        "records": killed is None,
        "the killed process's records were not taken over within "
        f"{TARGET_TAKEOVER:g} s ({takeover})": killed is not None
        and (takeover is None or takeover > TARGET_TAKEOVER),
        f"{figures['outbox_left']:,} record(s) left in the outbox": figures["outbox_left"] > 0,
        f"the sync did not complete as expected: {runs}": not (first_ok and second_ok),
        "RSS grew past 1.2x its value after warm-up (see the RSS table)": not flat_ok,
    }
    for cause, missed in causes.items():
        if missed:
            print(f"MISSED: {cause}")
    return table.ok and targets.ok and rss.ok and not any(causes.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="real time of the run")
    parser.add_argument("--rate", type=float, default=1.5, help="users a second per worker")
    parser.add_argument("--burst", type=int, default=RATE, help="users handed over at the restart")
    parser.add_argument("--sync-rows", type=int, default=None, help="rows of the synced table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    for hidden in ("--url", "--redis", "--dir"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    for hidden in ("--start-at", "--stop-at"):
        parser.add_argument(hidden, type=float, help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sync_rows is None:
        args.sync_rows = int(0.4 * ROWS_PER_MINUTE * args.seconds / 60)
    if args.child is not None:
        args.label = args.child
        asyncio.run(sync(args) if args.child == "sync" else worker(args))
        return 0

    print(
        f"soak: {WORKERS} background-delivery workers + 1 sync ({args.sync_rows:,} rows, twice) "
        f"on one Redis for {args.seconds:g} s against the emulator at {RATE} requests/min per "
        f"endpoint and {ROWS_PER_MINUTE:,} rows/min; {describe_machine()}\n"
    )
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        figures = run(args, directory)
        ok = judge(args, directory, figures)
    return verdict(ok)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

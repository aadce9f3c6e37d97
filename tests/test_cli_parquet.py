"""``analytex-async import`` reads ``.parquet`` files, as ``read_source`` does.

Uses ``test_cli``'s emulator, served on a loopback socket for the module, and its in-process
``CliRunner``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import Result

from .test_cli import QUICK, Served, key, run, served

__all__ = ["key", "run", "served"]  # the fixtures this module shares


def test_import_users_from_a_parquet_file_stores_them_and_reports_a_bad_cell(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "users.parquet"
    waits = [None, dt.timedelta(seconds=1), None]
    table = pa.table(
        {
            "user_id": [1, 2, 3],
            "plan": ["pro", "free", None],
            "signed_up": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None, None]),
            "wait": pa.array(waits, pa.duration("us")),
        }
    )
    pq.write_table(table, source)
    rejects = tmp_path / "rejects.ndjson"
    result = run("import", "users", str(source), "--rejects", str(rejects), *QUICK)
    assert result.exit_code == 1, result.output  # one record was rejected
    assert "Imported users from" in result.stdout
    users = served.account(key).users
    assert {user_id: user.metadata for user_id, user in users.items()} == {
        "1": {"plan": "pro", "signed_up": "2024-01-02T03:04:05+00:00"},
        "3": {},
    }
    [rejection] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert (rejection["position"], rejection["line"]) == (1, None)
    assert rejection["reason"].startswith("column 'wait': a timedelta is not a metadata value")

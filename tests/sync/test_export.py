"""``crisp-sync export`` (`crisp_api.sync.export`): the analysts' views as CSV and Parquet.

The fake is synced into a real SQLite file (and a PostgreSQL database); each file written is
read back and compared with the view it came from; both databases write the same CSV; every
mistake of the command line is one line and exit status 2, before anything is read or
written.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from crisp_api import extras
from crisp_api.sync import SQLiteStore, sync_website, views
from crisp_api.sync.cli import main
from crisp_api.testing import FakeCrisp
from tests.sync.helpers import fast_client

pytest_plugins = ["tests.postgres_server"]

QUOTED = 'a "quoted", two-line\r\ntext é'
ODD = ("a lone \ud800 surrogate", "a nul \u0000 inside")


def seeded(fake: FakeCrisp) -> None:
    """Messages a CSV must quote, and two whose text the columns cannot show."""
    session_id = fake.conversations()[0]["session_id"]
    fake.add_odd_message(session_id, {}, content=QUOTED)
    for text in ODD:
        fake.add_odd_message(session_id, {}, content=text)


def sync_into(fake: FakeCrisp, store: Any) -> None:
    with store:
        assert sync_website(fast_client(fake), fake.website_id, store, workers=4).complete


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "crisp.sqlite3"
    with FakeCrisp(conversations=25, messages=6, seed=51) as fake:
        seeded(fake)
        sync_into(fake, SQLiteStore(path))
    return path


def view_rows(path: Path, name: str) -> list[tuple[Any, ...]]:
    import sqlite3  # noqa: PLC0415

    db = sqlite3.connect(path)
    db.text_factory = lambda data: data.decode("utf-8", "replace")
    try:
        return db.execute(f"SELECT * FROM {name}").fetchall()
    finally:
        db.close()


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def as_csv(value: Any, kind: str) -> str:
    """A SQLite view value as the export writes it."""
    if value is None:
        return ""
    if kind in ("boolean", "flag"):
        return "true" if value else "false"
    return str(value)


def test_csv_holds_every_view_row_as_sqlite_shows_it(sqlite_db: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "new"  # created
    assert main(["export", "--format", "csv", "--out", str(out), "--db", str(sqlite_db)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.csv" for name in views.NAMES]
    printed = capsys.readouterr().out.splitlines()
    for name in views.NAMES:
        view = views.view(name)
        header, *rows = read_csv(out / f"{name}.csv")
        assert header == list(view.columns)
        expected = [[as_csv(value, field.kind) for value, field in zip(row, view.fields,
                                                                        strict=True)]
                    for row in view_rows(sqlite_db, name)]
        assert sorted(rows) == sorted(expected)
        assert f"{name}: {len(rows)} rows -> {out / f'{name}.csv'}" in printed
    raw = (out / "messages_v.csv").read_bytes()
    assert b'"a ""quoted"", two-line\r\ntext \xc3\xa9"' in raw  # RFC 4180, UTF-8
    assert raw.count(b"\r\n") == len(read_csv(out / "messages_v.csv")) + 1  # + the quoted one
    messages = read_csv(out / "messages_v.csv")
    replaced = messages[0].index("replaced")
    assert sum(row[replaced] == "true" for row in messages[1:]) == len(ODD)


def test_parquet_holds_every_view_row_typed(sqlite_db: Path, tmp_path: Path) -> None:
    import pyarrow as pa  # noqa: PLC0415 - the export extra
    import pyarrow.parquet as pq  # noqa: PLC0415

    assert main(["export", "--format", "parquet", "--out", str(tmp_path), "--db",
                 str(sqlite_db), "--view", "messages_v", "--view", "people_v"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messages_v.parquet",
                                                          "people_v.parquet"]
    for name in ("messages_v", "people_v"):
        view = views.view(name)
        table = pq.read_table(tmp_path / f"{name}.parquet")
        assert table.schema.names == list(view.columns)
        kinds = {"text": pa.string(), "json": pa.string(), "integer": pa.int64(),
                 "boolean": pa.bool_(), "flag": pa.bool_(),
                 "timestamp": pa.timestamp("ms", "UTC")}
        assert table.schema.types == [kinds[field.kind] for field in view.fields]
        expected = [
            tuple(None if value is None
                  else datetime.fromisoformat(value) if field.kind == "timestamp"
                  else bool(value) if field.kind in ("boolean", "flag") else value
                  for value, field in zip(row, view.fields, strict=True))
            for row in view_rows(sqlite_db, name)
        ]
        found = [tuple(row.values()) for row in table.to_pylist()]
        assert sorted(found, key=repr) == sorted(expected, key=repr)
    contents = pq.read_table(tmp_path / "messages_v.parquet").column("content").to_pylist()
    assert QUOTED in contents


def test_postgresql_writes_the_csv_sqlite_writes(
    postgres_url: str, tmp_path: Path
) -> None:
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=25, messages=6, seed=52) as fake:
        seeded(fake)
        sync_into(fake, SQLiteStore(path))
        sync_into(fake, PostgresStore(postgres_url, pool_size=4))
    for db, out in ((str(path), tmp_path / "sqlite"), (postgres_url, tmp_path / "postgres")):
        assert main(["export", "--format", "csv", "--out", str(out), "--db", db]) == 0
    for name in views.NAMES:
        sqlite, postgres = (read_csv(tmp_path / kind / f"{name}.csv")
                            for kind in ("sqlite", "postgres"))
        assert sqlite[0] == postgres[0]
        replaced = sqlite[0].index("replaced")
        flagged = [sorted(row[:3] for row in rows[1:] if row[replaced] == "true")
                   for rows in (sqlite, postgres)]
        assert flagged[0] == flagged[1]
        if name == "messages_v":
            assert len(flagged[0]) == len(ODD)
        whole = [sorted(row for row in rows[1:] if row[replaced] == "false")
                 for rows in (sqlite, postgres)]
        assert whole[0] == whole[1]
        assert len(whole[0]) + len(flagged[0]) == len(sqlite) - 1 > 0


def test_the_subcommand_runs_from_the_command_line(sqlite_db: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crisp_api.sync", "export", "--format", "csv", "--out",
         str(tmp_path), "--db", str(sqlite_db), "--view", "people_v"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("people_v: ")
    assert [p.name for p in tmp_path.iterdir()] == ["people_v.csv"]


@pytest.mark.parametrize(("arguments", "message"), [
    (["--db", "{tmp}/none.sqlite3"],
     "no database at {tmp}/none.sqlite3 (give --db or $CRISP_SYNC_DB)"),
    (["--view", "messages_v", "--view", "secrets"],
     "--view: no view named secrets (the views: conversations_v, messages_v, people_v)"),
    (["--out", "{db}/inside-a-file"], "--out {db}/inside-a-file: cannot write there ("),
], ids=["missing database", "unknown view", "out not writable"])
def test_a_wrong_argument_is_one_line_and_exit_2_before_any_work(
    sqlite_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    arguments: list[str], message: str,
) -> None:
    out = tmp_path / "out"
    given = [argument.format(tmp=tmp_path, db=sqlite_db) for argument in arguments]
    assert main(["export", "--format", "csv", "--out", str(out), "--db", str(sqlite_db),
                 *given]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"crisp-sync: {message.format(tmp=tmp_path, db=sqlite_db)}")
    assert not out.exists()


def test_parquet_without_pyarrow_is_one_line_and_exit_2_before_any_work(
    sqlite_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What `extras.installed` finds when pyarrow is not installed: no such module.
    monkeypatch.setitem(extras.MODULES, "export", ("pyarrow_is_not_installed",))
    out = tmp_path / "out"
    assert main(["export", "--format", "parquet", "--out", str(out), "--db",
                 str(tmp_path / "none.sqlite3")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "crisp-sync: --format parquet needs pyarrow, the 'export' extra: "
        "pip install 'crisp-api-next[export]'"]
    assert not out.exists()


def test_a_file_that_cannot_be_written_leaves_nothing_that_looks_whole(
    sqlite_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "people_v.csv").mkdir()  # the rename onto it fails
    assert main(["export", "--format", "csv", "--out", str(tmp_path), "--db", str(sqlite_db),
                 "--view", "people_v"]) == 1
    assert f"cannot write {tmp_path / 'people_v.csv'}" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["people_v.csv"]  # no partial file
    assert list((tmp_path / "people_v.csv").iterdir()) == []

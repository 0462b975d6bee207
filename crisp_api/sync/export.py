"""``crisp-sync export``: the analysts' views (`crisp_api.sync.views`) written to files.

``crisp-sync export --format csv|parquet --out DIR [--db URL] [--view NAME ...]`` writes each
view asked (all by default) to ``DIR/<view>.csv`` or ``DIR/<view>.parquet``. It reads the
database only (opening it as the sync does, so an older one is migrated first and has the
views): no request to Crisp, no credentials.

Rows are streamed (SQLite's cursor, psycopg's ``stream``) and written in batches, so a table
of any size takes little memory. A file is written under a temporary name and renamed once
complete: a failed export leaves no file that looks whole. Everything the command line can
get wrong (an unknown view, no database, an output folder that cannot be written, pyarrow
missing for Parquet) is one line and exit status 2, said before anything is read.

Values are written alike from both databases: a timestamp as UTC (ISO 8601 with
milliseconds in CSV, a ``timestamp[ms, UTC]`` in Parquet), a boolean as ``true``/``false``
(CSV) or a boolean (Parquet), JSON as its text, NULL as an empty CSV field or a Parquet null.
JSON is written in one spelling (sorted keys, no spaces), whichever database held it. SQLite
text that is not UTF-8 (a lone surrogate, which its rows flag ``replaced``) is written
with U+FFFD in its place.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from crisp_api.extras import install_hint, installed
from crisp_api.json_codec import canonical, parse_text
from crisp_api.sync import views
from crisp_api.sync.exits import EXIT_INCOMPLETE, EXIT_OK, UsageError, ended, fail
from crisp_api.sync.settings import DB_ENV, DEFAULT_DB, POSTGRES_SCHEMES
from crisp_api.sync.store import StoreError

FORMATS = ("csv", "parquet")
BATCH = 10_000
"""Rows read and written at a time."""

Rows = Iterator[tuple[Any, ...]]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``crisp-sync export``."""
    parser = argparse.ArgumentParser(
        prog="crisp-sync export",
        description="Write the analysts' views of a crisp-sync database (one file per view) "
        "as CSV or Parquet. Reads the database only: no request, no credentials.",
        epilog="exit status: 0 every view written, 1 a file could not be written (rerun), "
        "2 bad arguments, 5 the database cannot be read",
    )
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="csv (the standard library) or parquet (the 'export' extra)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="the folder to write into (created if missing)")
    parser.add_argument("--db", help=f"SQLite file or PostgreSQL URL (default ${DB_ENV}, "
                        f"else {DEFAULT_DB})")
    parser.add_argument("--view", action="append", metavar="NAME",
                        help=f"a view to write, repeatable (default all: {', '.join(views.NAMES)})")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run ``crisp-sync export``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        chosen = _check(args, os.environ)
        target = Path(args.out)
        with _reader(args.db or os.environ.get(DB_ENV) or DEFAULT_DB) as read:
            for view in chosen:
                path = target / f"{view.name}.{args.format}"
                count = _write(args.format, view, read, path)
                print(f"{view.name}: {count} rows -> {path}", file=out or sys.stdout)
    except (UsageError, StoreError) as exc:
        return ended(exc)
    except _WriteError as exc:
        return fail(str(exc), EXIT_INCOMPLETE)
    return EXIT_OK


class _WriteError(Exception):
    """A file could not be written (disk full, removed folder): nothing half-written kept."""


def _check(args: argparse.Namespace, environ: os._Environ[str] | dict[str, str]
           ) -> list[views.View]:
    """The views to write, once everything the command line names is usable."""
    if args.format == "parquet" and not installed("export"):
        raise UsageError(f"--format parquet needs pyarrow, the 'export' extra: "
                         f"{install_hint('export')}")
    unknown = [name for name in args.view or () if name not in views.NAMES]
    if unknown:
        raise UsageError(f"--view: no view named {', '.join(unknown)} (the views: "
                         f"{', '.join(views.NAMES)})")
    db = args.db or environ.get(DB_ENV) or DEFAULT_DB
    if db.startswith(POSTGRES_SCHEMES):
        if not installed("postgres"):
            raise UsageError(f"a PostgreSQL --db needs the 'postgres' extra: "
                             f"{install_hint('postgres')}")
    elif not Path(db).is_file():
        raise UsageError(f"no database at {db} (give --db or ${DB_ENV})")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".crisp-sync-export-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    names = args.view or views.NAMES
    return [views.view(name) for name in dict.fromkeys(names)]


@contextmanager
def _reader(db: str) -> Iterator[Callable[[views.View], Rows]]:
    """A function streaming a view's rows (values by kind, alike from both databases) from
    the database ``db``, opened as the sync opens it (migrated first if older)."""
    if db.startswith(POSTGRES_SCHEMES):
        with _postgres(db) as read:
            yield read
        return
    from crisp_api.sync.sqlite_database import SqliteDatabase  # noqa: PLC0415 - one of two

    database = SqliteDatabase(db, busy_timeout=10.0, configure=lambda _: None)
    try:
        def read(view: views.View) -> Rows:
            with database.statement(f"export {view.name}") as connection:
                connection.text_factory = _text
                columns = ", ".join(view.columns)
                cursor = connection.execute(f"SELECT {columns} FROM {view.name}")  # noqa: S608 - names of the views
                converters = [_SQLITE[field.kind] for field in view.fields]
                while batch := cursor.fetchmany(BATCH):
                    for row in batch:
                        yield tuple(convert(value) for convert, value in
                                    zip(converters, row, strict=True))
        yield read
    finally:
        database.close()


@contextmanager
def _postgres(url: str) -> Iterator[Callable[[views.View], Rows]]:
    from crisp_api.sync.postgres_database import PgDatabase  # noqa: PLC0415 - optional extra

    try:
        database = PgDatabase(url, pool_size=1, connect_timeout=10.0)
    except ValueError as exc:
        raise UsageError(f"--db: {exc}") from None
    try:
        def read(view: views.View) -> Rows:
            columns = ", ".join(view.columns)
            converters = [_json if field.kind == "json" else _same for field in view.fields]
            with database.statement(f"export {view.name}") as cursor:
                for row in cursor.stream(f"SELECT {columns} FROM {view.name}"):  # noqa: S608 - names of the views
                    yield tuple(convert(value) for convert, value in
                                zip(converters, row, strict=True))
        yield read
    finally:
        database.close()


def _text(data: bytes) -> str:
    """SQLite text as a string; bytes that are not UTF-8 (a lone surrogate) as U+FFFD."""
    return data.decode("utf-8", "replace")


def _sqlite_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _sqlite_flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _same(value: Any) -> Any:
    return value


def _json(value: Any) -> str | None:
    """A JSON value (JSONB as psycopg decodes it) as canonical JSON text (`rows.canonical`:
    sorted keys, no spaces), as SQLite keeps it."""
    return None if value is None else canonical(value)


def _sqlite_json(value: str | None) -> str | None:
    return None if value is None else canonical(parse_text(value))


_SQLITE: dict[views.Kind, Callable[[Any], Any]] = {
    "text": _same, "integer": _same, "json": _sqlite_json,
    "boolean": _sqlite_flag, "flag": _sqlite_flag, "timestamp": _sqlite_time,
}
"""SQLite's values as PostgreSQL's driver gives them (times as datetimes, flags as bools),
and JSON in one spelling whichever database held it."""


# Writing -------------------------------------------------------------------------------------


def _write(form: str, view: views.View, read: Callable[[views.View], Rows], path: Path) -> int:
    """Write ``view`` to ``path`` under a temporary name, renamed once complete; the rows
    written."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        count = (_write_csv if form == "csv" else _write_parquet)(view, read(view), partial)
        partial.replace(path)
    except OSError as exc:
        raise _WriteError(f"cannot write {path} ({exc.strerror or exc}); "
                          "no part of it is kept") from None
    finally:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
    return count


def _csv_value(value: Any) -> Any:
    """A boolean or a time as CSV writes it: a word, UTC ISO 8601 (None stays empty)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return value


def _write_csv(view: views.View, rows: Rows, path: Path) -> int:
    """Write the rows as CSV; only booleans and times need converting (the writer writes
    None as an empty field, and texts and integers as they are)."""
    count = 0
    converted = [place for place, field in enumerate(view.fields)
                 if field.kind in ("boolean", "flag", "timestamp")]
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, dialect="excel", lineterminator="\r\n")
        writer.writerow(view.columns)
        for row in rows:
            values = list(row)
            for place in converted:
                values[place] = _csv_value(values[place])
            writer.writerow(values)
            count += 1
    return count


def _write_parquet(view: views.View, rows: Rows, path: Path) -> int:
    import pyarrow as pa  # noqa: PLC0415 - optional extra
    import pyarrow.parquet as pq  # noqa: PLC0415 - optional extra

    types = {"text": pa.string(), "json": pa.string(), "integer": pa.int64(),
             "boolean": pa.bool_(), "flag": pa.bool_(), "timestamp": pa.timestamp("ms", "UTC")}
    schema = pa.schema([(field.name, types[field.kind]) for field in view.fields])
    count = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        while batch := list(islice(rows, BATCH)):
            columns = list(zip(*batch, strict=True))
            writer.write_batch(pa.record_batch(
                [pa.array(column, type=kind) for column, kind in
                 zip(columns, schema.types, strict=True)], schema=schema))
            count += len(batch)
    return count

"""Bulk reads and writes for the order store: DataFrames in, driver-level batches out.

Row-by-row ORM costs 2-30x a driver batch (PLATFORM-NOTES), so every batch write goes through here: SQLite gets
multi-row ``INSERT … VALUES (…), (…)`` statements on the raw sqlite3 connection; PostgreSQL gets ``COPY`` (into the
table, or into a staging table followed by ``MERGE``, falling back to ``INSERT … SELECT … ON CONFLICT``, when
conflicts must be handled). Both run inside the caller's transaction, so a batch lands whole or not at all.
"""

from __future__ import annotations

import functools
import gc
import itertools
import json
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Boolean, Connection, Date, Table, select, text
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from yidi.types import UTCDateTime

_stage_counter = itertools.count()

_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a bulk batch is built and written, back on (as it was) after.

    A chunk of a bulk drop makes millions of short-lived containers (row tuples for the driver, object arrays) and
    no reference cycles to speak of; every few hundred allocations the collector would walk the young ones, and now
    and then everything the process holds (pandas, SQLAlchemy, Prefect): ~15% of a 100k-order drop's CPU time
    went to that. Reference counting still frees everything as usual; cycles made meanwhile are collected at the
    next collection after the pause. Nested and concurrent pauses (threads landing chunks side by side) are
    counted: the collector comes back when the last one ends. Never held across a ``yield``."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def _column_values(series: pd.Series, column_type, dialect: str) -> list:
    """One column as a list of driver-ready values (None for missing)."""
    if isinstance(column_type, UTCDateTime) or (dialect == "sqlite" and series.dtype.kind == "M"):
        stamps = pd.to_datetime(series, utc=True, format="mixed")
        # Batches repeat times (one 'now' per batch, order times by the minute): convert each distinct one once.
        codes, distinct = pd.factorize(stamps)
        if dialect == "sqlite":
            # SQLAlchemy's SQLite DATETIME storage format, naive UTC (sqlite3 binds no datetime objects).
            converted = np.asarray(distinct.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S.%f"), dtype=object)
        else:
            converted = distinct.to_pydatetime().astype(object)
        values = np.append(converted, None)[codes]  # code -1 (missing) takes the None at the end
        return values.tolist()
    elif isinstance(column_type, Date):
        values = pd.to_datetime(series, format="mixed").dt.date.astype(object)
        if dialect == "sqlite":
            # NaT is a date instance too: it must become NULL, not the text 'NaT'.
            values = values.map(lambda d: d.isoformat() if isinstance(d, date) and d is not pd.NaT else None)
    elif isinstance(column_type, Boolean) and dialect == "sqlite":
        values = series.astype("boolean").astype("Int64")
    elif dialect == "sqlite" and series.dtype == object:
        # Python objects may hide datetimes (pandas Timestamps included): store SQLAlchemy's naive-UTC text. A plain
        # loop: Series.map would infer a string dtype and copy large texts into Arrow and back.
        missing = series.isna().to_numpy()
        return [None if gone else _sqlite_datetime(v) if isinstance(v, datetime) else v
                for v, gone in zip(series.tolist(), missing, strict=True)]
    else:
        values = series
        if getattr(series.dtype, "storage", None) == "pyarrow" and len(series) >= FEW_TEXTS_MIN_ROWS:
            few = _few_distinct_texts(series)
            if few is not None:
                return few
    if not values.hasnans:
        return values.tolist()
    return values.to_numpy(dtype=object, na_value=None).tolist()


FEW_TEXTS_MIN_ROWS = 2048
FEW_TEXTS_SAMPLE = 1024


def _few_distinct_texts(series: pd.Series) -> list | None:
    """A text column repeating a few values (provinces, item codes, states: judged on its first rows) as a list in
    which equal texts are one Python string: each distinct text is made once, not once per row. None otherwise."""
    arrow = pa.array(series.array)
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    if pc.count_distinct(arrow.slice(0, FEW_TEXTS_SAMPLE), mode="all").as_py() > FEW_TEXTS_SAMPLE // 8:
        return None
    encoded = pc.dictionary_encode(arrow)
    texts = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
    return texts[pc.fill_null(encoded.indices, len(texts) - 1).to_numpy()].tolist()


def _sqlite_datetime(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def frame_rows(table: Table, df: pd.DataFrame, dialect: str) -> tuple[list[str], list[tuple]]:
    """Column names and row tuples ready for the driver (built column-wise: fast with Arrow strings)."""
    columns, value_lists = _frame_values(table, df, dialect)
    return columns, list(zip(*value_lists, strict=True))


def _frame_values(table: Table, df: pd.DataFrame, dialect: str) -> tuple[list[str], list[list]]:
    unknown = [c for c in df.columns if c not in table.c]
    if unknown:
        raise KeyError(f"{table.name} has no columns {unknown}")
    columns = list(df.columns)
    return columns, [_column_values(df[c], table.c[c].type, dialect) for c in columns]


SQLITE_ROWS_PER_STATEMENT = 500


def _sqlite_insert(raw, head: str, row: str, tail: str, value_lists: list[list], n: int) -> int:
    """``head`` + ``row`` (one row's ``(?, …)``) × n + ``tail`` as multi-row ``VALUES`` statements of up to
    ``SQLITE_ROWS_PER_STATEMENT`` rows (within the bind-parameter limit); returns rows changed. One statement per
    few hundred rows instead of one per row (``executemany``) costs ~30% less: the statement's setup and end, and
    the driver's per-row step, are paid once per statement."""
    width = len(value_lists)
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per = max(1, min(SQLITE_ROWS_PER_STATEMENT, limit // max(width, 1), n))
    flat = list(itertools.chain.from_iterable(zip(*value_lists, strict=True))) if width else []
    full = f"{head}{', '.join([row] * per)}{tail}"
    changed = 0
    with closing(raw.cursor()) as cursor:
        for start in range(0, n, per):
            count = min(per, n - start)
            sql = full if count == per else f"{head}{', '.join([row] * count)}{tail}"
            cursor.execute(sql, flat[start * width : (start + count) * width])
            changed += cursor.rowcount
    return changed


@contextmanager
def driver_errors(conn: Connection, statement: str) -> Iterator[None]:
    """Raise driver errors as SQLAlchemy's (IntegrityError, OperationalError…), as Core calls would."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _conflict_clause(conn, table, columns, on_conflict, update_columns) -> str:
    if on_conflict is None:
        return ""
    target = ", ".join(_quote(conn, c) for c in on_conflict)
    if not update_columns:
        return f" ON CONFLICT ({target}) DO NOTHING"
    sets = ", ".join(f"{_quote(conn, c)} = excluded.{_quote(conn, c)}" for c in update_columns)
    distinct = "IS NOT" if conn.dialect.name == "sqlite" else "IS DISTINCT FROM"
    # Skip rows whose values did not change: no write, no bumped updated_at, honest counts.
    changed = " OR ".join(
        f"{_quote(conn, table.name)}.{_quote(conn, c)} {distinct} excluded.{_quote(conn, c)}"
        for c in update_columns
    )
    return f" ON CONFLICT ({target}) DO UPDATE SET {sets} WHERE {changed}"


def insert_rows(
    conn: Connection,
    table: Table,
    df: pd.DataFrame,
    *,
    on_conflict: Sequence[str] | None = None,
    update_columns: Sequence[str] | None = None,
    rare_conflicts: bool = False,
) -> int:
    """Insert a DataFrame into ``table`` in one driver batch; returns rows inserted or updated.

    ``on_conflict`` names the unique key: conflicting rows are skipped, or updated in ``update_columns`` when
    their values differ. ``rare_conflicts``: the caller looked the keys up in this transaction, so only a
    concurrent writer can conflict; PostgreSQL then copies straight into the table (from a savepoint, and only on a
    unique violation through the staging table), ~30% faster for a large batch.
    """
    if df.empty:
        return 0
    df = _without_unset_columns(table, df, update_columns or ())
    dialect = conn.dialect.name
    columns = list(df.columns)
    column_list = ", ".join(_quote(conn, c) for c in columns)
    conflict = _conflict_clause(conn, table, columns, on_conflict, update_columns)
    raw = conn.connection.driver_connection
    if dialect == "sqlite":
        constants = _sqlite_constants(table, df)
        varying = [c for c in columns if c not in constants]
        values = _frame_values(table, df[varying], dialect)[1] if varying else []
        head = f"INSERT INTO {_quote(conn, table.name)} ({column_list}) VALUES "
        row = f"({', '.join(constants.get(c, '?') for c in columns)})"
        with driver_errors(conn, f"{head}{row}{conflict}"):
            return _sqlite_insert(raw, head, row, conflict, values, len(df))
    if dialect == "postgresql":
        with raw.cursor() as cursor, driver_errors(conn, f"COPY/INSERT {table.name}"):
            if not conflict:
                _copy_into(cursor, _quote(conn, table.name), column_list, table, df)
                return len(df)
            if rare_conflicts and not update_columns and _copy_unless_conflict(cursor, conn, table, column_list, df):
                return len(df)
            stage = _create_stage(conn, table, columns)
            _copy_into(cursor, stage, column_list, table, df)
            upsert = f"INSERT INTO {_quote(conn, table.name)} ({column_list}) SELECT {column_list} FROM {stage}{conflict}"
            merged = _merge_from_stage(conn, cursor, table, stage, columns, on_conflict, update_columns or ())
            if merged is None:
                cursor.execute(upsert)
                merged = cursor.rowcount
            cursor.execute(f"DROP TABLE {stage}")
            return merged
    # Any other database: SQLAlchemy Core executemany (correct, slower).
    rows = frame_rows(table, df, dialect)[1]
    stmt = text(
        f"INSERT INTO {_quote(conn, table.name)} ({column_list}) VALUES ({', '.join(':' + c for c in columns)})"
    )
    conn.execute(stmt, [dict(zip(columns, row, strict=True)) for row in rows])
    return len(rows)


def _copy_unless_conflict(cursor, conn: Connection, table: Table, column_list: str, df: pd.DataFrame) -> bool:
    """COPY straight into ``table`` from a savepoint; False (and nothing written) when a key already exists."""
    import psycopg

    cursor.execute("SAVEPOINT yidi_copy")
    try:
        _copy_into(cursor, _quote(conn, table.name), column_list, table, df)
    except psycopg.errors.UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT yidi_copy")
        return False
    cursor.execute("RELEASE SAVEPOINT yidi_copy")
    return True


def _merge_from_stage(conn: Connection, cursor, table: Table, stage: str, columns: Sequence[str],
                      keys: Sequence[str], update_columns: Sequence[str]) -> int | None:
    """PostgreSQL 15+: the staged rows in by ``MERGE`` (one join of stage and table, then plain inserts), which
    measured faster than ``INSERT … ON CONFLICT``'s per-row speculative insertion for large batches (README: bulk
    intake on PostgreSQL). MERGE does not wait out a concurrent writer's uncommitted row with the
    same key: the insert then fails with a unique violation, and the caller's ``INSERT … ON CONFLICT`` runs instead
    (from a savepoint), so the outcome is the same. Returns rows inserted or updated, or None when not done."""
    if (conn.dialect.server_version_info or (0,)) < (15,) or not set(update_columns) <= set(columns):
        return None  # an updated column the batch lacks is ON CONFLICT's excluded default: left to it
    import psycopg

    quote = functools.partial(_quote, conn)
    on = " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c in keys)
    statement = f"MERGE INTO {quote(table.name)} AS t USING {stage} AS s ON {on}"
    if update_columns:
        changed = " OR ".join(f"t.{quote(c)} IS DISTINCT FROM s.{quote(c)}" for c in update_columns)
        sets = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in update_columns)
        statement += f" WHEN MATCHED AND ({changed}) THEN UPDATE SET {sets}"
    statement += (f" WHEN NOT MATCHED THEN INSERT ({', '.join(quote(c) for c in columns)}) "
                  f"VALUES ({', '.join(f's.{quote(c)}' for c in columns)})")  # fmt: skip
    cursor.execute("SAVEPOINT yidi_merge")
    try:
        cursor.execute(statement)
    except (psycopg.errors.UniqueViolation, psycopg.errors.CardinalityViolation):
        # a concurrent writer's key, or one key twice in the batch: ON CONFLICT decides as it always did
        cursor.execute("ROLLBACK TO SAVEPOINT yidi_merge")
        return None
    count = cursor.rowcount
    cursor.execute("RELEASE SAVEPOINT yidi_merge")
    return count


CONSTANT_CHECK_ROWS = 1000


def _sqlite_constants(table: Table, df: pd.DataFrame) -> dict[str, str]:
    """Columns holding one value in every row (a batch's 'now', its state, actor…), as SQLite literals: written once
    in the statement instead of converted and bound for every row."""
    if len(df) < CONSTANT_CHECK_ROWS:  # a small batch gains less than the check costs
        return {}
    found = {}
    for column in df.columns:
        series = df[column]
        if series.dtype == object or column not in table.c:
            continue
        first, last = series.iloc[0], series.iloc[-1]
        if pd.isna(first) or pd.isna(last) or first != last or not (series.notna().all() and bool((series == first).all())):
            continue
        literal = _sqlite_literal(_column_values(series.iloc[:1], table.c[column].type, "sqlite")[0])
        if literal is not None:
            found[column] = literal
    return found


def _sqlite_literal(value) -> str | None:
    """A driver-ready value as an SQLite literal, or None when it is better bound."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value) if -(2**63) <= value < 2**63 else None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def _without_unset_columns(table: Table, df: pd.DataFrame, update_columns: Sequence[str]) -> pd.DataFrame:
    """``df`` without the columns that are missing in every row and would be NULL anyway (nullable, no default,
    not updated on conflict): fewer values for the driver to bind."""
    unset = [
        c for c in df.columns
        if c in table.c and table.c[c].nullable and table.c[c].default is None and table.c[c].server_default is None
        and c not in update_columns and not table.c[c].primary_key and df[c].isna().all()
    ]
    return df.drop(columns=unset) if unset and len(unset) < len(df.columns) else df


def _copy_into(cursor, target: str, column_list: str, table: Table, df: pd.DataFrame) -> None:
    """PostgreSQL ``COPY target FROM STDIN``: the frame written as csv by Arrow in C (quoted strings, NULL as an
    empty unquoted field, exactly what COPY's csv format reads), or row by row when a column holds Python objects
    Arrow cannot type."""
    data = _copy_csv(table, df)
    if data is None:
        with cursor.copy(f"COPY {target} ({column_list}) FROM STDIN") as copy:
            for row in frame_rows(table, df, "postgresql")[1]:
                copy.write_row(row)
        return
    with cursor.copy(f"COPY {target} ({column_list}) FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(data)


def _copy_csv(table: Table, df: pd.DataFrame) -> bytes | None:
    import pyarrow.csv as pacsv

    columns = {}
    for name in df.columns:
        series, column_type = df[name], table.c[name].type
        if isinstance(column_type, UTCDateTime) or series.dtype.kind == "M":
            series = pd.to_datetime(series, utc=True, format="mixed")  # written as 2026-11-27 10:00:00.000000Z
        elif isinstance(column_type, Date):
            series = pd.to_datetime(series, format="mixed").dt.strftime("%Y-%m-%d")
        elif isinstance(column_type, Boolean):
            series = series.astype("boolean")
        columns[name] = series
    try:
        # one chunk per column: Arrow's csv writer wrote garbage for a column whose first chunks are empty (a
        # pandas str column concatenated from empty frames), silently, seen with pyarrow 26
        arrow = pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False).combine_chunks()
        buffer = pa.BufferOutputStream()
        pacsv.write_csv(arrow, buffer, pacsv.WriteOptions(include_header=False))
    except pa.ArrowException:
        return None
    return buffer.getvalue().to_pybytes()


def _create_stage(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    """A temporary table with the given columns of ``table`` (same types), empty."""
    name = f"yidi_stage_{table.name}_{next(_stage_counter)}"
    column_list = ", ".join(_quote(conn, c) for c in columns)
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {name} AS SELECT {column_list} FROM {_quote(conn, table.name)} WHERE 1 = 0"
    )
    return name


def stage_frame(conn: Connection, table: Table, df: pd.DataFrame) -> str:
    """Load ``df`` (columns of ``table``) into a new temporary table and return its name; caller drops it."""
    columns = list(df.columns)
    stage = _create_stage(conn, table, columns)
    dialect = conn.dialect.name
    column_list = ", ".join(_quote(conn, c) for c in columns)
    raw = conn.connection.driver_connection
    if dialect == "postgresql":
        with raw.cursor() as cursor, driver_errors(conn, f"COPY {stage}"):
            _copy_into(cursor, stage, column_list, table, df)
    else:
        _sqlite_insert(raw, f"INSERT INTO {stage} ({column_list}) VALUES ", f"({', '.join('?' for _ in columns)})", "",
                       _frame_values(table, df, dialect)[1], len(df))
    return stage


def upsert_returning_ids(
    conn: Connection,
    table: Table,
    df: pd.DataFrame,
    key_columns: Sequence[str],
    update_columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Insert-or-update by ``key_columns`` and return ``key_columns + ['id']`` for every input row's key."""
    insert_rows(conn, table, df, on_conflict=key_columns, update_columns=update_columns)
    return ids_for_keys(conn, table, df[list(key_columns)])


def ids_for_keys(conn: Connection, table: Table, keys: pd.DataFrame) -> pd.DataFrame:
    """``keys`` plus the matching ``id`` column (rows without a match are dropped)."""
    if keys.empty:
        return keys.assign(id=pd.Series(dtype="int64"))
    key_columns = list(keys.columns)
    stage = stage_frame(conn, table, keys.drop_duplicates())
    on = " AND ".join(f"t.{_quote(conn, c)} = s.{_quote(conn, c)}" for c in key_columns)
    select = ", ".join(f"t.{_quote(conn, c)}" for c in key_columns)
    result = conn.exec_driver_sql(
        f"SELECT {select}, t.id FROM {_quote(conn, table.name)} t JOIN {stage} s ON {on}"
    )
    frame = pd.DataFrame(result.fetchall(), columns=[*key_columns, "id"])
    conn.exec_driver_sql(f"DROP TABLE {stage}")
    return frame


def reserve_ids(conn: Connection, table: Table, n: int) -> np.ndarray:
    """``n`` fresh primary keys of ``table`` (ascending), for rows the caller inserts with explicit ids.

    PostgreSQL draws them from the id column's sequence (safe beside concurrent writers). SQLite: max(id) + 1 … + n,
    safe because the caller's transaction already holds the write lock (it wrote, or called ``take_write_lock``).
    Knowing ids before the insert saves reading them back, and lets numbers derived from them (our order numbers)
    be written in the same insert.
    """
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    name = _quote(conn, table.name)
    if conn.dialect.name == "postgresql":
        result = conn.exec_driver_sql(
            f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, %(n)s)", {"n": n}
        )
        return np.sort(np.array([row[0] for row in result.fetchall()], dtype=np.int64))
    top = conn.exec_driver_sql(f"SELECT max(id) FROM {name}").scalar() or 0
    return np.arange(top + 1, top + n + 1, dtype=np.int64)


def result_frame(result) -> pd.DataFrame:
    """A result's rows as a DataFrame built column by column, dtypes as pandas infers them (text as its string
    dtype). For large internal reads of keys, ids and hashes; ``read_frame`` is the reader for rows people's code
    inspects value by value."""
    keys = list(result.keys())
    rows = result.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in keys]
    return pd.DataFrame({key: list(values) for key, values in zip(keys, columns, strict=True)}, columns=keys)


def columns_frame(conn: Connection, statement: Executable) -> pd.DataFrame:
    """A large internal read as a DataFrame, the driver's values as they come (no SQLAlchemy type processing: read
    times as text on SQLite and parse the column), built by pandas from the rows in one call. For reads of
    hundreds of thousands of rows where per-value conversion would dominate."""
    result = conn.execute(statement)
    keys = list(result.keys())
    rows = result.cursor.fetchall()
    result.close()
    if not rows:
        return pd.DataFrame(columns=keys)
    return pd.DataFrame.from_records(rows, columns=keys, coerce_float=False)


def fetch_columns(conn: Connection, statement: Executable | str, params: dict | None = None,
                  chunk: int = 100_000) -> dict[str, np.ndarray]:
    """A large internal read as one object array per column, the driver's values as they come (no SQLAlchemy type
    processing: times are text on SQLite), fetched ``chunk`` rows at a time with the collector paused
    (``gc_paused``) and turned into columns chunk by chunk, so millions of rows never sit as row tuples at once.
    The caller converts each column once (``astype``, ``text_times``)."""
    if isinstance(statement, str):
        statement = text(statement)
    with gc_paused():
        result = conn.execute(statement, params or {})
        keys = list(result.keys())
        parts: list[list[np.ndarray]] = [[] for _ in keys]
        cursor = result.cursor
        while rows := cursor.fetchmany(chunk):
            for part, values in zip(parts, zip(*rows, strict=True), strict=True):
                column = np.empty(len(values), dtype=object)
                column[:] = values
                part.append(column)
        result.close()
    return {key: np.concatenate(part) if part else np.empty(0, dtype=object)
            for key, part in zip(keys, parts, strict=True)}  # fmt: skip


def text_times(values: np.ndarray) -> np.ndarray:
    """UTC times as SQLite keeps them (``2026-11-01 08:00:00.000000``, naive UTC; None for NULL) as
    ``datetime64[us]``, parsed by numpy in one call; anything numpy cannot read goes through pandas' ISO parser."""
    try:
        return values.astype("datetime64[us]")
    except ValueError:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601").tz_localize(None)
        return parsed.to_numpy(dtype="datetime64[us]")


def read_frame(conn: Connection, statement: Executable | str, params: dict | None = None) -> pd.DataFrame:
    """Run a query and return a DataFrame (typed values: aware datetimes, dates, ints).

    Text columns are plain Python strings with None for NULL (object dtype), not pandas' inferred string dtype, whose
    missing value is NaN: a NaN is truthy, so ``if row["note"]:`` or ``json.loads(row["details"])`` would take a
    NULL for a value. Other columns are inferred as pandas does. Built column by column, not from Row objects.
    """
    if isinstance(statement, str):
        statement = text(statement)
    result = conn.execute(statement, params or {})
    columns = list(result.keys())
    rows = result.fetchall()
    if not rows:
        return pd.DataFrame(columns=columns)
    series = []
    for values in zip(*rows, strict=True):
        column = np.empty(len(values), dtype=object)
        column[:] = values
        text_only = pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")
        series.append(pd.Series(column, dtype=object) if text_only else pd.Series(list(values)))
    frame = pd.concat(series, axis=1, ignore_index=True)
    frame.columns = columns
    return frame


def frame_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts, built column by column (much faster than ``to_dict("records")`` with Arrow strings)."""
    columns = list(frame.columns)
    return [dict(zip(columns, values, strict=True))
            for values in zip(*(frame[c].tolist() for c in columns), strict=True)]  # fmt: skip


def utc_now() -> datetime:
    return datetime.now(UTC)


IN_LIST_SIZE = 900  # values per IN (...) list: within every database's bind-parameter limit (SQLite: 999)


def chunked(values: Sequence, size: int = IN_LIST_SIZE) -> Iterator[list]:
    """``values`` in lists of at most ``size`` (IN lists, batches of outside calls)."""
    values = list(values) if not isinstance(values, list | tuple | np.ndarray | pd.Index) else values
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def json_text(value) -> str | None:
    """A value for a JSON text column: one serialisation everywhere (sorted keys, Chinese kept readable, dates and
    decimals as text), so equal content gives equal text. None stays NULL; text is taken as already JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


_temp_counter = itertools.count()


def temp_key_table(conn: Connection, values, kind: str = "text") -> str:
    """A temporary one-column table ``k`` (primary key) holding the distinct non-null ``values``, ``kind`` "text"
    or "int": joins and ``IN (SELECT k FROM …)`` of any size, without bind-parameter limits. It lives in the
    caller's session; drop it with ``drop_temp_tables`` when done."""
    name = f"yidi_keys_{next(_temp_counter)}"
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} (k {'BIGINT' if kind == 'int' else 'TEXT'} PRIMARY KEY)")
    distinct = pd.unique(pd.Series(list(values), dtype=object).dropna())
    rows = [(int(v),) if kind == "int" else (str(v),) for v in distinct]
    if rows:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        conn.exec_driver_sql(f"INSERT INTO {name} (k) VALUES ({mark})", rows)
    return name


def drop_temp_tables(conn: Connection, *names: str) -> None:
    for name in names:
        conn.exec_driver_sql(f"DROP TABLE {name}")


def read_in(conn: Connection, make_stmt, ids: Sequence) -> pd.DataFrame:
    """``make_stmt(ids)`` where the statement filters with ``column.in_(ids)``: a short list inline, a long one
    through a temporary key table (one query, any size, no bind-parameter limits)."""
    values = list(dict.fromkeys(ids))
    if len(values) <= IN_LIST_SIZE:
        return result_frame(conn.execute(make_stmt(values)))
    numeric = all(isinstance(v, int | np.integer) for v in values)
    name = temp_key_table(conn, values, "int" if numeric else "text")
    try:
        return result_frame(conn.execute(make_stmt(select(sa_table(name, sa_column("k")).c.k))))
    finally:
        drop_temp_tables(conn, name)

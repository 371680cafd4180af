"""How the SQL repositories send statements within one transaction.

Writes whose results are only needed after commit (inserts, the conditional stock UPDATE,
a read for the response) are held back and sent at commit, in the order the repositories
issued them, so that a transaction holds its locks for as short a time as it can:

- On MySQL/MariaDB a round trip is most of a statement's cost: what is held goes with the
  COMMIT as one multi-statement. A purchase is then a single round trip, and the stock
  row's lock is held only while the server runs the few statements after its UPDATE, never
  across a round trip to the client.
- On SQLite a statement costs no round trip, but the database has one writer at a time:
  the held statements run one after the other at commit, after `before_first_statement`
  (the unit of work's writer lock) and SQLite's BEGIN IMMEDIATE. The write lock is thus
  held while SQLite runs them and the COMMIT, not while the use case builds them. A
  transaction that is nothing but held statements commits with the writers queued with it,
  one fsync for all (group_commit.py).

What a held statement yields (a new row's id, a value a conditional write reports) is a
Ref: the value is filled in when it has run. On MySQL it comes from that statement's OK
packet, whose insert id is the new row's id, or the value the write passed through
`reported()` (LAST_INSERT_ID(expr)); a variable keeps it only where a later statement of the
batch uses it. A committing batch that ends with its conditional write is ended by the
server either way: `CALL stockade_commit_if_changed(ROW_COUNT())` commits or rolls back,
and the session, which sees the write's row count in its OK packet, raises ConditionFailed
when no row changed. The row lock is held for the COMMIT only, and never waits for this
client. A conditional write that more statements follow makes the statement after it fail
(a guard that raises "subquery returns more than 1 row"), so the server stops before
COMMIT; the session then rolls back and raises ConditionFailed. On SQLite the UPDATE's row
count (or its RETURNING row) decides, and ConditionFailed is raised at once.
Any statement run at once (a read whose answer is needed now) sends what is held first,
so statements always reach the database in the order the repositories issued them.

Units of work of one process that commit at the same time commit as a group
(group_commit.py). On MySQL the leader sends every writer's batch in one multi-statement,
each after a savepoint of its own, with one COMMIT; a conditional write that ends a
writer's batch is followed by `CALL stockade_keep_if_changed(ROW_COUNT())`, which undoes
that writer alone when no row changed. When every writer of the group ends with a write
its repository marked combinable (Combine: taking or reserving units of a product), the
writers that share such a write commit it as one statement for their total, after all of
their rows; if it changes nothing, the group is rolled back and sent again the first way
(see _send_group).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs
import pymysql
import sqlalchemy as sa
from pymysql.constants import SERVER_STATUS
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from stockade.adapters.off_the_loop import off_the_loop
from stockade.adapters.sql.engine import MYSQL_DUPLICATE, is_duplicate_key, is_transient
from stockade.adapters.sql.group_commit import GroupCommit
from stockade.adapters.sql.mysql_results import results
from stockade.application.ports import ConditionFailed, Ref, TransientStorageError, resolved

#: Fails ("subquery returns more than 1 row") exactly when the statement before it did not
#: change one row: the server then stops the batch before its COMMIT.
_GUARD = "SELECT 1 UNION ALL SELECT 1 FROM DUAL WHERE ROW_COUNT() <> 1"
_GUARD_FAILED = 1242  # ER_SUBQUERY_NO_1_ROW
#: Ends a committing batch whose last statement is a conditional write: commits when it
#: changed one row, rolls back otherwise (migration 0007).
_SETTLE = "CALL stockade_commit_if_changed(ROW_COUNT())"
#: A writer of a group commit follows this savepoint; its conditional write is followed by
#: _KEEP, which rolls back to the savepoint when it changed no row (migration 0008), and a
#: writer whose statement failed is undone by _UNDO before the group goes on. The next
#: writer's SAVEPOINT, of the same name, replaces it (MySQL and MariaDB both do so), and the
#: COMMIT ends the last: no RELEASE, one statement fewer per writer.
_SAVEPOINT = "SAVEPOINT stockade_writer"
_KEEP = "CALL stockade_keep_if_changed(ROW_COUNT())"
#: After a conditional write: stops the batch (an error) unless it changed one row.
_GUARD_ASSIGNMENT = f"@stockade_guard = ({_GUARD})"
_STOP_UNLESS_CHANGED = f"SET {_GUARD_ASSIGNMENT}"
_UNDO = "ROLLBACK TO SAVEPOINT stockade_writer"
#: Error codes from here on are the client's (a lost connection), not a statement's.
_CLIENT_ERRORS = 2000


class Json:
    """A parameter stored as JSON text; Refs inside it are filled in by the server."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data


_RETURNING: dict[tuple[int, str], tuple[sa.Update, sa.Update]] = {}


def _returning(stmt: sa.Update, column: sa.Column) -> sa.Update:
    """`stmt ... RETURNING column`, built once (a prebuilt statement skips SQLAlchemy's compile)."""
    key = (id(stmt), column.name)
    found = _RETURNING.get(key)
    if found is None or found[0] is not stmt:
        found = _RETURNING[key] = (stmt, stmt.returning(column))
    return found[1]


_RENDERED: dict[tuple[int, tuple[str, ...]], tuple[sa.Executable, str, list[tuple[str, str]]]] = {}
#: A bind in the pyformat text PyMySQL's dialect compiles to.
_BIND = re.compile(r"%\((\w+)\)s")


class reported(FunctionElement):  # noqa: N801 - an SQL function, named as SQLAlchemy's are
    """An integer a conditional write stores, reported back to the client too: the column's
    value after the write, without a read. On MySQL `LAST_INSERT_ID(value)`, which the
    write's OK packet carries; elsewhere `value` (SQLite reads it with RETURNING)."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(reported)
def _reported_plainly(element: reported, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(reported, "mysql")
@compiles(reported, "mariadb")
def _reported_as_insert_id(element: reported, compiler: Any, **kw: Any) -> str:
    return f"LAST_INSERT_ID({compiler.process(element.clauses, **kw)})"


def _run_each(deferred: list[Statements], conn: Connection) -> None:
    for execute in deferred:
        execute(conn)


def _escape(value: Any) -> str:
    """`value` as an SQL literal, as PyMySQL's `Connection.escape` writes it on a connection
    with backslash escapes (a batch's connection is put in that mode: _batch_connection); no
    connection needed, so a statement is rendered before its unit of work holds one."""
    if isinstance(value, str):  # str enums too: their value, as the driver writes them
        return _text(value)
    if isinstance(value, bytes | bytearray):
        return f"X'{value.hex()}'"
    if type(value) in (tuple, list, set, frozenset):
        return "(" + ",".join(_escape(item) for item in value) + ")"
    return pymysql.converters.escape_item(value, "utf8mb4")


def _text(value: str) -> str:
    return f"'{pymysql.converters.escape_string(value)}'"


# Remembered: a write's `now` goes into several rows, and isoformat is slow. Values are naive
# UTC (to_db), so equal ones are written alike (see _MOMENTS_KEPT in repositories.py).
@functools.lru_cache(maxsize=1024)
def _naive_datetime(value: datetime) -> str:
    return f"'{value.isoformat(' ')}'" if value.tzinfo is None else _escape(value)


#: How each type of a hot-path statement's values is written as an SQL literal, without the
#: driver's general dispatch; any other type goes through _escape.
_LITERALS: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,
    Decimal: lambda value: format(value, "f"),
    str: _text,
    datetime: _naive_datetime,
    type(None): lambda value: "NULL",
}


def _literal(value: Any) -> str:
    """`value` as an SQL literal (_escape)."""
    write = _LITERALS.get(type(value))
    return write(value) if write is not None else _escape(value)


#: JSON text as a Json parameter is stored: json.dumps(data, default=str), with one encoder
#: for all (json.dumps builds a new one for every call that passes `default`).
_json_encode = json.JSONEncoder(default=str).encode


def _json_text(data: Any) -> str:
    return _json_encode(resolved(data))


def _json_literal(text: str) -> str:
    """JSON text from _json_encode as an SQL literal, as _escape writes it. That text is
    printable ASCII (non-ASCII and control characters are escaped as JSON), so of what
    escape_string escapes only a backslash and both quotes can occur in it."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"') + "'"


#: What _json_template looks into: a Ref, or a dict that may hold one.
_NESTED = frozenset({Ref, dict})


def _json_template(value: Any, at: str, refs: list[tuple[str, Ref]]) -> Any:
    """`value` (a Json parameter's data) with each Ref that is still empty replaced by 0, and
    appended to `refs` with its JSON path (from `at`), for the server to fill in."""
    if type(value) is Ref:
        if value.value is not None:
            return value.value
        refs.append((at, value))
        return 0
    if type(value) is dict:
        # a leaf's path is built only when it is a Ref: most are plain values
        return {k: _json_template(v, f'{at}."{k}"', refs) if type(v) in _NESTED else v for k, v in value.items()}
    return value


#: A SQLite writer's statements: each run by calling it with the connection to run on.
Statements = Callable[[Connection], None]


@attrs.frozen
class Combine:
    """How the writers of one group commit that end with the same conditional write of one
    row (the same statement, every parameter equal but two) may commit it as ONE statement:
    `summed` is their parameters added up (the write must then change the row for all of
    them together, e.g. a stock that covers their total), and `latest` the last writer's
    value (a timestamp). The value the write reports is taken to fall by each writer's
    `summed`: each writer is told the value as the writers before it in the group left it.

    The combined writes run after every other statement of the group, so a write may be
    combined only if the writers that end with it change nothing else in its table before
    it (a purchase and a hold insert rows elsewhere, and grow a customer's claim): moved to
    the end, it then sees the rows as it would have, and the writes that share one commute
    whenever their total fits."""

    summed: str
    latest: str


@attrs.frozen
class _Combinable:
    """A held conditional write that writers of a group may commit as one (Combine), with
    the statement and parameters to render that one from."""

    how: Combine
    stmt: sa.Executable
    params: Mapping[str, Any]

    @property
    def amount(self) -> int:
        """This writer's share of the summed parameter."""
        return self.params[self.how.summed]

    def key(self) -> tuple:
        """Writers whose ending writes have equal keys may commit them as one statement."""
        fixed = (self.how.summed, self.how.latest)
        return (id(self.stmt), *sorted((k, v) for k, v in self.params.items() if k not in fixed))

    def for_total(self, total: int) -> Mapping[str, Any]:
        """The parameters of the one statement for writers whose amounts add up to `total`
        (this writer's `latest`: it is the last of them)."""
        return {**self.params, self.how.summed: total}


@attrs.define
class _Held:
    sql: str
    #: raised instead of a duplicate-key error
    on_duplicate: type[Exception] | None = None
    #: a write that must change exactly one row
    conditional: bool = False
    #: filled with the insert id of the statement's OK packet (a new row's id, a reported value)
    reports: Ref | None = None
    #: the guard after a conditional write that more statements follow (see _seal_guard),
    #: with the variables it sets to the write's reported value
    is_guard: bool = False
    captures: list[str] = attrs.Factory(list)
    #: a conditional write that writers of a group may commit as one (see Combine)
    combinable: _Combinable | None = None

    def text(self) -> str:
        if not self.is_guard:
            return self.sql
        return "SET " + ", ".join([*self.captures, _GUARD_ASSIGNMENT])


class _Batch:
    """What a MySQL unit of work held, taken out of its session to be sent: by itself, or by
    the leader of the group it commits with."""

    __slots__ = ("held", "selected", "select_at", "changed", "products")

    def __init__(self, held: list[_Held], selected: dict[str, Ref], products: set[int]) -> None:
        self.held = held
        #: the products it changes, in ascending order: the order of the rows it locks
        self.products = sorted(products)
        #: the server variables its last SELECT reads back, and their Refs
        self.selected = selected
        #: the index of that SELECT among its statements, once they are written out
        self.select_at = -1
        #: the row count of its conditional write that ends it, once that has run
        self.changed: int | None = None

    @property
    def ends_conditional(self) -> bool:
        return self.held[-1].conditional

    def statements(self, ending: str | None) -> list[str]:
        """Its statements: `ending` follows a conditional write that ends it, and the SELECT of
        its reads for after commit comes last."""
        texts = [h.text() for h in self.held]
        if ending is not None and self.ends_conditional:
            texts.append(ending)
        if self.selected:
            self.select_at = len(texts)
            texts.append("SELECT " + ", ".join(self.selected))
        return texts

    def read(self, index: int, affected: int, insert_id: int, row: tuple | None) -> None:
        """Take what its statement `index` returned (mysql_results.results)."""
        if index < len(self.held):
            done = self.held[index]
            if done.reports is not None:
                done.reports.value = insert_id
            if done.conditional:
                self.changed = affected
        elif index == self.select_at:
            assert row is not None, "a SELECT of server variables returns one row"
            for ref, value in zip(self.selected.values(), row, strict=True):
                ref.value = value

    def failed(self, index: int) -> _Held | None:
        """The held statement at `index`, None for one of the statements that end it."""
        return self.held[index] if index < len(self.held) else None

    def lost(self) -> bool:
        """Its conditional write that ends it changed no row (run, and undone by the server)."""
        return self.ends_conditional and self.changed != 1

    @property
    def ending(self) -> _Combinable | None:
        """Its ending write, when that may be combined with other writers' (Combine) and the
        batch reads nothing back. A conditional write before that one is followed by its
        guard, which stops the batch at once when it changes nothing: that writer alone is
        undone."""
        return None if self.selected else self.held[-1].combinable

    def took(self, reported: int, amount: int) -> int:
        """Its ending write, of `amount`, was combined and committed, leaving `reported`
        after this writer: the value as the writers before it left it, which this returns."""
        self.changed = 1
        reports = self.held[-1].reports
        if reports is not None:
            reports.value = reported
        return reported + amount


class Session:
    """The statements of one unit of work on one connection, taken from the pool only when a
    statement is to reach the database: a writer that commits in a group led by another never
    takes one (the leader sends its statements), so however many writers queue, a process's
    group commits hold one connection, not one each."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        dialect: sa.Dialect,
        product_changed: Callable[[int], None],
        *,
        before_first_statement: Callable[[], None] | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        self._connect = connect
        self._conn: Connection | None = None
        self.dialect = dialect
        #: the writers this one commits with: on SQLite its Statements, on MySQL its _Batch
        self._group = group
        self._report_product = product_changed
        #: the products this unit of work changes
        self._products: set[int] = set()
        self.batching = dialect.name in ("mysql", "mariadb")
        self._before_first_statement = before_first_statement
        #: MySQL: the statements held, rendered
        self._held: list[_Held] = []
        #: Refs of held statements, by the server variable that holds their value
        self._values: dict[str, Ref] = {}
        #: The variables the batch's last SELECT reads back (reads for after commit)
        self._selected: dict[str, Ref] = {}
        #: SQLite: the statements held, each run by calling it with the connection to run on
        self._deferred: list[Statements] = []

    def connection(self) -> Connection:
        """The unit of work's connection, taken from the pool on first use."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _in_transaction(self) -> bool:
        """Whether a statement was run at once (SQLAlchemy began the transaction)."""
        return self._conn is not None and self._conn.in_transaction()

    def product_changed(self, product_id: int) -> None:
        """A repository's statement changes this product (reported to the unit of work)."""
        self._products.add(product_id)
        self._report_product(product_id)

    # ---------------------------------------------------------------- at once

    def run(self, stmt: sa.Executable, params: Mapping[str, Any] | None = None) -> CursorResult:
        """Run a statement now (after what is held) and return its result."""
        self.flush()
        self._starting()
        return self.connection().execute(stmt, resolved(dict(params or {})))

    # ---------------------------------------------------------------- held where it pays

    def insert(
        self, stmt: sa.Insert, params: Mapping[str, Any], *, on_duplicate: type[Exception] | None = None
    ) -> None:
        """Insert a row whose id nobody needs. A duplicate key raises `on_duplicate` (now,
        or when the batch runs)."""
        self._insert(stmt, params, on_duplicate)

    def insert_with_id(
        self, stmt: sa.Insert, params: Mapping[str, Any], *, on_duplicate: type[Exception] | None = None
    ) -> Ref:
        """Insert a row, as `insert` does; returns a Ref to its new id."""
        ref = self._insert(stmt, params, on_duplicate, with_id=True)
        assert ref is not None
        return ref

    def _insert(
        self, stmt: sa.Insert, params: Mapping[str, Any], on_duplicate: type[Exception] | None, *, with_id: bool = False
    ) -> Ref | None:
        ref = Ref() if with_id else None
        if self.batching:
            self._hold(stmt, params, on_duplicate=on_duplicate, reports=ref)
            return ref

        def execute(conn: Connection) -> None:
            try:
                result = conn.execute(stmt, self._bind(params))
            except sa.exc.IntegrityError as exc:
                if on_duplicate is not None and is_duplicate_key(exc):
                    raise on_duplicate() from exc
                raise
            if ref is not None:
                ref.value = result.inserted_primary_key[0]  # type: ignore[index]  # an insert has a key

        self._deferred.append(execute)
        return ref

    def must_change_one(
        self,
        stmt: sa.Update,
        params: Mapping[str, Any],
        *,
        reporting: sa.Column | None = None,
        combine: Combine | None = None,
    ) -> Ref:
        """A conditional write of one row that must change it, else the transaction is void
        (ConditionFailed when it runs, at commit or before a statement run at once). With
        `reporting`, a column the statement sets to `reported(...)`: the returned Ref gets
        its value after the write (RETURNING on SQLite, the OK packet on MySQL); without,
        the Ref stays empty. With `combine`, MySQL writers of one group commit that end
        with it may commit it as one statement (Combine, _send_group)."""
        ref = Ref()
        if not self.batching:

            def execute(conn: Connection) -> None:
                if reporting is None:
                    if conn.execute(stmt, self._bind(params)).rowcount != 1:
                        raise ConditionFailed()
                    return
                row = conn.execute(_returning(stmt, reporting), self._bind(params)).first()
                if row is None:
                    raise ConditionFailed()
                ref.value = row[0]

            self._deferred.append(execute)
            return ref
        combinable = None if combine is None else _Combinable(combine, stmt, dict(params))
        self._hold(stmt, params, conditional=True, reports=None if reporting is None else ref, combinable=combinable)
        if reporting is not None and f"{reporting.name}=LAST_INSERT_ID(" not in self._held[-1].sql:
            raise ValueError(f"the statement must set {reporting.name} to reported(...) to report it")
        return ref

    def read_later(self, stmt: sa.Select, params: Mapping[str, Any]) -> Ref:
        """A one-value read whose answer is needed only after commit: a Ref to it."""
        ref = Ref()
        if self.batching:
            self._seal_guard()
            var = self._variable(ref)
            self._selected[var] = ref
            self._held.append(_Held(f"SET {var} = ({self._render(stmt, params)})"))
            return ref

        def execute(conn: Connection) -> None:
            ref.value = conn.execute(stmt, self._bind(params)).scalar()

        self._deferred.append(execute)
        return ref

    # ---------------------------------------------------------------- ending

    def commit(self) -> None:
        """Make the transaction durable. When nothing was run at once before it, it commits
        with the group of writers it queues with (group_commit.py); on MySQL, what is held
        goes with the COMMIT in one round trip, its group's with it."""
        if self._held and not self._in_transaction():
            batch = self._take_batch()
            if self._group is None:
                self._send(batch, commit=True)
            else:
                self._group.commit(batch, self._lead_batches)
            return
        if self._group is not None and self._deferred and not self._in_transaction():
            deferred, self._deferred = self._deferred, []
            self._group.commit(lambda conn: _run_each(deferred, conn), self._lead)
            return
        self.flush()
        if self._conn is None:  # nothing reached the database: nothing to commit
            return
        if self.batching:
            self.connection().commit()
        else:  # SQLite: the COMMIT's fsync blocks in C
            off_the_loop(self.connection().commit)

    def flush(self) -> None:
        """Send what is held (no commit)."""
        if self._held:
            self._send(self._take_batch(), commit=False)
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            self._starting()
            _run_each(deferred, self.connection())

    def _lead(self, take_group: Callable[[], list[Statements]]) -> list[BaseException | None]:
        """Run a group of writers on this connection, each within a savepoint, in one
        transaction, and commit it: each writer's error, or None (group_commit.py)."""
        self._starting()  # the writer lock, before the group is taken: who waits joins
        conn = self.connection()
        group = take_group()
        errors: list[BaseException | None] = []
        try:
            for statements in group:
                conn.exec_driver_sql("SAVEPOINT stockade_writer")
                try:
                    statements(conn)
                except Exception as exc:  # noqa: BLE001 - that writer's own outcome
                    conn.exec_driver_sql("ROLLBACK TO stockade_writer")
                    errors.append(exc)
                else:
                    errors.append(None)
                conn.exec_driver_sql("RELEASE stockade_writer")
            off_the_loop(conn.commit)  # the COMMIT's fsync blocks in C
        except Exception as exc:  # noqa: BLE001 - nothing of the group committed: all fail with it
            conn.rollback()
            return [exc] * len(group)
        return errors

    def _lead_batches(self, take_group: Callable[[], list[_Batch]]) -> list[BaseException | None]:
        """MySQL: send a group of writers' batches on this connection, and commit them: each
        writer's error, or None (group_commit.py). A writer alone commits as it would without
        a group."""
        self._starting()  # the connection, before the group is taken: who queues meanwhile joins
        group = take_group()
        if len(group) > 1:
            # Writers that commit together may go in any order (none has been told its
            # outcome yet). In the order of the products they change, two groups of
            # different processes take product rows in the same order, so neither waits
            # for the other's rows in a cycle (a deadlock fails a whole group).
            order = sorted(range(len(group)), key=lambda at: group[at].products)
            errors: list[BaseException | None] = [None] * len(group)
            for at, error in zip(order, self._send_group([group[at] for at in order]), strict=True):
                errors[at] = error
            return errors
        try:
            self._send(group[0], commit=True)
        except Exception as exc:  # noqa: BLE001 - the writer's own outcome
            return [exc]
        return [None]

    def _starting(self) -> None:
        """Before the first statement that reaches the database: the connection first, so that
        no writer waits for the pool while it holds the writer lock (every writer of the host
        would wait with it), then the writer lock."""
        self.connection()
        if self._before_first_statement is not None:
            before, self._before_first_statement = self._before_first_statement, None
            before()

    # ---------------------------------------------------------------- internals

    def _bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {k: _json_text(v.data) if isinstance(v, Json) else resolved(v) for k, v in params.items()}

    def _hold(self, stmt: sa.Executable, params: Mapping[str, Any], **held: Any) -> None:
        self._seal_guard()
        self._held.append(_Held(self._render(stmt, params), **held))

    def _seal_guard(self) -> None:
        """A conditional write that more statements follow gets its guard, which stops the
        batch unless the write changed one row (one that ends the batch needs none: see _send)."""
        if self._held and self._held[-1].conditional:
            self._held.append(_Held("", is_guard=True))

    def _render(self, stmt: sa.Executable, params: Mapping[str, Any]) -> str:
        """`stmt` for MySQL with its parameters inlined (escaped as the driver would), Refs as
        the server variables that will hold them."""
        head, binds = self._rendered(stmt, tuple(params))
        parts = [head]
        for name, text in binds:
            value = params[name]
            write = _LITERALS.get(type(value))
            parts.append(write(value) if write is not None else self._placeholder(value))
            parts.append(text)
        return "".join(parts)

    def _placeholder(self, value: Any) -> str:
        """A value of a held statement that is not a plain literal: a Ref (its value, or the
        server variable that will hold it), a Json (its text, Refs set in by JSON_SET)."""
        kind = type(value)
        if kind is Ref:
            return _literal(value.value) if value.value is not None else self._var(value)
        if kind is Json:
            refs: list[tuple[str, Ref]] = []
            template = _json_encode(_json_template(value.data, "$", refs))
            sets = "".join(f", '{path}', {self._var(ref)}" for path, ref in refs)
            return f"JSON_SET({_json_literal(template)}{sets})" if refs else _json_literal(template)
        return _escape(value)

    def _rendered(self, stmt: sa.Executable, keys: tuple[str, ...]) -> tuple[str, list[tuple[str, str]]]:
        """The statement's MySQL text before its first parameter, and for each parameter in
        order: its name and the text after it. The statement's own literals are written into
        that text. Compiled once per statement and parameter names (held statements are the
        repositories' module-level prebuilt ones)."""
        cache_key = (id(stmt), keys)
        found = _RENDERED.get(cache_key)
        if found is None or found[0] is not stmt:
            compiled = stmt.compile(dialect=self.dialect, column_keys=list(keys))  # type: ignore[attr-defined]
            pieces = [
                text.replace("%%", "%") if i % 2 == 0 else text for i, text in enumerate(_BIND.split(compiled.string))
            ]
            head, binds = pieces[0], []
            for name, text in zip(pieces[1::2], pieces[2::2], strict=True):
                if name in keys:
                    binds.append((name, text))
                elif binds:  # a literal of the statement: part of the text around it
                    binds[-1] = (binds[-1][0], binds[-1][1] + _literal(compiled.params[name]) + text)
                else:
                    head += _literal(compiled.params[name]) + text
            found = _RENDERED[cache_key] = (stmt, head, binds)
        return found[1], found[2]

    def _variable(self, ref: Ref) -> str:
        """A new server variable for `ref`."""
        var = f"@stockade_{len(self._values) + 1}"
        self._values[var] = ref
        return var

    def _var(self, ref: Ref) -> str:
        """The server variable that holds `ref` for a later statement. A statement's reported
        value gets one when first used, set right after that statement, where LAST_INSERT_ID()
        is still its value (in the guard's SET after a conditional write, which must come
        right after the write to see its row count)."""
        for var, known in self._values.items():
            if known is ref:
                return var
        for at, held in enumerate(self._held):
            if held.reports is ref:
                var = self._variable(ref)
                capture = f"{var} = LAST_INSERT_ID()"
                if held.conditional:
                    self._held[at + 1].captures.append(capture)
                else:
                    self._held.insert(at + 1, _Held(f"SET {capture}"))
                return var
        raise ValueError("a Ref in a held statement must come from a statement held before it")

    def _take_batch(self) -> _Batch:
        batch = _Batch(self._held, self._selected, self._products)
        self._held, self._selected, self._values = [], {}, {}
        return batch

    def _send(self, batch: _Batch, *, commit: bool) -> None:
        """Send one unit of work's batch, with its COMMIT when `commit`."""
        self._starting()
        # A committing batch that ends with its conditional write is ended by the server
        # whether the write matched or not: no ROLLBACK waits for this client while the row
        # stays locked (an UPDATE that waited for the lock and then matched nothing keeps it
        # until the transaction ends).
        statements = batch.statements(_SETTLE if commit else None)
        if commit and not batch.ends_conditional:
            statements.append("COMMIT")
        # A transaction SQLAlchemy does not know of: the batch opens it (and, with `commit`,
        # ends it), so on an error this session must end it itself.
        unseen = commit or not self._in_transaction()
        dbapi = self._batch_connection()
        failure = self._execute(dbapi, statements, batch.read)
        if failure is not None:
            index, exc = failure
            if unseen:
                self._rollback_unseen(dbapi)
            raise self._failure(exc, batch.failed(index)) from exc
        if batch.lost():
            if unseen and not commit:  # a committing batch was rolled back by the server
                self._rollback_unseen(dbapi)
            raise ConditionFailed()

    def _send_group(self, batches: list[_Batch]) -> list[BaseException | None]:
        """Send the batches of a group of writers in one transaction, each after a savepoint
        of its own (_SAVEPOINT), with one COMMIT: one round trip, and one more after each
        writer whose statement failed (it is undone, and the writers after it are sent
        again). Each writer's error, or None.

        When every writer ends with a write that may be combined (Combine), those writes go
        last, one statement for the writers that share it, so that the group locks each row
        it changes for its last statements only, and the server runs one write where it ran
        one per writer. When a combined write changes nothing (together they ask for more
        than is there, or one of them read a price that changed), the group is rolled back
        and sent again in the layout below, where each writer's write decides for it alone.
        Otherwise a writer's conditional write that changed nothing is undone by the server
        (_KEEP) without stopping the others."""
        if len(batches) > 1 and all(batch.ending is not None for batch in batches):
            errors = self._send_writers(batches, combined=True)
            if errors is not None:
                return errors
        errors = self._send_writers(batches, combined=False)
        assert errors is not None, "only a combined write can lose"
        return errors

    def _send_writers(self, batches: list[_Batch], *, combined: bool) -> list[BaseException | None] | None:
        """_send_group in one of its layouts: each writer's error, or None when a combined
        write changed nothing (the group was rolled back)."""
        errors: list[BaseException | None] = [None] * len(batches)
        dbapi = self._batch_connection()
        start, undo = 0, False
        while True:
            statements = [_UNDO] if undo else []
            #: for each statement, the writer and its index among that writer's statements
            owners: list[tuple[int, int] | None] = [None] * len(statements)
            for at in range(start, len(batches)):
                texts = batches[at].statements(None)[:-1] if combined else batches[at].statements(_KEEP)
                statements.append(_SAVEPOINT)
                statements.extend(texts)
                owners += [None, *((at, i) for i in range(len(texts)))]
            #: each combined write, its writers, and what it reported (row count, reported value)
            takes: list[tuple[str, list[tuple[_Batch, _Combinable]], list[int]]] = (
                [(sql, members, []) for sql, members in self._combined(batches, errors)] if combined else []
            )
            #: what each combined write reported, by the index of its statement
            taken_at: dict[int, list[int]] = {}
            for number, (sql, _, reported) in enumerate(takes):
                taken_at[len(statements)] = reported
                # The last one commits or rolls back; one before it stops the batch unless it changed its row.
                statements += [sql, _SETTLE if number == len(takes) - 1 else _STOP_UNLESS_CHANGED]
                owners += [None, None]
            if not takes:
                statements.append("COMMIT")
                owners.append(None)

            def read(index: int, affected: int, insert_id: int, row: tuple | None) -> None:
                owner = owners[index]
                if owner is not None:
                    batches[owner[0]].read(owner[1], affected, insert_id, row)
                elif index in taken_at:
                    taken_at[index].extend((affected, insert_id))

            failure = self._execute(dbapi, statements, read)
            if failure is not None:
                index, exc = failure
                owner = owners[index]
                error = self._failure(exc, None if owner is None else batches[owner[0]].failed(owner[1]))
                error.__cause__ = exc
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
                if index - 1 in taken_at and code == _GUARD_FAILED:  # a combined write changed nothing
                    self._rollback_unseen(dbapi)
                    return None
                # A statement's error undoes that statement only: it is its writer's own, and
                # the group goes on without that writer. A transient one (deadlock, lock
                # wait timeout) may have rolled back the whole transaction, and a client's
                # leaves the connection's state unknown: every writer fails with it.
                statements_own = code is not None and code < _CLIENT_ERRORS
                if owner is not None and statements_own and not isinstance(error, TransientStorageError):
                    errors[owner[0]] = error
                    start, undo = owner[0] + 1, True
                    continue
                self._rollback_unseen(dbapi)
                return [error if mine is None else mine for mine in errors]
            if any(changed != 1 for _, _, (changed, _) in takes):  # the last one: it rolled the group back
                return None
            for _, members, (_, left) in takes:
                for batch, ending in reversed(members):
                    left = batch.took(left, ending.amount)
            for at, batch in enumerate(batches):
                if errors[at] is None and batch.lost():
                    errors[at] = ConditionFailed()
            return errors

    def _combined(
        self, batches: list[_Batch], errors: list[BaseException | None]
    ) -> list[tuple[str, list[tuple[_Batch, _Combinable]]]]:
        """The combined writes of the writers that have not failed, in the order of their
        first writer (the group's order: by product), each with its writers (and their
        ending writes) in group order."""
        shared: dict[tuple, list[tuple[_Batch, _Combinable]]] = {}
        for batch, error in zip(batches, errors, strict=True):
            ending = batch.ending
            if error is None and ending is not None:
                shared.setdefault(ending.key(), []).append((batch, ending))
        combined = []
        for members in shared.values():
            last = members[-1][1]
            total = sum(ending.amount for _, ending in members)
            combined.append((self._render(last.stmt, last.for_total(total)), members))
        return combined

    def _batch_connection(self) -> Any:
        """The DBAPI connection to send a batch on, in backslash-escapes mode: the batch's
        literals were escaped for it (_escape). A session whose sql_mode has
        NO_BACKSLASH_ESCAPES (the server's default, or a SET since; PyMySQL tracks it from
        every reply) leaves that mode first."""
        dbapi: Any = self.connection().connection.dbapi_connection  # PyMySQL's, on MySQL
        if dbapi.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
            with dbapi.cursor() as cursor:
                cursor.execute("SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')")
        return dbapi

    def _execute(
        self, dbapi: Any, statements: list[str], read: Callable[[int, int, int, tuple | None], None]
    ) -> tuple[int, pymysql.err.Error] | None:
        """Send `statements` as one multi-statement and `read` each one's result (its index,
        affected rows, insert id and first row). None when all of them ran; else the index
        of the one that failed and its error (the server stops there). Interrupted
        mid-protocol (a timeout, a cancelled greenlet), the connection's state, and whether
        a COMMIT ran, are unknown: it is never reused."""
        index = 0
        try:
            for affected, insert_id, row in results(dbapi, ";\n".join(statements)):
                read(index, affected, insert_id, row)
                index += 1
        except pymysql.err.Error as exc:
            return index, exc
        except BaseException:
            self.connection().invalidate()
            raise
        return None

    def _rollback_unseen(self, dbapi) -> None:
        try:
            dbapi.rollback()
        except pymysql.err.Error:
            self.connection().invalidate()  # broken: closing it makes the server roll back

    def _failure(self, exc: pymysql.err.Error, failed: _Held | None) -> BaseException:
        """What a unit of work raises for `exc`, the error of its statement `failed`."""
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code == _GUARD_FAILED and failed is not None and failed.is_guard:
            return ConditionFailed()
        if code == MYSQL_DUPLICATE and failed is not None and failed.on_duplicate is not None:
            return failed.on_duplicate()
        wrapped = sa.exc.DBAPIError.instance(failed.sql if failed else None, None, exc, pymysql.err.Error)
        if is_transient(wrapped):
            return TransientStorageError(str(exc))
        return wrapped

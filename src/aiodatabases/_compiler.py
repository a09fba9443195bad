"""Turn SQLAlchemy Core statements and raw ``:name`` SQL into driver SQL, once.

Compilation is the expensive part of running a query through SQLAlchemy: it walks the
statement, renders SQL and works out parameter order and type processing. A ``Compiler``
does that once per distinct statement shape and keeps the result (``CompiledQuery``) in a
bounded cache: raw strings are keyed by their text, Core statements by SQLAlchemy's cache
key, so a ``select()`` rebuilt on every call with different values reuses one entry. What a
call still does is bind its values into a positional argument list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Final

import sqlalchemy.exc
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement, operators, text
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.ddl import ExecutableDDLElement
from sqlalchemy.sql.dml import Insert, Update, ValuesBase
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, UnaryExpression
from sqlalchemy.sql.schema import Column, Table
from sqlalchemy.sql.selectable import Select, SelectBase, TextualSelect, _OffsetLimitParam

from ._records import ResultMeta, convert_rows
from .exceptions import InterfaceError, ProgrammingError

__all__ = ["CompiledQuery", "Compiler", "Kind", "Query"]

Query = ClauseElement | str
Processor = Callable[[Any], Any]


class Kind:
    """What a statement does, which decides what ``execute()`` returns."""

    SELECT: Final = 0
    INSERT: Final = 1
    UPDATE: Final = 2
    DELETE: Final = 3
    OTHER: Final = 4


#: The instance attributes of ``table.insert().values(...)``: any other call on the statement
#: sets one more (or memoizes one), and the statement leaves the plain-insert path.
_PLAIN_INSERT_ATTRIBUTES: Final = frozenset({"table", "_values"})
#: Heads the cache keys of plain inserts, so that they never equal one of SQLAlchemy's.
_PLAIN_INSERT: Final = object()
# What a plain select may have set on itself (see Compiler._plain_select): anything else (a
# join, GROUP BY, DISTINCT, a hint, execution options, FOR UPDATE ...) leaves another name.
_PLAIN_SELECT_ATTRIBUTES: Final = frozenset(
    {
        "_raw_columns",
        "_label_style",
        "_where_criteria",
        "_order_by_clauses",
        "_limit_clause",
        "_offset_clause",
        "_fetch_clause",
        "_fetch_clause_options",
    }
)
_PLAIN_SELECT: Final = object()
# Cached for a plain-select key whose literals SQLAlchemy binds in another order.
_NOT_PLAIN: Final = object()
# ``column <op> literal``: what such a comparison holds, and the operators taken.
_COMPARISON_ATTRIBUTES: Final = frozenset(
    {
        "_orig",
        "_propagate_attrs",
        "left",
        "right",
        "operator",
        "type",
        "negate",
        "_is_implicitly_boolean",
        "modifiers",
    }
)
_COMPARISONS: Final = frozenset(
    {operators.eq, operators.ne, operators.lt, operators.le, operators.gt, operators.ge}
)
# ``column.desc()`` / ``column.asc()`` in ORDER BY (``description`` is memoized: a label).
_ORDERING_ATTRIBUTES: Final = frozenset(
    {"operator", "modifier", "_propagate_attrs", "element", "type", "description"}
)
_ORDERINGS: Final = frozenset({operators.desc_op, operators.asc_op})
#: Where one positional value of a Core statement comes from: the parameter's key and name,
#: the index of the statement's literal that fills it (-1: none), whether a value is
#: required, and the compiled parameter (see ``_bind_plan()``).
_Source = tuple[str, str, int, bool, BindParameter[Any]]

_LEADING = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*\(*\s*(\w+)", re.DOTALL)
_WRITE_WORD = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE|UPSERT)\b", re.IGNORECASE)
_KINDS = {
    "select": Kind.SELECT,
    "values": Kind.SELECT,
    "table": Kind.SELECT,
    "show": Kind.SELECT,
    "insert": Kind.INSERT,
    "replace": Kind.INSERT,
    "update": Kind.UPDATE,
    "delete": Kind.DELETE,
}


def classify_sql(sql: str) -> tuple[int, bool]:
    """Return the kind of a raw SQL statement and whether it certainly only reads.

    The classification is conservative: a statement is read-only only when it starts with
    ``SELECT``/``VALUES`` (or ``WITH`` and names no writing verb anywhere).
    """
    match = _LEADING.match(sql)
    if match is None:
        return Kind.OTHER, False
    word = match.group(1).lower()
    if word == "with":
        found = _WRITE_WORD.search(sql)
        if found is None:
            return Kind.SELECT, True
        return _KINDS.get(found.group(1).lower(), Kind.OTHER), False
    kind = _KINDS.get(word, Kind.OTHER)
    return kind, kind == Kind.SELECT and word != "show"


class _DefaultContext:
    """The ``context`` a Python-side column default callable receives."""

    __slots__ = ("_params",)

    def __init__(self, params: dict[str, Any]) -> None:
        self._params = params

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        """Return the parameters of the row being written."""
        return self._params


class CompiledQuery:
    """One statement compiled for one dialect: SQL text, parameter order and result plan.

    Instances are cached and shared by every task that runs the same statement shape; they
    are never mutated after construction except for the ``meta`` memo and the ``slow`` count
    (how many quick runs on a worker thread SQLite still wants before trying the loop again).
    """

    __slots__ = (
        "bind_plan",
        "bind_processors",
        "bind_required",
        "bind_width",
        "compiled",
        "getter",
        "kind",
        "meta",
        "names",
        "prefetch",
        "readonly",
        "result_columns",
        "slow",
        "sql",
        "unique_names",
    )

    def __init__(
        self,
        sql: str,
        names: Sequence[str],
        kind: int,
        readonly: bool,
        compiled: SQLCompiler | None = None,
    ) -> None:
        self.sql = sql
        self.names: tuple[str, ...] = tuple(names)
        self.unique_names = frozenset(self.names)
        self.kind = kind
        self.readonly = readonly
        self.compiled = compiled
        self.meta: ResultMeta | None = None
        self.slow = 0
        self.bind_processors: tuple[tuple[int, Processor], ...] = ()
        # Where each positional value of a Core statement comes from (see _bind_plan()).
        self.bind_plan: tuple[_Source, ...] | None = None
        self.bind_required = False
        self.bind_width = 0
        self.prefetch: tuple[Any, ...] = ()
        self.result_columns: list[Any] | None = None
        self.getter: Callable[[Mapping[str, Any]], Any] | None = None
        if self.names:
            getter = itemgetter(*self.names)
            self.getter = getter if len(self.names) > 1 else (lambda row: (getter(row),))

    def args_for_text(self, values: Mapping[str, Any] | None) -> Sequence[Any]:
        """Bind ``values`` to the positional parameters of a raw SQL statement."""
        if not self.names:
            if values:
                self._check_extra(values)
            return ()
        if values is None:
            raise ProgrammingError(
                f"the query has parameters {_fmt(self.unique_names)} but no values were given"
            )
        if len(values) != len(self.unique_names):
            self._check_extra(values)
        try:
            getter = self.getter
            assert getter is not None  # set whenever names is non-empty
            args: Sequence[Any] = getter(values)
            return args
        except KeyError as exc:
            raise ProgrammingError(
                f"missing value for query parameter :{exc.args[0]}; "
                f"the query takes {_fmt(self.unique_names)}"
            ) from None

    def _check_extra(self, values: Mapping[str, Any]) -> None:
        extra = set(values) - self.unique_names
        if extra:
            takes = _fmt(self.unique_names) if self.unique_names else "no parameters"
            raise ProgrammingError(
                f"values name parameters the query does not have: {_fmt(extra)}; "
                f"the query takes {takes}"
            )


def _fmt(names: Iterable[str]) -> str:
    return ", ".join(f":{name}" for name in sorted(names))


class _LRU(dict[Any, Any]):
    """A dict that forgets its oldest entries beyond ``maxsize``."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def put(self, key: Any, value: Any) -> None:
        if len(self) >= self.maxsize:
            for old in list(self)[: max(1, self.maxsize // 8)]:
                del self[old]
        self[key] = value


class Compiler:
    """Compiles queries for one dialect and caches the results.

    Shared by all connections of a backend; it holds no per-call state, so tasks may share it.
    """

    def __init__(self, dialect: Dialect, cache_size: int = 1000) -> None:
        self.dialect = dialect
        self._text: _LRU = _LRU(cache_size)
        self._core: _LRU = _LRU(cache_size)
        self._meta: _LRU = _LRU(cache_size)

    def prepare(
        self, query: Query, values: Mapping[str, Any] | None
    ) -> tuple[CompiledQuery, str, Sequence[Any]]:
        """Return the compiled entry, the SQL and the positional arguments for one call."""
        if isinstance(query, str):
            entry = self.text(query)
            return entry, entry.sql, entry.args_for_text(values)
        entry, compiled, extracted, values = self.core(query, values)
        if entry.compiled is None:
            return entry, entry.sql, ()
        sql, args = self.core_args(entry, compiled, extracted, values)
        return entry, sql, args

    # -- raw SQL -------------------------------------------------------------------------

    def text(self, sql: str) -> CompiledQuery:
        """Return the compiled form of a raw SQL string with ``:name`` parameters."""
        entry: CompiledQuery | None = self._text.get(sql)
        if entry is None:
            entry = self._compile_text(sql)
            self._text.put(sql, entry)
        return entry

    def _compile_text(self, sql: str) -> CompiledQuery:
        kind, readonly = classify_sql(sql)
        if ":" not in sql and "%" not in sql:
            return CompiledQuery(sql, (), kind, readonly)
        compiled = text(sql).compile(dialect=self.dialect)
        names = compiled.positiontup or ()
        return CompiledQuery(compiled.string, names, kind, readonly)

    # -- SQLAlchemy Core -----------------------------------------------------------------

    def core(
        self,
        stmt: ClauseElement,
        values: Mapping[str, Any] | None,
        many: bool = False,
    ) -> tuple[CompiledQuery, Any, Any, Mapping[str, Any] | None]:
        """Compile a Core statement; return the entry, its compiler and extracted binds.

        ``values`` for an ``insert()``/``update()`` name the columns to write, as
        ``.values(**values)`` would; for other statements they fill ``bindparam()`` slots.
        """
        if (
            values
            and isinstance(stmt, ValuesBase)
            and any(isinstance(v, ClauseElement) for v in values.values())
        ):
            stmt = stmt.values(**values)
            values = None
        if not isinstance(stmt, ClauseElement) or not hasattr(stmt, "_generate_cache_key"):
            raise InterfaceError(
                f"cannot run {type(stmt).__name__}: pass a SQLAlchemy Core statement or a SQL str"
            )
        if not values and type(stmt) is Insert:
            plain = self._plain_insert(stmt, many)
            if plain is not None:
                return plain
        if not values and type(stmt) is Select:
            plain = self._plain_select(stmt, many)
            if plain is not None:
                return plain
        column_keys: tuple[str, ...] | None = None
        if isinstance(stmt, ValuesBase):
            column_keys = tuple(sorted(values)) if values else ()
        cache_key = stmt._generate_cache_key()
        if cache_key is None:
            compiled = self._compile_core(stmt, None, column_keys, many)
            if column_keys:
                _check_column_keys(stmt, compiled, column_keys)
            return self._entry_for(stmt, compiled), compiled, None, values
        entry = self._keyed_entry(stmt, cache_key, column_keys, many)
        return entry, entry.compiled, cache_key.bindparams, values

    def _keyed_entry(
        self, stmt: ClauseElement, cache_key: Any, column_keys: tuple[str, ...] | None, many: bool
    ) -> CompiledQuery:
        """The cached entry of ``stmt`` under SQLAlchemy's cache key, compiled on first use."""
        key = (cache_key.key, column_keys, many)
        entry: CompiledQuery | None = self._core.get(key)
        if entry is None:
            compiled = self._compile_core(stmt, cache_key, column_keys, many)
            if column_keys:
                _check_column_keys(stmt, compiled, column_keys)
            entry = self._entry_for(stmt, compiled)
            self._core.put(key, entry)
        return entry

    def _plain_insert(
        self, stmt: Insert, many: bool
    ) -> tuple[CompiledQuery, Any, Any, Mapping[str, Any] | None] | None:
        """``core()`` for ``table.insert().values(column=literal, ...)`` and nothing else, the
        statement such code builds afresh on every call; None for any other statement.

        Its SQL depends only on the table and the names of the columns given, so that is its
        cache key: SQLAlchemy's own key walks the whole statement, at a cost of about 10 us
        of Python per insert. Anything else set on the statement (RETURNING, a prefix,
        dialect options, a SQL expression or a typed value among the values) leaves an
        attribute of its own on the object, or a bind that is not a plain literal, and takes
        the general path. The literals are bound in the order of SQLAlchemy's key, which is
        the order of ``_values``.
        """
        given = stmt._values
        if given is None or stmt.__dict__.keys() != _PLAIN_INSERT_ATTRIBUTES:
            return None
        binds = list(given.values())
        for bind in binds:
            if not (type(bind) is BindParameter and _plain_literal(bind) and bind.type._isnull):
                return None
        key = (_PLAIN_INSERT, stmt.table, tuple(given), many)
        entry = self._core.get(key)
        if entry is None:
            entry = self._keyed_entry(stmt, stmt._generate_cache_key(), (), many)
            self._core.put(key, entry)
        return entry, entry.compiled, binds, None

    def _plain_select(
        self, stmt: Select[Any], many: bool
    ) -> tuple[CompiledQuery, Any, Any, Mapping[str, Any] | None] | None:
        """``core()`` for the select such code builds afresh on every call, None for others.

        A plain select reads tables or columns, is filtered by ``column <op> literal``
        comparisons (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``), ordered by columns or their
        ``desc()``/``asc()``, and limited or offset by literals. Its SQL depends only on those
        parts: the tables and columns themselves (by identity), the operators, the types of
        the literals and comparisons, and whether there is a limit or offset, so that is its
        cache key, without SQLAlchemy's walk of the whole statement (10-15 us of Python a
        call). Whatever else a select can carry sets another attribute on the object, or
        another kind of element among these, and takes the general path.

        The literals are bound in the order of SQLAlchemy's key (its traversal visits WHERE,
        ORDER BY, LIMIT, OFFSET in this order). The first statement of each key is checked
        against SQLAlchemy's own key: if its literals differ from SQLAlchemy's in number or
        order, that key keeps taking the general path.
        """
        attrs = stmt.__dict__
        if not attrs.keys() <= _PLAIN_SELECT_ATTRIBUTES:
            return None
        if attrs.get("_fetch_clause") is not None or attrs.get("_fetch_clause_options"):
            return None
        froms = tuple(attrs.get("_raw_columns", ()))
        for element in froms:
            if type(element) is not Table and type(element) is not Column:
                return None
        binds: list[BindParameter[Any]] = []
        where: list[Any] = []
        for criterion in attrs.get("_where_criteria", ()):
            if (
                type(criterion) is not BinaryExpression
                or not criterion.__dict__.keys() <= _COMPARISON_ATTRIBUTES
                or criterion.operator not in _COMPARISONS
                or type(criterion.left) is not Column
                or criterion.modifiers
                or criterion._propagate_attrs
            ):
                return None
            bind = criterion.right
            if type(bind) is not BindParameter or not _plain_literal(bind):
                return None
            binds.append(bind)
            where.append(
                (
                    criterion.left,
                    criterion.operator,
                    criterion.negate,
                    bind.type._static_cache_key,
                    criterion.type._static_cache_key,
                )
            )
        order: list[Any] = []
        for clause in attrs.get("_order_by_clauses", ()):
            if type(clause) is Column:
                order.append((clause, None))
            elif (
                type(clause) is UnaryExpression
                and clause.__dict__.keys() <= _ORDERING_ATTRIBUTES
                and clause.operator is None
                and clause.modifier in _ORDERINGS
                and type(clause.element) is Column
                and not clause._propagate_attrs
            ):
                order.append((clause.element, clause.modifier))
            else:
                return None
        bounds: list[Any] = []
        for name in ("_limit_clause", "_offset_clause"):
            bound = attrs.get(name)
            if bound is not None:
                if type(bound) is not _OffsetLimitParam or not _plain_literal(bound):
                    return None
                binds.append(bound)
                bounds.append((name, bound.type._static_cache_key))
        key = (
            _PLAIN_SELECT,
            froms,
            attrs.get("_label_style"),
            tuple(where),
            tuple(order),
            tuple(bounds),
            many,
        )
        entry = self._core.get(key)
        if entry is None:
            cache_key = stmt._generate_cache_key()
            if cache_key is None:
                return None
            theirs = cache_key.bindparams
            if len(theirs) != len(binds) or any(
                a is not b for a, b in zip(theirs, binds, strict=True)
            ):
                self._core.put(key, _NOT_PLAIN)
                return None
            entry = self._keyed_entry(stmt, cache_key, None, many)
            self._core.put(key, entry)
        elif entry is _NOT_PLAIN:
            return None
        return entry, entry.compiled, binds, None

    def _compile_core(
        self,
        stmt: ClauseElement,
        cache_key: Any,
        column_keys: tuple[str, ...] | None,
        many: bool,
    ) -> Any:
        try:
            if isinstance(stmt, ExecutableDDLElement):
                return stmt.compile(dialect=self.dialect)
            compiled = stmt._compiler(
                self.dialect,
                cache_key=cache_key,
                column_keys=list(column_keys) if column_keys is not None else None,
                for_executemany=many,
                schema_translate_map=None,
            )
        except sqlalchemy.exc.CompileError as exc:
            raise ProgrammingError(f"cannot compile the statement: {exc}") from exc
        return compiled

    def _entry_for(self, stmt: ClauseElement, compiled: Any) -> CompiledQuery:
        if isinstance(stmt, ExecutableDDLElement) or not isinstance(compiled, SQLCompiler):
            entry = CompiledQuery(compiled.string, (), Kind.OTHER, False, None)
            return entry
        if compiled.isinsert:
            kind = Kind.INSERT
        elif compiled.isupdate:
            kind = Kind.UPDATE
        elif compiled.isdelete:
            kind = Kind.DELETE
        elif isinstance(stmt, SelectBase | TextualSelect):
            kind = Kind.SELECT
        else:
            kind, _ = classify_sql(compiled.string)
        readonly = kind == Kind.SELECT and isinstance(stmt, SelectBase)
        if not readonly and kind == Kind.SELECT:
            _, readonly = classify_sql(compiled.string)
        names = compiled.positiontup or ()
        entry = CompiledQuery(compiled.string, names, kind, readonly, compiled)
        procs: dict[str, Any] = dict(compiled._bind_processors)
        entry.bind_processors = tuple(
            (i, procs[name]) for i, name in enumerate(names) if name in procs
        )
        if isinstance(stmt, Insert):
            entry.prefetch = tuple(compiled.insert_prefetch)
        elif isinstance(stmt, Update):
            entry.prefetch = tuple(compiled.update_prefetch)
        if compiled._result_columns:
            entry.result_columns = list(compiled._result_columns)
        cache_key = compiled.cache_key
        if not entry.prefetch and cache_key is not None:
            plan = _bind_plan(compiled, entry.names)
            if plan is not None:
                entry.bind_plan = plan
                entry.bind_required = any(source[3] for source in plan)
                entry.bind_width = len(cache_key[1])
        return entry

    def core_args(
        self,
        entry: CompiledQuery,
        compiled: SQLCompiler,
        extracted: Any,
        values: Mapping[str, Any] | None,
    ) -> tuple[str, list[Any]]:
        """Bind ``values`` (and the literals captured in the statement) for one execution."""
        plan = entry.bind_plan
        args = None
        if plan is not None and extracted is not None and len(extracted) == entry.bind_width:
            args = _planned_args(plan, extracted, values, entry.bind_required)
        if args is None:
            try:
                # Positional SQL: values by the parameters' own names, as entry.names and the
                # bind processors name them (escaped names serve only named paramstyles).
                params = compiled.construct_params(
                    params=values, extracted_parameters=extracted, escape_names=False, _check=True
                )
            except sqlalchemy.exc.InvalidRequestError as exc:
                raise ProgrammingError(str(exc).split("\n")[0]) from None
            if entry.prefetch:
                params = dict(params)
                self._apply_defaults(entry, params)
            if compiled.post_compile_params or compiled.literal_execute_params:
                expanded = compiled._process_parameters_for_postcompile(params)
                expanded_procs: Mapping[str, Any] = expanded.processors
                args = [params_value(expanded.parameters, n) for n in expanded.positiontup or ()]
                for i, name in enumerate(expanded.positiontup or ()):
                    expanded_proc = expanded_procs.get(name)
                    if expanded_proc is not None:
                        args[i] = expanded_proc(args[i])
                return expanded.statement, args
            args = [params[name] for name in entry.names]
        for i, proc in entry.bind_processors:
            args[i] = proc(args[i])
        return entry.sql, args

    def text_many(
        self, entry: CompiledQuery, rows: Sequence[Mapping[str, Any]]
    ) -> list[Sequence[Any]]:
        """Bind every row of an ``execute_many`` call of a raw SQL statement.

        Every row must name exactly the statement's parameters, as for ``execute()``; rows are
        read with one C-level ``itemgetter`` call each.
        """
        entry.args_for_text(rows[0])  # the first row names exactly the parameters
        width = len(entry.unique_names)
        if max(map(len, rows)) > width:
            # A row with a key the statement does not take (a missing one fails below).
            for row in rows:
                if len(row) > width:
                    entry._check_extra(row)
        if entry.getter is None:
            return [() for _ in rows]
        try:
            return list(map(entry.getter, rows))
        except KeyError as exc:
            raise ProgrammingError(
                f"execute_many(): a row has no value for :{exc.args[0]}, which the first "
                "row has; every row must name the same keys"
            ) from None

    def core_many(
        self,
        entry: CompiledQuery,
        compiled: SQLCompiler,
        extracted: Any,
        rows: Sequence[Mapping[str, Any]],
    ) -> list[Sequence[Any]]:
        """Bind every row of an ``execute_many`` call of a Core statement.

        Values are gathered with one C-level ``itemgetter`` call per row and converted by
        ``convert_rows``, so the per-row work stays out of Python loops.
        """
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ProgrammingError(
                "execute_many() cannot run a statement with an expanding IN (...) parameter"
            )
        first = rows[0]
        names = entry.names
        if not names:
            return [() for _ in rows]
        row_keys = set(first)
        if entry.prefetch or not row_keys.issuperset(names):
            # Defaults to fill or literals captured in the statement: the general path.
            return [self._many_row(entry, compiled, extracted, row) for row in rows]
        getter = entry.getter
        assert getter is not None
        try:
            args: list[Sequence[Any]] = list(map(getter, rows))
        except KeyError as exc:
            raise ProgrammingError(
                f"execute_many(): a row has no value for :{exc.args[0]}, which the first "
                "row has; every row must name the same keys"
            ) from None
        if entry.bind_processors:
            return list(convert_rows(args, entry.bind_processors))
        return args

    def _many_row(
        self,
        entry: CompiledQuery,
        compiled: SQLCompiler,
        extracted: Any,
        row: Mapping[str, Any],
    ) -> Sequence[Any]:
        _, args = self.core_args(entry, compiled, extracted, row)
        return args

    @staticmethod
    def _apply_defaults(
        entry: CompiledQuery, params: dict[str, Any], only: Iterable[str] | None = None
    ) -> None:
        wanted = None if only is None else set(only)
        for column in entry.prefetch:
            key = column.key
            if wanted is not None and key not in wanted:
                continue
            if params.get(key) is not None:
                continue
            default = column.onupdate if entry.kind == Kind.UPDATE else column.default
            if default is None:
                continue
            if default.is_scalar:
                params[key] = default.arg
            elif default.is_callable:
                params[key] = default.arg(_DefaultContext(params))

    # -- results -------------------------------------------------------------------------

    def meta_for(self, entry: CompiledQuery | None, names: Sequence[str]) -> ResultMeta:
        """Return the result plan for rows whose columns are called ``names``."""
        if entry is not None and entry.result_columns is not None:
            meta = entry.meta
            if meta is not None and meta.width == len(names):
                return meta
            if len(entry.result_columns) == len(names):
                meta = ResultMeta.from_result_columns(entry.result_columns, self.dialect)
                entry.meta = meta
                return meta
        key = tuple(names)
        meta = self._meta.get(key)
        if meta is None:
            meta = ResultMeta.from_names(key)
            self._meta.put(key, meta)
        assert isinstance(meta, ResultMeta)
        return meta


def _bind_plan(compiled: SQLCompiler, names: tuple[str, ...]) -> tuple[_Source, ...] | None:
    """Plan the positional values of a cached Core statement, or None where it cannot be.

    A statement built afresh for each call reaches a cached compilation with the values it
    carries (its literals) in the order of its cache key. SQLAlchemy's ``construct_params()``
    pairs them with the compiled statement's parameters through a dict built on every call,
    then builds a dict of every value by name, which the caller turns into a list. The pairing
    depends only on the compilation, so it is worked out here once: for each position, the
    parameter's key and name (the caller's values may name it either way, the key first),
    the index of the literal that fills it otherwise (-1: the compiled parameter's own value,
    as for the columns ``values`` name in an insert or update), whether it is required, and
    the parameter.

    Only the plain case is planned: no expanding or literal-rendered parameters, no
    parameter computed by a callable. A name used by several parameters (``bindparam("x")``
    written twice) is filled as ``construct_params()`` fills it: from the caller's value,
    else from the last of them, and required if any of them is. Anything else keeps the
    general path.
    """
    match = compiled._cache_key_bind_match
    cache_key = compiled.cache_key
    if (
        not names
        or cache_key is None
        or match is None
        or compiled.post_compile_params
        or compiled.literal_execute_params
        or getattr(compiled, "_render_postcompile", False)
        or getattr(compiled, "_collect_params", False)
    ):
        return None
    by_bind, _ = match
    literal_of: dict[BindParameter[Any], int] = {}
    for index, original in enumerate(cache_key[1]):
        for bind in by_bind.get(original, ()):
            literal_of[bind] = index
    sources: dict[str, _Source] = {}
    for bind, name in compiled.bind_names.items():
        if bind.callable is not None:
            return None  # computed at execution: the general path
        required = bool(bind.required)
        earlier = sources.get(name)
        if earlier is not None:
            if earlier[0] != bind.key:
                return None  # one name, two keys: the general path
            required = required or earlier[3]
        sources[name] = (bind.key, name, literal_of.get(bind, -1), required, bind)
    if sources.keys() != set(names):
        return None
    return tuple(sources[name] for name in names)


def _planned_args(
    plan: tuple[_Source, ...],
    extracted: Sequence[Any],
    values: Mapping[str, Any] | None,
    required: bool,
) -> list[Any] | None:
    """The positional values of one call by ``plan``; None when one is missing (the general
    path then raises SQLAlchemy's error about it)."""
    if not values:
        if required:
            return None
        return [
            extracted[index].value if index >= 0 else bind.value for _, _, index, _, bind in plan
        ]
    args = []
    for key, name, index, needed, bind in plan:
        if key in values:
            args.append(values[key])
        elif name in values:
            args.append(values[name])
        elif needed:
            return None
        else:
            args.append(extracted[index].value if index >= 0 else bind.value)
    return args


def _plain_literal(bind: BindParameter[Any]) -> bool:
    """Whether a bind is a literal value given in the statement, as ``column == 5`` makes:
    anonymous, one value, nothing computed at execution or rendered into the SQL (inserts
    take one in ``.values(column=5)``)."""
    return (
        bind.unique
        and bind.callable is None
        and not bind.expanding
        and not bind.literal_execute
        and not bind.isoutparam
        and not bind.required
    )


def _check_column_keys(stmt: ClauseElement, compiled: Any, column_keys: Iterable[str]) -> None:
    """Reject values that name neither a column of the table nor a bind parameter."""
    table = getattr(stmt, "table", None)
    known = {c.key for c in table.c} if table is not None and hasattr(table, "c") else set()
    known.update(getattr(compiled, "binds", {}))
    unknown = sorted(set(column_keys) - known)
    if unknown:
        raise ProgrammingError(
            f"values name no column of {getattr(table, 'name', 'the table')}: "
            f"{', '.join(unknown)} (unconsumed column names)"
        )


def params_value(params: Mapping[str, Any], name: str) -> Any:
    """Return ``params[name]``, turning a missing name into a clear error."""
    try:
        return params[name]
    except KeyError:
        raise ProgrammingError(f"missing value for query parameter :{name}") from None

"""Record, the row type, and ResultMeta, the per-statement plan that builds records.

Field lookups and bulk construction are done by the C module ``_crecords`` when it is built
(it is optional); the pure-Python fallback below behaves the same, only slower. Setting the
environment variable ``AIODATABASES_NO_EXTENSIONS`` forces the fallback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, Sequence, ValuesView
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine.interfaces import Dialect

__all__ = [
    "Record",
    "ResultMeta",
    "as_utc",
    "bool_to_bool",
    "bool_to_int",
    "convert_rows",
    "decimal_to_float",
    "sqlite_datetime",
    "str_to_utc_datetime",
]

Processor = Callable[[Any], Any]


class _PyRecordBase:
    """Pure-Python twin of ``_crecords.RecordBase``."""

    __slots__ = ("_keymap", "_meta", "_row")

    _row: Sequence[Any]
    _keymap: dict[Any, int]
    _meta: ResultMeta

    def __init__(self, row: Sequence[Any], keymap: dict[Any, int], meta: ResultMeta) -> None:
        self._row = row
        self._keymap = keymap
        self._meta = meta

    def __getitem__(self, key: Any) -> Any:
        try:
            return self._row[self._keymap[key]]
        except (KeyError, TypeError):
            return self._fallback(key)

    def _fallback(self, key: Any) -> Any:
        raise KeyError(key)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_"):
            try:
                return self._row[self._keymap[name]]
            except KeyError:
                pass
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _py_convert(row: Sequence[Any], processors: tuple[tuple[int, Processor], ...]) -> list[Any]:
    values = list(row)
    for index, proc in processors:
        values[index] = proc(values[index])
    return values


def _py_make_record(
    cls: type[Any],
    row: Sequence[Any],
    keymap: dict[Any, int],
    meta: ResultMeta,
    processors: tuple[tuple[int, Processor], ...],
    lookup: tuple[str | None, ...] | None = None,
) -> Any:
    return cls(_py_convert(row, processors) if processors else row, keymap, meta, _raw=True)


def _py_make_records(
    cls: type[Any],
    rows: Sequence[Sequence[Any]],
    keymap: dict[Any, int],
    meta: ResultMeta,
    processors: tuple[tuple[int, Processor], ...],
    take: bool = False,
    lookup: tuple[str | None, ...] | None = None,
) -> list[Any]:
    return [_py_make_record(cls, row, keymap, meta, processors) for row in rows]


def _py_convert_rows(
    rows: Sequence[Sequence[Any]], processors: tuple[tuple[int, Processor], ...]
) -> list[list[Any]]:
    return [_py_convert(row, processors) for row in rows]


def _py_sqlite_datetime(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (
            f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
        )
    if isinstance(value, date):
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d} 00:00:00.000000"
    raise TypeError("SQLite DateTime type only accepts Python datetime and date objects as input.")


def _py_decimal_to_float(value: Any) -> Any:
    """A Decimal as a float; any other value (a float, None) as it is."""
    return float(value) if type(value) is Decimal else value


def _py_bool_to_bool(value: Any) -> bool | None:
    """SQLAlchemy's strict Boolean check: None, or a value equal to True or False as a bool;
    ValueError for another integer, TypeError for anything else."""
    if value is None:
        return None
    if value in (True, False):
        return bool(value)
    if isinstance(value, int):
        raise ValueError(f"Value {value!r} is not None, True, or False")
    raise TypeError(f"Not a boolean value: {value!r}")


def _py_bool_to_int(value: Any) -> int | None:
    return None if _py_bool_to_bool(value) is None else int(value)


def _py_int_to_boolean(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _py_str_to_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def as_utc(value: datetime) -> datetime:
    """A stored datetime as an aware one in UTC: naive is read as UTC, aware is converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _py_str_to_utc_datetime(value: str | None) -> datetime | None:
    """Naive text is read as UTC; text with an offset is converted to UTC."""
    return None if value is None else as_utc(datetime.fromisoformat(value))


if TYPE_CHECKING:  # noqa: SIM114  # kept apart so mypy reads only the typed branch
    _RecordBase = _PyRecordBase
    _make_record = _py_make_record
    _make_records = _py_make_records
    convert_rows = _py_convert_rows
    bool_to_int = _py_bool_to_int
    bool_to_bool = _py_bool_to_bool
    decimal_to_float = _py_decimal_to_float
    sqlite_datetime = _py_sqlite_datetime
    _int_to_boolean = _py_int_to_boolean
    _str_to_datetime = _py_str_to_datetime
    str_to_utc_datetime = _py_str_to_utc_datetime
    RECORD_FREELIST = 0
    SPEEDUPS = False
elif os.environ.get("AIODATABASES_NO_EXTENSIONS"):
    _RecordBase = _PyRecordBase
    _make_record = _py_make_record
    _make_records = _py_make_records
    convert_rows = _py_convert_rows
    bool_to_int = _py_bool_to_int
    bool_to_bool = _py_bool_to_bool
    decimal_to_float = _py_decimal_to_float
    sqlite_datetime = _py_sqlite_datetime
    _int_to_boolean = _py_int_to_boolean
    _str_to_datetime = _py_str_to_datetime
    str_to_utc_datetime = _py_str_to_utc_datetime
    RECORD_FREELIST = 0
    SPEEDUPS = False
else:
    try:
        from ._crecords import (
            RECORD_FREELIST,
            bool_to_bool,
            bool_to_int,
            convert_rows,
            decimal_to_float,
            sqlite_datetime,
            str_to_utc_datetime,
        )
        from ._crecords import RecordBase as _RecordBase
        from ._crecords import int_to_boolean as _int_to_boolean
        from ._crecords import make_record as _make_record
        from ._crecords import make_records as _make_records
        from ._crecords import str_to_datetime as _str_to_datetime

        SPEEDUPS = True
    except ImportError:  # built without a C compiler
        _RecordBase = _PyRecordBase
        _make_record = _py_make_record
        _make_records = _py_make_records
        convert_rows = _py_convert_rows
        bool_to_int = _py_bool_to_int
        bool_to_bool = _py_bool_to_bool
        decimal_to_float = _py_decimal_to_float
        sqlite_datetime = _py_sqlite_datetime
        _int_to_boolean = _py_int_to_boolean
        _str_to_datetime = _py_str_to_datetime
        str_to_utc_datetime = _py_str_to_utc_datetime
        RECORD_FREELIST = 0
        SPEEDUPS = False


def _faster_processors() -> dict[Processor, Processor]:
    """SQLAlchemy result processors and their C twins (same results), run inline by
    ``make_records``."""
    if not SPEEDUPS:
        return {}
    from sqlalchemy.engine import processors

    return {
        processors.int_to_boolean: _int_to_boolean,
        processors.str_to_datetime: _str_to_datetime,
    }


_FASTER = _faster_processors()


class ResultMeta:
    """How to read the rows of one statement: column names, lookup keys and converters.

    Built once per statement shape and shared by every record it produces; immutable, so it
    may be shared between tasks.
    """

    __slots__ = ("keymap", "lookup", "names", "processors", "width")

    def __init__(
        self,
        names: Sequence[str],
        objects: Sequence[Sequence[Any]] = (),
        processors: Sequence[Processor | None] = (),
    ) -> None:
        # Interned, so that looking up a name written in the caller's code (interned by the
        # compiler) finds the same object in the keymap and skips comparing characters: the
        # names of raw SQL results come from the driver as fresh strings.
        self.names: tuple[str, ...] = tuple([sys.intern(str(name)) for name in names])
        self.width = len(self.names)
        keymap: dict[Any, int] = {}
        for index, name in enumerate(self.names):
            keymap[name] = index
            keymap[index] = index
            keymap[index - self.width] = index
        for index, column_objects in enumerate(objects):
            for obj in column_objects:
                if not isinstance(obj, str):
                    keymap.setdefault(obj, index)
        self.keymap = keymap
        # For the C records: the names, then per column the name that reads it as an
        # attribute (None where the class has that attribute or it starts with "_").
        self.lookup: tuple[str | None, ...] = self.names + tuple(
            [
                None if name.startswith("_") or name in _RECORD_ATTRIBUTES else name
                for name in self.names
            ]
        )
        self.processors: tuple[tuple[int, Processor], ...] = tuple(
            (i, p) for i, p in enumerate(processors) if p is not None
        )

    @classmethod
    def from_names(cls, names: Sequence[str]) -> ResultMeta:
        """Plan rows of a raw SQL query: names only, values as the driver gives them."""
        return cls(names)

    @classmethod
    def from_result_columns(cls, columns: Sequence[Any], dialect: Dialect) -> ResultMeta:
        """Plan rows of a compiled Core statement, converting by the SQLAlchemy column types."""
        names = [c.keyname for c in columns]
        objects = [c.objects for c in columns]
        processors = [c.type._cached_result_processor(dialect, None) for c in columns]
        faster = _FASTER
        return cls(names, objects, [faster.get(p, p) if p else p for p in processors])

    def records(self, rows: Sequence[Sequence[Any]], take: bool = False) -> list[Record]:
        """Turn driver rows into records, converting only the columns that need it.

        ``take=True`` hands the rows over: the caller will not read them again, so a row
        nothing else refers to may be converted in place rather than copied.
        """
        records: list[Record] = _make_records(
            Record, rows, self.keymap, self, self.processors, take, self.lookup
        )
        return records

    def record(self, row: Sequence[Any]) -> Record:
        """Turn one driver row into a record."""
        record: Record = _make_record(Record, row, self.keymap, self, self.processors, self.lookup)
        return record


class Record(_RecordBase, Mapping[str, Any]):
    """One result row: a read-only mapping from column name to value that also indexes.

    ``row["col"]``, ``row[0]``, ``row[table.c.col]``, ``row.col``, ``keys()``, ``values()``,
    ``items()``, ``len(row)``, ``dict(row)`` and ``row._mapping`` all work; iterating yields
    the column names. When two columns share a name, the name reads the last of them (use
    the column object or the position to read the others); ``keys()`` keeps both.
    Immutable, so it may be shared between tasks.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # Implemented by the base (C or fallback); declared here for type checkers only, so
        # that the C slot stays in charge at run time.
        _row: Sequence[Any]
        _meta: ResultMeta

        def __getitem__(self, key: Any) -> Any: ...

        def __getattr__(self, name: str) -> Any: ...

    def __init__(
        self,
        values: Sequence[Any],
        names: Any,
        meta: ResultMeta | None = None,
        *,
        _raw: bool = False,
    ) -> None:
        if _raw and meta is not None:
            # (row, keymap, meta), as the fallback constructor passes them.
            super().__init__(values, names, meta)
            return
        plan = ResultMeta(names)
        super().__init__(values, plan.keymap, plan)

    def _fallback(self, key: Any) -> Any:
        if isinstance(key, slice):
            return tuple(self._row)[key]
        if isinstance(key, int):
            raise IndexError(f"record index {key} out of range")
        if not isinstance(key, str):
            # A column of an equivalent Table object (reflected, copied): match by name.
            qualified = str(key)
            name = qualified.rpartition(".")[2]
            found = None
            for index, column_name in enumerate(self._meta.names):
                if column_name in (name, qualified):
                    found = index
            if found is not None:
                return self._row[found]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta.names)

    def __len__(self) -> int:
        width: int = self._meta.width
        return width

    def __contains__(self, key: object) -> bool:
        return key in self._meta.names

    def keys(self) -> KeysView[str]:
        """The column names, duplicates included."""
        return KeysView(self)

    def values(self) -> ValuesView[Any]:
        """The values, one per column."""
        return _Values(self)

    def items(self) -> ItemsView[str, Any]:
        """``(name, value)`` pairs, one per column."""
        return _Items(self)

    @property
    def _mapping(self) -> Record:
        return self

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self._meta.names == other._meta.names and list(self._row) == list(other._row)
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in zip(self._meta.names, self._row, strict=True))
        return f"<Record {inner}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Record, (list(self._row), self._meta.names))


class _Values(ValuesView[Any]):
    _mapping: Record

    def __iter__(self) -> Iterator[Any]:
        return iter(self._mapping._row)

    def __contains__(self, value: object) -> bool:
        return value in self._mapping._row


class _Items(ItemsView[str, Any]):
    _mapping: Record

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        record = self._mapping
        return zip(record._meta.names, record._row, strict=True)


def _teach_pydantic() -> None:
    # FastAPI serializes a route's return value annotated ``-> Any`` with pydantic-core,
    # which knows nothing of Mapping subclasses; a class-level serializer makes records
    # serialize as JSON objects there too. Skipped when pydantic is not installed.
    try:
        from pydantic_core import SchemaSerializer, core_schema
    except ImportError:
        return
    schema = core_schema.any_schema(
        serialization=core_schema.plain_serializer_function_ser_schema(
            lambda record: dict(record.items())
        )
    )
    Record.__pydantic_serializer__ = SchemaSerializer(schema)  # type: ignore[attr-defined]


_teach_pydantic()


# The attribute names of Record and its bases: a column of such a name is read as
# ``row["name"]``, never as ``row.name``.
_RECORD_ATTRIBUTES = frozenset(name for klass in Record.__mro__ for name in vars(klass))


if SPEEDUPS and not TYPE_CHECKING:
    # Last: the C records may then skip the class lookup for ``row.name`` while Record is
    # unchanged (any change to the class turns the shortcut off).
    from ._crecords import set_record_class

    set_record_class(Record)

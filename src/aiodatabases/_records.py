"""Record, the row type, and ResultMeta, the per-statement plan that builds records."""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, Sequence, ValuesView
from typing import Any

from sqlalchemy.engine.interfaces import Dialect

__all__ = ["Record", "ResultMeta"]

Processor = Callable[[Any], Any]


class ResultMeta:
    """How to read the rows of one statement: column names, lookup keys and converters.

    Built once per statement shape and shared by every record it produces; immutable, so it
    may be shared between tasks.
    """

    __slots__ = ("keymap", "names", "processors", "width")

    def __init__(
        self,
        names: Sequence[str],
        objects: Sequence[Sequence[Any]] = (),
        processors: Sequence[Processor | None] = (),
    ) -> None:
        self.names: tuple[str, ...] = tuple(names)
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
        return cls(names, objects, processors)

    def records(self, rows: Sequence[Sequence[Any]]) -> list[Record]:
        """Turn driver rows into records, converting only the columns that need it."""
        if self.processors:
            rows = [self.convert(row) for row in rows]
        new = Record.__new__
        out: list[Record] = []
        append = out.append
        for row in rows:
            record = new(Record)
            record._row = row
            record._meta = self
            append(record)
        return out

    def record(self, row: Sequence[Any]) -> Record:
        """Turn one driver row into a record."""
        if self.processors:
            row = self.convert(row)
        record = Record.__new__(Record)
        record._row = row
        record._meta = self
        return record

    def convert(self, row: Sequence[Any]) -> list[Any]:
        """Return the row's values with the column-type converters applied."""
        values = list(row)
        for index, proc in self.processors:
            values[index] = proc(values[index])
        return values


class Record(Mapping[str, Any]):
    """One result row: a read-only mapping from column name to value that also indexes.

    ``row["col"]``, ``row[0]``, ``row[table.c.col]``, ``row.col``, ``keys()``, ``values()``,
    ``items()``, ``len(row)``, ``dict(row)`` and ``row._mapping`` all work; iterating yields
    the column names. When two columns share a name, the name reads the last of them (use
    the column object or the index to read the others). Immutable, so it may be shared
    between tasks.
    """

    __slots__ = ("_meta", "_row")

    _row: Sequence[Any]
    _meta: ResultMeta

    def __init__(self, values: Sequence[Any], names: Sequence[str]) -> None:
        self._row = values
        self._meta = ResultMeta(names)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self._row[self._meta.keymap[key]]
        except KeyError:
            return self._fallback(key)
        except TypeError:
            if isinstance(key, slice):
                return tuple(self._row[key])
            raise KeyError(key) from None

    def _fallback(self, key: Any) -> Any:
        if isinstance(key, int):
            raise IndexError(f"record index {key} out of range") from None
        if not isinstance(key, str):
            # A column of an equivalent Table object (reflected, copied): match by name.
            qualified = str(key)
            name = qualified.rpartition(".")[2]
            for index, column_name in enumerate(self._meta.names):
                if column_name in (name, qualified):
                    return self._row[index]
        raise KeyError(key)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._row[self._meta.keymap[name]]
        except KeyError:
            raise AttributeError(
                f"record has no column {name!r}; its columns are {list(self._meta.names)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta.names)

    def __len__(self) -> int:
        return self._meta.width

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
    def _mapping(self) -> Mapping[str, Any]:
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

    def __getstate__(self) -> tuple[list[Any], tuple[str, ...]]:
        return list(self._row), self._meta.names

    def __setstate__(self, state: tuple[list[Any], tuple[str, ...]]) -> None:
        self._row, names = state
        self._meta = ResultMeta(names)


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

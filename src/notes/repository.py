"""Notes in the database: the only module that writes SQL. It returns schemas, not records.

Every write method is atomic: one statement, or one transaction (a savepoint inside a caller's
transaction) when it takes several, so a note and its tags are stored together or not at all.
A repository belongs to one owner: every statement of notes carries ``_owned()``, the one
criterion that restricts notes to an owner, and every call binds it through
``NotesRepository._bind()``, the one place that names the owner; every new note is theirs.
Another owner's note does not exist, as far as a repository can tell. A repository of a login
session answers only while that session is live: a read checks it in its own statement (one
round trip for both), and so does a create on SQLite and PostgreSQL; other writes check it
first.

Statements are built once, with ``bindparam()`` slots for the values of a call, and reused: a
statement object keeps its SQLAlchemy cache key, so the database finds its compiled form at
once, where a statement built on every call costs more to build and key than to run. Listings
come in many shapes (sort, filters, cursor, search, page size); each shape is built on first
use and kept.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

import aiodatabases

from . import search, search_index
from .accounts import AccountsRepository
from .errors import BadRequestError, NotFoundError, PreconditionFailedError, UnauthorizedError
from .pagination import Cursor, Sort, decode_cursor, encode_cursor
from .schemas import Note, NoteFields, NoteIn, NotePage, NotePageFields
from .tables import PG_SEARCH_CONFIG, auth_sessions, note_tags, notes, notes_fts, search_vector

__all__ = ["MAX_PAGE_SIZE", "ListQuery", "NotesRepository", "ping", "utc_now"]

#: The most notes a listing returns at once.
MAX_PAGE_SIZE = 100

Clock = Callable[[], dt.datetime]

#: Title hits weigh this much more than body hits in the ranking (SQLite and MySQL).
_TITLE_WEIGHT = "4.0"

_NOTE_COLUMNS = (
    notes.c.id,
    notes.c.title,
    notes.c.body,
    notes.c.completed,
    notes.c.version,
    notes.c.created_at,
    notes.c.updated_at,
)


#: The bind parameter of the owner, in every statement of notes (not a column name: an UPDATE
#: may not bind a parameter named like one of its columns).
_OWNER = "scope_owner_id"


def _owned() -> sa.ColumnElement[bool]:
    """The criterion of every statement of notes: the note belongs to the bound owner."""
    return notes.c.owner_id == sa.bindparam(_OWNER)


#: The bind parameter of the login session a read checks (see ``_live_session()``).
_SESSION = "scope_session_id"


def _live_session() -> sa.ColumnElement[bool]:
    """The criterion of a read in a login session: the session is the owner's and not revoked."""
    return sa.exists().where(
        auth_sessions.c.id == sa.bindparam(_SESSION),
        auth_sessions.c.user_id == sa.bindparam(_OWNER),
        auth_sessions.c.revoked_at.is_(None),
    )


def _this_note() -> sa.ColumnElement[bool]:
    return notes.c.id == sa.bindparam("note_id")


def _versions_in() -> sa.ColumnElement[bool]:
    return notes.c.version.in_(sa.bindparam("versions", expanding=True))


_PING = sa.select(sa.literal(1))

_GET = (
    sa.select(*_NOTE_COLUMNS, note_tags.c.tag)
    .select_from(notes.outerjoin(note_tags, note_tags.c.note_id == notes.c.id))
    .where(_this_note(), _owned())
    .order_by(note_tags.c.position)
)
_GET_IN_SESSION = _GET.where(_live_session())
_VERSION = sa.select(notes.c.version).where(_this_note(), _owned())
_INSERT = notes.insert()
#: The columns of a new note besides its owner.
_NEW_NOTE = ("title", "body", "completed", "version", "created_at", "updated_at")
#: A new note, written only while the bound login session is live: the check and the write in
#: one statement, where checking first costs a round trip. It needs INSERT ... RETURNING, so
#: it serves SQLite and PostgreSQL (``_FOLDS_SESSION_CHECK``); on MySQL the check comes first.
_INSERT_IN_SESSION = (
    notes.insert()
    .from_select(
        ["owner_id", *_NEW_NOTE],
        sa.select(
            sa.bindparam(_OWNER, type_=notes.c.owner_id.type),
            *(sa.bindparam(name, type_=notes.c[name].type) for name in _NEW_NOTE),
        ).where(_live_session()),
    )
    .returning(notes.c.id)
)
_FOLDS_SESSION_CHECK = frozenset({"sqlite", "postgresql"})
_INSERT_TAGS = note_tags.insert()
_DELETE_TAGS = note_tags.delete().where(note_tags.c.note_id == sa.bindparam("note_id"))
_UPDATE = notes.update().where(_this_note(), _owned()).values(version=notes.c.version + 1)
_UPDATE_IF_VERSION = _UPDATE.where(_versions_in())
_DELETE = notes.delete().where(_this_note(), _owned())
_DELETE_IF_VERSION = _DELETE.where(_versions_in())


def utc_now() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


async def ping(database: aiodatabases.Database) -> None:
    """Run a trivial query: raises when the database cannot answer."""
    await database.fetch_val(_PING)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What a listing asks for; validated by the API layer, checked again here."""

    limit: int = 20
    cursor: str | None = None
    offset: int | None = None
    sort: Sort | None = None
    completed: bool | None = None
    tags: Sequence[str] = field(default_factory=tuple)
    q: str | None = None


class NotesRepository:
    """Reads and writes one owner's notes through one ``Database``; safe to share between tasks.

    Args:
        database: A connected database with the notes schema.
        owner_id: The user whose notes these are; no other note is ever read or written.
        session_id: The owner's login session, when the repository serves a request made with
            its token: every call then raises ``UnauthorizedError`` once it has ended.
        clock: Returns the time stamped on writes (aware, UTC); replaceable in tests.
    """

    def __init__(
        self,
        database: aiodatabases.Database,
        *,
        owner_id: int,
        session_id: int | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._database = database
        self._owner_id = owner_id
        self._session_id = session_id
        self._clock = clock
        self._dialect = _dialect_family(database.url.dialect)

    # -- the scope of a caller --------------------------------------------------------------

    def _bind(self, **values: Any) -> dict[str, Any]:
        """The values of a statement of notes, with the owner its ``_owned()`` criterion takes."""
        values[_OWNER] = self._owner_id
        return values

    def _bind_read(self, **values: Any) -> dict[str, Any]:
        """The values of a read: the owner, and the session it checks if there is one."""
        values = self._bind(**values)
        if self._session_id is not None:
            values[_SESSION] = self._session_id
        return values

    async def _check_session(self) -> None:
        """Raise unless the login session of this repository, if it has one, is live."""
        if self._session_id is not None and not await AccountsRepository(
            self._database
        ).session_is_live(self._owner_id, self._session_id):
            raise _session_ended()

    # -- reads ------------------------------------------------------------------------------

    async def get(self, note_id: int) -> Note:
        """Return one note with its tags.

        Raises:
            NotFoundError: There is no such note.
        """
        statement = _GET if self._session_id is None else _GET_IN_SESSION
        found = _assemble(
            await self._database.fetch_all(statement, self._bind_read(note_id=note_id))
        )
        if not found:
            await self._check_session()  # no row: no such note, or no live session
            raise NotFoundError(f"note {note_id} does not exist")
        return Note(**found[0])

    async def list_page(self, query: ListQuery) -> NotePage:
        """Return one page of notes, filtered, searched and sorted as asked.

        Raises:
            BadRequestError: As ``list_fields``.
            UnauthorizedError: As ``list_fields``.
        """
        return NotePage.model_validate(await self.list_fields(query))

    async def list_fields(self, query: ListQuery) -> NotePageFields:
        """Return the fields of ``list_page``'s page, without building models of them: for
        callers that only write them out (``schemas.note_page_json``).

        Raises:
            BadRequestError: The cursor is invalid or made for another order, both a cursor
                and an offset were given, or ``sort=relevance`` came without ``q``.
            UnauthorizedError: The login session of the repository has ended.
        """
        sort = query.sort or (Sort.RELEVANCE if query.q is not None else Sort.CREATED_AT_DESC)
        if sort is Sort.RELEVANCE and query.q is None:
            raise BadRequestError("sort=relevance needs a search: give q")
        if query.cursor is not None and query.offset is not None:
            raise BadRequestError("give either cursor or offset, not both")
        cursor = decode_cursor(query.cursor, sort) if query.cursor is not None else None
        offset = query.offset or 0
        if cursor is not None and sort is Sort.RELEVANCE:
            offset = cursor.offset

        if not 1 <= query.limit <= MAX_PAGE_SIZE:
            raise BadRequestError(f"limit must be from 1 to {MAX_PAGE_SIZE}")
        values = self._bind_read()
        filter_completed = query.completed is not None
        if filter_completed:
            values["completed"] = query.completed
        tags = list(dict.fromkeys(query.tags))
        values.update((f"tag_{index}", tag) for index, tag in enumerate(tags))
        if query.q is not None:
            searched = _search_value(self._dialect, query.q)
            if searched is None:
                await self._check_session()
                return {"items": [], "next_cursor": None, "next_offset": None}
            values[searched[0]] = searched[1]
            await search_index.catch_up(self._database)  # SQLite's queue; nothing elsewhere
        after = cursor is not None and sort is not Sort.RELEVANCE
        if cursor is not None and after:
            values["after_value"] = cursor.value
            values["after_id"] = cursor.id
        if offset:
            values["offset"] = offset
        statement = _page_statement(
            _PageShape(
                self._dialect,
                sort,
                query.limit + 1,
                filter_completed,
                len(tags),
                after,
                bool(offset),
                query.q is not None,
                self._session_id is not None,
            )
        )
        items = _assemble(await self._database.fetch_all(statement, values))
        if not items:
            await self._check_session()  # no row: no such notes, or no live session
        more = len(items) > query.limit
        items = items[: query.limit]
        next_cursor: str | None = None
        next_offset: int | None = None
        if more:
            last = items[-1]
            if sort is Sort.RELEVANCE:
                next_cursor = encode_cursor(Cursor(sort, offset=offset + len(items)))
            else:
                sorted_on = cast("dict[str, Any]", last)[sort.column]
                next_cursor = encode_cursor(Cursor(sort, sorted_on, last["id"]))
            if query.offset is not None:
                next_offset = offset + len(items)
        return {"items": items, "next_cursor": next_cursor, "next_offset": next_offset}

    # -- writes -----------------------------------------------------------------------------

    async def create(self, note: NoteIn) -> Note:
        """Store a new note with its tags, in one transaction (without tags: one statement)."""
        folded = self._session_id is not None and self._dialect in _FOLDS_SESSION_CHECK
        if not folded:
            await self._check_session()
        if not note.tags:
            # A single INSERT is atomic by itself: BEGIN and COMMIT would cost two more trips.
            return await self._insert(note, self._clock(), in_session=folded)
        async with self._database.transaction():
            return await self._insert(note, self._clock(), in_session=folded)

    async def create_many(self, batch: Sequence[NoteIn]) -> list[Note]:
        """Store several notes with their tags in one transaction: all of them or none."""
        await self._check_session()
        now = self._clock()
        async with self._database.transaction():
            return [await self._insert(note, now) for note in batch]

    async def _insert(self, note: NoteIn, now: dt.datetime, *, in_session: bool = False) -> Note:
        """Write a note and its tags; ``in_session``: only while the session is live.

        Raises:
            UnauthorizedError: ``in_session``, and the session has ended (nothing is written).
        """
        values = {
            "title": note.title,
            "body": note.body,
            "completed": note.completed,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        if in_session:
            note_id = await self._database.execute(_INSERT_IN_SESSION, self._bind_read(**values))
            if note_id is None:
                raise _session_ended()
        else:
            values["owner_id"] = self._owner_id
            note_id = await self._database.execute(_INSERT, values)
        await self._write_tags(note_id, note.tags)
        return Note(
            id=note_id,
            title=note.title,
            body=note.body,
            completed=note.completed,
            tags=list(note.tags),
            created_at=now,
            updated_at=now,
            version=1,
        )

    async def _write_tags(self, note_id: int, tags: Sequence[str]) -> None:
        if tags:
            await self._database.execute_many(
                _INSERT_TAGS,
                [
                    {"note_id": note_id, "tag": tag, "position": position}
                    for position, tag in enumerate(tags)
                ],
            )

    async def update(
        self,
        note_id: int,
        changes: dict[str, Any],
        *,
        versions: Collection[int] | None = None,
    ) -> Note:
        """Change some fields of a note (``tags`` replaces them all); bumps its version.

        Args:
            note_id: The note.
            changes: New values by field name: title, body, completed, tags.
            versions: When given, change the note only if its version is one of these.

        Raises:
            NotFoundError: There is no such note.
            PreconditionFailedError: Its version is not in ``versions``; nothing changed.
        """
        await self._check_session()
        columns = {key: changes[key] for key in ("title", "body", "completed") if key in changes}
        async with self._database.transaction():
            if not columns and "tags" not in changes:
                current = await self.get(note_id)
                if versions is not None and current.version not in versions:
                    raise _stale(current.id, current.version)
                return current
            values = self._bind(note_id=note_id, updated_at=self._clock(), **columns)
            statement = _UPDATE
            if versions is not None:
                statement = _UPDATE_IF_VERSION
                values["versions"] = list(versions)
            if not await self._database.execute(statement, values):
                await self._explain_miss(note_id)
            if "tags" in changes:
                await self._database.execute(_DELETE_TAGS, {"note_id": note_id})
                await self._write_tags(note_id, changes["tags"])
            return await self.get(note_id)

    async def replace(
        self, note_id: int, note: NoteIn, *, versions: Collection[int] | None = None
    ) -> Note:
        """Replace every field of a note; bumps its version (see ``update``)."""
        return await self.update(note_id, note.model_dump(), versions=versions)

    async def delete(self, note_id: int, *, versions: Collection[int] | None = None) -> None:
        """Delete a note and its tags.

        Raises:
            NotFoundError: There is no such note.
            PreconditionFailedError: Its version is not in ``versions``; nothing deleted.
        """
        await self._check_session()
        values = self._bind(note_id=note_id)
        statement = _DELETE
        if versions is not None:
            statement = _DELETE_IF_VERSION
            values["versions"] = list(versions)
        async with self._database.transaction():
            if not await self._database.execute(statement, values):
                await self._explain_miss(note_id)
            # The foreign key cascades, but SQLite only with foreign keys switched on.
            await self._database.execute(_DELETE_TAGS, {"note_id": note_id})

    async def _explain_miss(self, note_id: int) -> None:
        """Raise why a conditional write of a note changed nothing."""
        version = await self._database.fetch_val(_VERSION, self._bind(note_id=note_id))
        if version is None:
            raise NotFoundError(f"note {note_id} does not exist")
        raise _stale(note_id, version)


def _stale(note_id: int, version: int) -> PreconditionFailedError:
    return PreconditionFailedError(
        f"note {note_id} has changed: it is at version {version}; "
        "fetch it again, reapply your change and send the new ETag in If-Match",
        current_version=version,
    )


def _dialect_family(dialect: str) -> str:
    if dialect in {"postgresql", "postgres"}:
        return "postgresql"
    if dialect in {"mysql", "mariadb"}:
        return "mysql"
    return dialect


def _order(
    sort: Sort, score: sa.ColumnElement[Any], source: sa.FromClause | None = None
) -> list[sa.ColumnElement[Any]]:
    """ORDER BY of a sort: its column then id, both in its direction."""
    columns = source.c if source is not None else notes.c
    if sort is Sort.RELEVANCE:
        return [score.desc(), columns.id.desc()]
    key = columns[sort.column]
    if sort.descending:
        return [key.desc(), columns.id.desc()]
    return [key.asc(), columns.id.asc()]


def _after(sort: Sort) -> sa.ColumnElement[bool]:
    """Keyset condition: the rows strictly after the cursor (``after_value``, ``after_id``)."""
    key = notes.c[sort.column]
    value: sa.BindParameter[Any] = sa.bindparam("after_value")
    note_id: sa.BindParameter[Any] = sa.bindparam("after_id")
    if sort.descending:
        return sa.or_(key < value, sa.and_(key == value, notes.c.id < note_id))
    return sa.or_(key > value, sa.and_(key == value, notes.c.id > note_id))


@dataclass(frozen=True, slots=True)
class _PageShape:
    """What decides the SQL of a listing; the values of a call fill its bind parameters."""

    dialect: str
    sort: Sort
    #: Rows to read: the page size plus one, to tell whether more follow. Written into the
    #: SQL, not bound: PostgreSQL then plans a listing's prepared statement once and reuses
    #: the plan, where a bound LIMIT made it plan again on every call (each costing more than
    #: running the query). There are at most ``MAX_PAGE_SIZE`` of them.
    limit: int
    completed: bool
    tags: int
    after: bool
    offset: bool
    search: bool
    session: bool


@functools.lru_cache(maxsize=1024)
def _page_statement(shape: _PageShape) -> sa.Select[Any]:
    """Build the statement of one shape of listing: a page of notes with their tags.

    It binds the owner, then as the shape asks ``completed``, ``tag_0``..., ``after_value``
    and ``after_id``, ``offset``, and the search words (see ``_search_value``).
    """
    criteria = [_owned()]
    if shape.session:
        criteria.append(_live_session())
    if shape.completed:
        criteria.append(notes.c.completed == sa.bindparam("completed"))
    for index in range(shape.tags):
        criteria.append(
            sa.exists().where(
                note_tags.c.note_id == notes.c.id, note_tags.c.tag == sa.bindparam(f"tag_{index}")
            )
        )
    source: sa.FromClause = notes
    score: sa.ColumnElement[Any] = sa.literal_column("0.0")
    if shape.search:
        source, condition, score = _search_clauses(shape.dialect)
        criteria.append(condition)
    if shape.after:
        criteria.append(_after(shape.sort))
    page = (
        sa.select(*_NOTE_COLUMNS, score.label("score"))
        .select_from(source)
        .where(*criteria)
        .order_by(*_order(shape.sort, score))
        .limit(sa.literal_column(str(int(shape.limit)), sa.Integer))
    )
    if shape.offset:
        page = page.offset(sa.bindparam("offset", type_=sa.Integer))
    subquery = page.subquery("page")
    return (
        sa.select(subquery, note_tags.c.tag)
        .select_from(subquery.outerjoin(note_tags, note_tags.c.note_id == subquery.c.id))
        .order_by(*_order(shape.sort, subquery.c.score, subquery), note_tags.c.position)
    )


def _search_value(dialect: str, text: str) -> tuple[str, str] | None:
    """Return the bind parameter of a search and its value, or None when it has no words."""
    if dialect == "sqlite":
        match = search.fts5_query(text)
        return ("fts_query", match) if match is not None else None
    if dialect == "postgresql":
        words = search.tsquery_words(text)
        return ("ts_words", words) if words is not None else None
    boolean = search.mysql_boolean_query(text)
    return ("ft_query", boolean) if boolean is not None else None


def _search_clauses(
    dialect: str,
) -> tuple[sa.FromClause, sa.ColumnElement[bool], sa.ColumnElement[Any]]:
    """Return (source, condition, score) of a search of the words ``_search_value`` binds."""
    if dialect == "sqlite":
        fts: sa.ColumnElement[Any] = sa.literal_column("notes_fts")
        source = notes.join(notes_fts, notes_fts.c.rowid == notes.c.id)
        condition = fts.op("MATCH")(sa.bindparam("fts_query", type_=sa.String))
        # bm25() is lower for better matches; the score is higher for them.
        rank = -sa.func.bm25(fts, sa.literal_column(_TITLE_WEIGHT), sa.literal_column("1.0"))
        return source, condition, rank
    if dialect == "postgresql":
        config: sa.ColumnElement[Any] = sa.literal_column(f"'{PG_SEARCH_CONFIG}'::regconfig")
        tsquery = sa.func.plainto_tsquery(config, sa.bindparam("ts_words", type_=sa.String))
        vector = search_vector()
        return notes, vector.op("@@")(tsquery), sa.func.ts_rank(vector, tsquery)
    against = sa.bindparam("ft_query", type_=sa.String)
    matched = mysql.match(notes.c.title, notes.c.body, against=against).in_boolean_mode()
    in_title = mysql.match(notes.c.title, against=against).in_boolean_mode()
    weighted: sa.ColumnElement[Any] = sa.literal_column(_TITLE_WEIGHT) * in_title
    # MATCH ... AGAINST is true when it matches; bare in WHERE, it uses the FULLTEXT index.
    return notes, cast("sa.ColumnElement[bool]", matched), matched + weighted


def _session_ended() -> UnauthorizedError:
    return UnauthorizedError("the access token is not valid; log in again", invalid_token=True)


def _assemble(rows: Sequence[aiodatabases.Record]) -> list[NoteFields]:
    """Fold rows of (note columns..., tag), ordered by note then tag, into the fields of notes."""
    found: dict[int, NoteFields] = {}
    for row in rows:
        note_id = row["id"]
        note = found.get(note_id)
        if note is None:
            note = found[note_id] = {
                "id": note_id,
                "title": row["title"],
                "body": row["body"],
                "completed": row["completed"],
                "tags": [],
                "created_at": row["created_at"],
                "updated_at": row["updated_at"],
                "version": row["version"],
            }
        tag = row["tag"]
        if tag is not None:
            note["tags"].append(tag)
    return list(found.values())

"""Transactions: context manager, decorator, manual, savepoints, state errors, force_rollback."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import aiodatabases
from aiodatabases import Database, Transaction

from .helpers import Abort, count_from_outside, count_rows, expect_abort
from .tables import notes


def _note(text: str) -> dict[str, object]:
    return {"text": text, "completed": False}


async def test_transaction_block_commits_on_success(database: Database, database_url: str) -> None:
    """Leaving async with transaction() normally commits: another connection sees the row."""
    async with database.transaction():
        await database.execute(notes.insert(), _note("kept"))
    assert await count_from_outside(database_url, notes) == 1


async def test_transaction_block_rolls_back_on_error(database: Database, database_url: str) -> None:
    """An exception in the block rolls back its writes and propagates unchanged."""
    with expect_abort():
        async with database.transaction():
            await database.execute(notes.insert(), _note("lost"))
            assert await count_rows(database, notes) == 1
            raise Abort
    assert await count_rows(database, notes) == 0
    assert await count_from_outside(database_url, notes) == 0


async def test_plain_queries_in_a_transaction_block_join_it(database: Database) -> None:
    """database.execute and fetch_* inside the block run in the transaction of this task."""
    with expect_abort():
        async with database.transaction():
            await database.execute(notes.insert(), _note("a"))
            await database.execute_many(notes.insert(), [_note("b"), _note("c")])
            assert await count_rows(database, notes) == 3
            raise Abort
    assert await count_rows(database, notes) == 0


async def test_transaction_context_manager_yields_the_transaction(
    database: Database, database_url: str
) -> None:
    """async with database.transaction() as tx gives the Transaction, committed at exit."""
    async with database.transaction() as transaction:
        assert isinstance(transaction, Transaction)
        await database.execute(notes.insert(), _note("kept"))
    assert await count_from_outside(database_url, notes) == 1


async def test_transaction_with_force_rollback_always_rolls_back(database: Database) -> None:
    """transaction(force_rollback=True) rolls back even when the block succeeds."""
    async with database.transaction(force_rollback=True):
        await database.execute(notes.insert(), _note("temporary"))
        assert await count_rows(database, notes) == 1
    assert await count_rows(database, notes) == 0


async def test_decorated_function_commits_on_success(database: Database, database_url: str) -> None:
    """A function decorated with @database.transaction() commits when it returns."""

    @database.transaction()
    async def add_two() -> str:
        await database.execute(notes.insert(), _note("one"))
        await database.execute(notes.insert(), _note("two"))
        return "done"

    assert await add_two() == "done"
    assert await count_from_outside(database_url, notes) == 2


async def test_decorated_function_rolls_back_on_error(database: Database) -> None:
    """A decorated function that raises leaves no writes behind."""

    @database.transaction()
    async def add_then_fail() -> None:
        await database.execute(notes.insert(), _note("one"))
        raise Abort

    with expect_abort():
        await add_then_fail()
    assert await count_rows(database, notes) == 0


async def test_decorated_function_can_be_called_many_times(database: Database) -> None:
    """Each call of a decorated function runs its own transaction, including after a failure."""

    @database.transaction()
    async def add(text: str, fail: bool = False) -> None:
        await database.execute(notes.insert(), _note(text))
        if fail:
            raise Abort

    await add("first")
    with expect_abort():
        await add("second", fail=True)
    await add("third")
    rows = await database.fetch_all(notes.select().order_by(notes.c.id))
    assert [row.text for row in rows] == ["first", "third"]


@pytest.mark.timeout(30)
async def test_decorated_function_called_concurrently_runs_separate_transactions(
    database: Database,
) -> None:
    """Concurrent calls of one decorated function (as in a web app) each commit or roll back."""

    @database.transaction()
    async def add(number: int) -> None:
        await database.execute(notes.insert(), _note(f"n{number}"))
        await asyncio.sleep(0.01)
        if number % 2:
            raise Abort

    results = await asyncio.gather(*(add(n) for n in range(10)), return_exceptions=True)
    assert [type(result) for result in results] == [type(None), Abort] * 5
    rows = await database.fetch_all(notes.select().order_by(notes.c.text))
    assert [row.text for row in rows] == ["n0", "n2", "n4", "n6", "n8"]


def test_decorator_keeps_the_function_name_and_signature() -> None:
    """The decorator wraps with functools.wraps, so FastAPI still sees the parameters."""
    database = Database("sqlite:///:memory:")

    @database.transaction()
    async def handler(note_id: int, text: str = "x") -> None:
        """Handle a note."""

    assert handler.__name__ == "handler"
    assert handler.__doc__ == "Handle a note."
    assert list(inspect.signature(handler).parameters) == ["note_id", "text"]


async def test_manual_transaction_commit(database: Database, database_url: str) -> None:
    """tx = await database.transaction(); ...; await tx.commit() persists the writes."""
    transaction = await database.transaction()
    await database.execute(notes.insert(), _note("manual"))
    await transaction.commit()
    assert await count_from_outside(database_url, notes) == 1


async def test_manual_transaction_rollback(database: Database) -> None:
    """tx = await database.transaction(); ...; await tx.rollback() discards the writes."""
    transaction = await database.transaction()
    await database.execute(notes.insert(), _note("manual"))
    await transaction.rollback()
    assert await count_rows(database, notes) == 0


async def test_manual_transaction_with_explicit_start(database: Database) -> None:
    """transaction() then await tx.start() begins the transaction; rollback undoes it."""
    transaction = database.transaction()
    await transaction.start()
    await database.execute(notes.insert(), _note("manual"))
    await transaction.rollback()
    assert await count_rows(database, notes) == 0


async def test_nested_transaction_rollback_undoes_only_the_inner_block(
    database: Database, database_url: str
) -> None:
    """A failing nested block (a savepoint) undoes its own writes; the outer one commits."""
    async with database.transaction():
        await database.execute(notes.insert(), _note("outer"))
        with expect_abort():
            async with database.transaction():
                await database.execute(notes.insert(), _note("inner"))
                assert await count_rows(database, notes) == 2
                raise Abort
        assert await count_rows(database, notes) == 1
        await database.execute(notes.insert(), _note("outer again"))
    rows = await database.fetch_all(notes.select().order_by(notes.c.id))
    assert [row.text for row in rows] == ["outer", "outer again"]
    assert await count_from_outside(database_url, notes) == 2


async def test_outer_rollback_undoes_a_committed_inner_block(database: Database) -> None:
    """Writes of a committed savepoint still disappear when the outer transaction rolls back."""
    with expect_abort():
        async with database.transaction():
            async with database.transaction():
                await database.execute(notes.insert(), _note("inner"))
            assert await count_rows(database, notes) == 1
            raise Abort
    assert await count_rows(database, notes) == 0


async def test_three_levels_of_savepoints(database: Database) -> None:
    """Rolling back the middle level undoes it and the level inside it, not the outer."""
    async with database.transaction():
        await database.execute(notes.insert(), _note("level 1"))
        middle = await database.transaction()
        await database.execute(notes.insert(), _note("level 2"))
        async with database.transaction():
            await database.execute(notes.insert(), _note("level 3"))
        await middle.rollback()
        await database.execute(notes.insert(), _note("level 1 again"))
    rows = await database.fetch_all(notes.select().order_by(notes.c.id))
    assert [row.text for row in rows] == ["level 1", "level 1 again"]


async def test_connection_transaction(database: Database) -> None:
    """Connection.transaction() works like Database.transaction() on that connection."""
    async with database.connection() as connection:
        with expect_abort():
            async with connection.transaction():
                await connection.execute(notes.insert(), _note("lost"))
                raise Abort
        async with connection.transaction():
            await connection.execute(notes.insert(), _note("kept"))
    rows = await database.fetch_all(notes.select())
    assert [row.text for row in rows] == ["kept"]


@pytest.mark.parametrize(
    "isolation", ["serializable", "repeatable_read", "read_committed", "read_uncommitted"]
)
async def test_isolation_option_works(
    database: Database, database_url: str, isolation: str
) -> None:
    """transaction(isolation=...) runs and commits on this backend for each standard level."""
    async with database.transaction(isolation=isolation):
        await database.execute(notes.insert(), _note("serial"))
        assert await count_rows(database, notes) == 1
    assert await count_from_outside(database_url, notes) == 1


async def test_unknown_isolation_level_raises_interface_error(database: Database) -> None:
    """An isolation level no backend knows is a clear usage error naming the value."""
    with pytest.raises(aiodatabases.InterfaceError, match="no_such_level"):
        async with database.transaction(isolation="no_such_level"):
            await database.execute(notes.insert(), _note("never"))
    assert await count_rows(database, notes) == 0


async def test_commit_after_rollback_raises_transaction_state_error(database: Database) -> None:
    """commit() of a rolled-back transaction raises TransactionStateError naming commit."""
    transaction = await database.transaction()
    await transaction.rollback()
    with pytest.raises(aiodatabases.TransactionStateError, match="commit"):
        await transaction.commit()


async def test_rollback_after_commit_raises_transaction_state_error(database: Database) -> None:
    """rollback() of a committed transaction raises TransactionStateError naming rollback."""
    transaction = await database.transaction()
    await transaction.commit()
    with pytest.raises(aiodatabases.TransactionStateError, match="rollback"):
        await transaction.rollback()


async def test_commit_twice_raises_transaction_state_error(database: Database) -> None:
    """A second commit() raises TransactionStateError, an InterfaceError."""
    transaction = await database.transaction()
    await transaction.commit()
    with pytest.raises(aiodatabases.TransactionStateError) as info:
        await transaction.commit()
    assert isinstance(info.value, aiodatabases.InterfaceError)


async def test_commit_before_start_raises_transaction_state_error(database: Database) -> None:
    """commit() of a transaction that was never started raises TransactionStateError."""
    transaction = database.transaction()
    with pytest.raises(aiodatabases.TransactionStateError):
        await transaction.commit()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("end", ["commit", "rollback"])
async def test_ending_outer_transaction_while_inner_is_open_raises_transaction_state_error(
    database: Database, database_url: str, end: str
) -> None:
    """Committing or rolling back the outer transaction before the inner one is refused."""
    outer = await database.transaction()
    await database.execute(notes.insert(), _note("outer"))
    inner = await database.transaction()
    await database.execute(notes.insert(), _note("inner"))
    with pytest.raises(aiodatabases.TransactionStateError, match=end):
        await getattr(outer, end)()
    assert await count_rows(database, notes) == 2
    await inner.commit()
    await outer.commit()
    assert await count_from_outside(database_url, notes) == 2


@pytest.mark.timeout(30)
async def test_commit_from_a_child_task_raises_transaction_state_error(
    database: Database,
) -> None:
    """A transaction is owned by its task: a task it spawned cannot commit it."""
    transaction = await database.transaction()
    await database.execute(notes.insert(), _note("owned"))
    with pytest.raises(aiodatabases.TransactionStateError, match="commit"):
        await asyncio.create_task(transaction.commit())
    assert await count_rows(database, notes) == 1
    await transaction.rollback()
    assert await count_rows(database, notes) == 0


@pytest.mark.timeout(30)
async def test_rollback_from_a_sibling_task_raises_transaction_state_error(
    database: Database,
) -> None:
    """A task that did not open the transaction cannot roll it back; the owner still can."""
    handed_over: asyncio.Future[Transaction] = asyncio.get_running_loop().create_future()

    async def sibling() -> None:
        transaction = await handed_over
        await transaction.rollback()

    sibling_task = asyncio.create_task(sibling())
    transaction = await database.transaction()
    await database.execute(notes.insert(), _note("owned"))
    handed_over.set_result(transaction)
    with pytest.raises(aiodatabases.TransactionStateError, match="rollback"):
        await sibling_task
    await transaction.commit()
    assert await count_rows(database, notes) == 1


async def test_force_rollback_database_discards_everything_at_disconnect(
    database: Database, database_url: str
) -> None:
    """Database(url, force_rollback=True) sees its own writes; after disconnect they are gone."""
    isolated = Database(database_url, force_rollback=True)
    await isolated.connect()
    await isolated.execute(notes.insert(), _note("test data"))
    async with isolated.transaction():
        await isolated.execute(notes.insert(), _note("committed savepoint"))
    assert await count_rows(isolated, notes) == 2
    await isolated.disconnect()
    assert await count_rows(database, notes) == 0


async def test_force_rollback_context_manager_applies_until_exit(
    database: Database, database_url: str
) -> None:
    """with database.force_rollback(): the connect/disconnect inside roll back; after, not."""
    other = Database(database_url)
    with other.force_rollback():
        await other.connect()
        await other.execute(notes.insert(), _note("rolled back"))
        assert await count_rows(other, notes) == 1
        await other.disconnect()
    assert await count_rows(database, notes) == 0
    async with other:
        await other.execute(notes.insert(), _note("kept"))
    assert await count_rows(database, notes) == 1


@pytest.mark.timeout(30)
async def test_force_rollback_tasks_share_one_connection(
    database: Database, database_url: str
) -> None:
    """Under force_rollback, concurrent tasks run on the one connection and see each other."""
    async with Database(database_url, force_rollback=True) as isolated:

        async def raw_connection_of_task() -> object:
            async with isolated.connection() as connection:
                return connection.raw_connection

        raws = await asyncio.gather(*(raw_connection_of_task() for _ in range(3)))
        assert raws[0] is raws[1] is raws[2]
        await asyncio.gather(*(isolated.execute(notes.insert(), _note(f"t{i}")) for i in range(20)))
        counts = await asyncio.gather(*(count_rows(isolated, notes) for _ in range(20)))
        assert counts == [20] * 20
    assert await count_rows(database, notes) == 0


async def test_force_rollback_inner_transaction_rollback_is_a_savepoint(
    database: Database, database_url: str
) -> None:
    """Under force_rollback, a failing transaction block undoes only its own writes."""
    async with Database(database_url, force_rollback=True) as isolated:
        await isolated.execute(notes.insert(), _note("kept for now"))
        with expect_abort():
            async with isolated.transaction():
                await isolated.execute(notes.insert(), _note("undone"))
                raise Abort
        rows = await isolated.fetch_all(notes.select())
        assert [row.text for row in rows] == ["kept for now"]
    assert await count_rows(database, notes) == 0

"""Incidents induced for real on a LocalPostgres: held pools, lock chains, long and slow queries.

The demo and the tests use these same functions. Each returns a handle that knows the pids it
created and undoes the incident on `close()` (or at the end of a `with` block).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from .postgres import LocalPostgres


@dataclass(frozen=True)
class Pool:
    """An application's connection pool: `size` sessions, the first `in_transaction` left idle in a transaction."""

    application: str
    user: str
    size: int
    in_transaction: int = 0


# 17 sessions: every ordinary slot of a server with max_connections 20 and 3 reserved for superusers.
DEMO_POOLS = (
    Pool("deal-service", "deal_service", 7, in_transaction=2),
    Pool("customer-service", "customer_service", 5),
    Pool("tax-service", "tax_service", 3, in_transaction=1),
    Pool("email-worker", "email_worker", 2),
)


@dataclass
class Held:
    """Sessions held open by application name; closing them ends the incident."""

    sessions: dict[str, list[psycopg.Connection]] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    undo: list[Callable[[], None]] = field(default_factory=list)  # run first on close, last added first
    _pids: dict[str, list[int]] = field(default_factory=dict)

    def add(self, application: str, conn: psycopg.Connection) -> None:
        self.sessions.setdefault(application, []).append(conn)
        self._pids.setdefault(application, []).append(conn.info.backend_pid)

    def pids(self, application: str | None = None) -> list[int]:
        """The server pids of the sessions (of one application), also after close()."""
        return [pid for app, pids in self._pids.items() if application in (None, app) for pid in pids]

    def close(self) -> None:
        for step in reversed(self.undo):
            step()
        for conns in self.sessions.values():
            for conn in conns:
                conn.close()
        for thread in self.threads:
            thread.join(timeout=10)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def hold_pools(pg: LocalPostgres, pools=DEMO_POOLS) -> Held:
    """Open every pool's sessions; each ran one query, some are left idle in transaction."""
    held = Held()
    for pool in pools:
        for i in range(pool.size):
            in_transaction = i < pool.in_transaction
            conn = psycopg.connect(pg.dsn(pool.user, application_name=pool.application), autocommit=not in_transaction)
            conn.execute("SELECT count(*) FROM deals WHERE status = %s", ("open",))
            held.add(pool.application, conn)
    return held


def blocking_chain(pg: LocalPostgres) -> Held:
    """`deal-service` updates deal 1 and sits idle in transaction; `customer-service` waits to update
    the same row, and `reporting` waits behind both to lock it. Root blocker: deal-service."""
    held = Held()
    holder = psycopg.connect(pg.dsn("deal_service", application_name="deal-service"))
    holder.execute("UPDATE deals SET status = 'won' WHERE id = %s", (1,))
    held.add("deal-service", holder)
    _in_thread(held, pg, "customer_service", "customer-service", "UPDATE deals SET status = 'lost' WHERE id = 1")
    _wait_until_blocked(pg, 1)
    _in_thread(held, pg, "reporting", "reporting", "SELECT id FROM deals WHERE id = 1 FOR UPDATE")
    _wait_until_blocked(pg, 2)
    return held


def shared_lock_holders(pg: LocalPostgres) -> Held:
    """`deal-service` and `tax-service` both hold SHARE locks on dealers (idle in transaction); `migration` waits
    for an EXCLUSIVE lock, and `reporting` queues behind it (FOR UPDATE): one lock, two holders, two roots."""
    held = Held()
    for user, application in (("deal_service", "deal-service"), ("tax_service", "tax-service")):
        holder = psycopg.connect(pg.dsn(user, application_name=application))
        holder.execute("LOCK TABLE dealers IN SHARE MODE")
        held.add(application, holder)
    _in_thread(held, pg, "customer_service", "migration", "BEGIN; LOCK TABLE dealers IN EXCLUSIVE MODE; COMMIT")
    _wait_until_blocked(pg, 1)
    _in_thread(held, pg, "reporting", "reporting", "SELECT id FROM dealers WHERE id = 1 FOR UPDATE")
    _wait_until_blocked(pg, 2)
    return held


def prepared_transaction_blocking(pg: LocalPostgres, gid: str = "xa-deal-7") -> Held:
    """A two-phase transaction of deal_service updated deal 7 and was prepared (PREPARE TRANSACTION `gid`), so no
    session holds its lock any more; `customer-service` waits to update the same row. Closing rolls it back."""
    held = Held()
    with psycopg.connect(pg.dsn("deal_service")) as prepared:
        prepared.execute("UPDATE deals SET status = 'won' WHERE id = 7")
        prepared.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(gid)))

    def rollback() -> None:
        with pg.connect() as admin:
            if admin.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", (gid,)).fetchone():
                admin.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))

    held.undo.append(rollback)
    _in_thread(held, pg, "customer_service", "customer-service", "UPDATE deals SET status = 'lost' WHERE id = 7")
    _wait_until_blocked(pg, 1)
    return held


PARALLEL_SAFE_SLOW = """
    CREATE OR REPLACE FUNCTION slow_true(int) RETURNS boolean
    LANGUAGE plpgsql PARALLEL SAFE AS $$ BEGIN PERFORM pg_sleep(0.002); RETURN true; END $$
"""
PARALLEL_SETTINGS = (
    "SET parallel_setup_cost = 0",
    "SET parallel_tuple_cost = 0",
    "SET min_parallel_table_scan_size = 0",
    "SET max_parallel_workers_per_gather = 2",
    "SET parallel_leader_participation = off",
)


def parallel_query_blocking(pg: LocalPostgres) -> Held:
    """`parallel-report` scans deals with two parallel workers, each holding its own lock on the table; `migration`
    waits for ACCESS EXCLUSIVE on deals. PostgreSQL names the leader for every worker's lock."""
    held = Held()
    with pg.connect() as admin:
        admin.execute(PARALLEL_SAFE_SLOW)
    leader = psycopg.connect(pg.dsn(application_name="parallel-report"), autocommit=True)
    for setting in PARALLEL_SETTINGS:
        leader.execute(setting)
    held.add("parallel-report", leader)

    def stop() -> None:
        with pg.connect() as admin:
            admin.execute("SELECT pg_cancel_backend(%s)", (leader.info.backend_pid,))
        for thread in held.threads:
            thread.join(timeout=10)
        with pg.connect() as admin:
            admin.execute("DROP FUNCTION IF EXISTS slow_true(int)")

    held.undo.append(stop)
    _run_in_thread(held, "parallel-report", leader, "SELECT count(*) FROM deals WHERE slow_true(id)")
    _wait_until(pg, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'", (), 2)
    _in_thread(held, pg, "customer_service", "migration", "BEGIN; LOCK TABLE deals IN ACCESS EXCLUSIVE MODE; COMMIT")
    _wait_until_blocked(pg, 1)
    return held


def long_query(pg: LocalPostgres, seconds: float, application: str = "reporting") -> Held:
    """One `reporting` session running pg_sleep for `seconds` (a cancel shows up in `errors`)."""
    held = Held()
    _in_thread(held, pg, "reporting", application, "SELECT pg_sleep(%s)", (seconds,))
    _wait_until(
        pg, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'", (application,), 1
    )
    return held


SLOW_STATEMENT = "SELECT pg_sleep(%s), sum(amount) FROM deals WHERE customer_id = %s"


def run_slow_statements(pg: LocalPostgres, times: int = 5, sleep_seconds: float = 0.05) -> None:
    """Make pg_stat_statements see a slow statement `times` times (a sequential scan of deals)."""
    with pg.connect("reporting", application_name="reporting") as conn:
        for customer in range(times):
            conn.execute(SLOW_STATEMENT, (sleep_seconds, customer))


def _in_thread(held: Held, pg: LocalPostgres, user: str, application: str, query: str, params: tuple = ()) -> None:
    conn = psycopg.connect(pg.dsn(user, application_name=application), autocommit=True)
    held.add(application, conn)
    _run_in_thread(held, application, conn, query, params)


def _run_in_thread(held: Held, application: str, conn: psycopg.Connection, query: str, params: tuple = ()) -> None:
    def run() -> None:
        try:
            conn.execute(query, params)
        except psycopg.Error as e:  # cancelled or terminated: the test looks at it
            held.errors.append(e)

    thread = threading.Thread(target=run, name=f"{application}-query", daemon=True)
    thread.start()
    held.threads.append(thread)


def _wait_until_blocked(pg: LocalPostgres, count: int) -> None:
    _wait_until(pg, "SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0", (), count)


def _wait_until(pg: LocalPostgres, sql: str, params: tuple, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with pg.connect("postgres") as conn:
        while (conn.execute(sql, params).fetchone() or (0,))[0] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the induced incident did not appear: {sql}")
            time.sleep(0.05)

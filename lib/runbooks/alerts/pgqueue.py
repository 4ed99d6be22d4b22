"""The queue several `runbook serve` replicas share: the rows of queue.py in a PostgreSQL table.

Each replica commits the alerts it receives before answering Alertmanager (one transaction per notification, the
same unique key), and its workers claim the oldest claimable row with `FOR UPDATE SKIP LOCKED`: two claimers never
get the same row, and neither waits for the other. A claim takes a lease (`lease` seconds, no heartbeat): a row is
claimable when it is queued, or running under a lease that has expired, which is how the run of a replica that
died is taken over. A live replica never outlives its lease: a run has a hard time limit (runbooks.limits) and the
lease is that limit plus the time to write evidence (`runbook serve --lease`, checked at start). Each claim counts
an attempt; `started`, `release` and `finish` act only for the attempt that holds the row (its number is the
fencing token), so a slow replica whose lease expired cannot overwrite its successor. As in queue.py, a claim also
takes the alerts of the same incident queued for the first time for the same run (a storm): one run answers them.

Why not a job-queue library: the alert row is more than a job (it is the record that an alert was seen, whatever
became of it, with its own unique key, and what `/runs` lists), and the libraries that fit PostgreSQL take over
more than the queue: procrastinate and pgqueuer run their own worker loops and find stalled jobs through worker
heartbeats; pgmq needs a server extension; pq has no leases. What is needed is one table, three statements and a
lease, which `FOR UPDATE SKIP LOCKED` gives.

The connection string's password is a secret like any other (runbooks.redact): taken out before the string is
shown or logged, given to libpq as a connection argument, never to a kernel.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import redact
from .queue import GROUP_LIMIT, Entry, Job, Unusable, replica

TABLE_LOCK = 7_237_423_110  # pg_advisory_xact_lock key: one replica creates the table at a time
LEADER_LOCK = 7_237_423_111  # pg_try_advisory_lock key: the replica that escalates
CONNECT_SECONDS = 10
STATEMENT_TIMEOUT_MS = 30_000

SCHEMA = """
    CREATE TABLE IF NOT EXISTS runbook_alerts (
        id          bigserial PRIMARY KEY,
        fingerprint text NOT NULL,
        starts_at   text NOT NULL,
        status      text NOT NULL,
        state       text NOT NULL,
        alertname   text NOT NULL,
        incident    text NOT NULL,
        runbook     text,
        parameters  jsonb NOT NULL,
        alert       jsonb NOT NULL,
        reason      text,
        evidence    text,
        attempts    integer NOT NULL DEFAULT 0,
        files       text,
        owner       text,
        lease_until timestamptz,
        received_at timestamptz NOT NULL DEFAULT now(),
        started_at  timestamptz,
        finished_at timestamptz,
        UNIQUE (fingerprint, starts_at, status)
    );
    CREATE INDEX IF NOT EXISTS runbook_alerts_to_run ON runbook_alerts (id) WHERE state IN ('queued', 'running')
"""
ADD = """
    INSERT INTO runbook_alerts (fingerprint, starts_at, status, state, alertname, incident, runbook, parameters,
                                alert, reason)
    VALUES (%(fingerprint)s, %(starts_at)s, %(status)s, %(state)s, %(alertname)s, %(incident)s, %(runbook)s,
            %(parameters)s, %(alert)s, %(reason)s)
    ON CONFLICT (fingerprint, starts_at, status) DO NOTHING
"""
CLAIM = """
    WITH next AS (
        SELECT id
        FROM runbook_alerts
        WHERE state = 'queued' OR (state = 'running' AND lease_until < now())
        ORDER BY id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE runbook_alerts AS a
    SET state = 'running', attempts = a.attempts + 1, owner = %(owner)s, started_at = now(),
        lease_until = now() + make_interval(secs => %(lease)s)
    FROM next
    WHERE a.id = next.id
    RETURNING a.id, a.runbook, a.incident, a.parameters, a.alert, a.attempts, a.files
"""
CLAIM_ALIKE = """
    WITH alike AS (
        SELECT id
        FROM runbook_alerts
        WHERE state = 'queued' AND attempts = 0 AND incident = %(incident)s AND runbook = %(runbook)s
          AND parameters = %(parameters)s
        ORDER BY id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE runbook_alerts AS a
    SET state = 'running', attempts = a.attempts + 1, owner = %(owner)s, started_at = now(),
        lease_until = now() + make_interval(secs => %(lease)s)
    FROM alike
    WHERE a.id = alike.id
    RETURNING a.id, a.runbook, a.incident, a.parameters, a.alert, a.attempts, a.files
"""
STARTED = """
    UPDATE runbook_alerts
    SET files = %(files)s
    WHERE id = %(id)s AND attempts = %(attempts)s AND state = 'running'
"""
RELEASE = """
    UPDATE runbook_alerts
    SET state = 'queued', lease_until = NULL
    WHERE id = %(id)s AND attempts = %(attempts)s AND state = 'running'
"""
FINISH = """
    UPDATE runbook_alerts
    SET state = %(state)s, evidence = %(evidence)s, reason = %(reason)s, finished_at = now(), lease_until = NULL
    WHERE id = %(id)s AND attempts = %(attempts)s AND state = 'running'
"""
_UTC = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
RECENT_RUNS = f"""
    SELECT id, alertname, fingerprint, starts_at, runbook, incident, state AS status, parameters, evidence, reason,
           attempts, owner AS replica, files, {_UTC.format("received_at")} AS received_at,
           {_UTC.format("started_at")} AS started_at, {_UTC.format("finished_at")} AS finished_at
    FROM runbook_alerts
    WHERE runbook IS NOT NULL AND state IN ('queued', 'running', 'completed', 'failed')
    ORDER BY id DESC
    LIMIT %(limit)s
"""
DEPTH = "SELECT state, count(*) FROM runbook_alerts WHERE state IN ('queued', 'running') GROUP BY state"


class PgQueue:
    """The queue in the PostgreSQL database `dsn` names (table runbook_alerts, created if missing)."""

    errors: tuple[type[Exception], ...] = (psycopg.Error, PoolTimeout)

    def __init__(self, dsn: str, lease: float, connections: int = 8):
        """Connect and create the table if missing; Unusable (exit 4), in one line, when the server cannot be used
        within CONNECT_SECONDS."""
        conninfo, password = redact.split_password(dsn)
        self._conninfo = conninfo
        self.where = redact.redact_dsn(dsn)
        self.secrets: tuple[str, ...] = (password,) if password else ()
        self.lease, self.owner = lease, replica()
        self._arguments: dict[str, Any] = {
            "connect_timeout": CONNECT_SECONDS,
            "application_name": "runbook serve",
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            **({"password": password} if password else {}),
        }
        self._pool = ConnectionPool(
            conninfo,
            kwargs=self._arguments,
            min_size=1,
            max_size=connections,
            open=False,
            timeout=CONNECT_SECONDS * 3,
            check=ConnectionPool.check_connection,
            name="runbook-queue",
        )
        self._leader: psycopg.Connection | None = None
        try:
            self._pool.open(wait=True, timeout=CONNECT_SECONDS)
            with self._transaction() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (TABLE_LOCK,))
                conn.execute(SCHEMA)
        except (psycopg.Error, PoolTimeout) as e:
            self._pool.close()
            raise Unusable(f"the queue {self.where} cannot be used: {self.describe(e)}") from None

    def describe(self, error: Exception) -> str:
        """The error in one line, the password scrubbed."""
        return redact.text(" ".join(str(error).split()) or type(error).__name__, self.secrets)

    def add(self, entries: list[Entry]) -> list[bool]:
        with self._transaction() as conn:
            return [conn.execute(ADD, _row(e)).rowcount == 1 for e in entries]

    def recover(self) -> int:
        """Nothing to do at start: the rows of a replica that died are taken over when their lease expires."""
        return 0

    def claim(self) -> Job | None:
        """The oldest claimable alert, with the alerts of its incident queued for the first time for the same run
        (same runbook, same parameters), all under this attempt's lease; None when nothing waits."""
        claimer = {"owner": self.owner, "lease": self.lease}
        with self._transaction() as conn:
            row = conn.execute(CLAIM, claimer).fetchone()
            if row is None:
                return None
            job = Job(*row)
            run = {"incident": job.incident, "runbook": job.runbook, "parameters": Jsonb(job.parameters)}
            alike = conn.execute(CLAIM_ALIKE, {**run, "limit": GROUP_LIMIT, **claimer}).fetchall()
        return job.answering(Job(*other) for other in alike)

    def started(self, job: Job, files: str) -> bool:
        return self._update(STARTED, job, files=files)

    def release(self, job: Job) -> bool:
        return self._update(RELEASE, job)

    def finish(self, job: Job, state: str, evidence: str | None, reason: str | None) -> bool:
        return self._update(FINISH, job, state=state, evidence=evidence, reason=reason)

    def recent_runs(self, limit: int) -> list[dict[str, Any]]:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(RECENT_RUNS, {"limit": limit}).fetchall()  # the pooled connection keeps tuple rows

    def depth(self) -> dict[str, int]:
        with self._pool.connection() as conn:
            counts: dict[str, int] = dict(conn.execute(DEPTH).fetchall())
        return {state: counts.get(state, 0) for state in ("queued", "running")}

    def lead(self) -> bool:
        """Whether this replica holds the leader's advisory lock (taken if free): it alone escalates. The lock is
        the session's: when this replica dies, its connection ends and another replica takes the lead."""
        try:
            if self._leader is not None and not self._leader.closed:
                self._leader.execute("SELECT 1")
                return True
            self._leader = None
            conn = psycopg.connect(self._conninfo, autocommit=True, **self._arguments)
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone() == (True,):
                self._leader = conn
                return True
            conn.close()
        except psycopg.Error:
            self._leader = None
        return False

    @contextlib.contextmanager
    def incident_lock(self, name: str) -> Iterator[None]:
        """One holder at a time across replicas for the incident `name` (its chain is written under it): a
        transaction-level advisory lock, waited for up to the statement timeout."""
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            yield

    def fatal(self, error: Exception) -> bool:
        """Nothing is fatal at once: a server away is waited for (and given up on after the workers' limit)."""
        return False

    def close(self) -> None:
        if self._leader is not None:
            self._leader.close()
        self._pool.close()

    def _update(self, statement: str, job: Job, **values: Any) -> bool:
        with self._transaction() as conn:
            return conn.execute(statement, {"id": job.id, "attempts": job.attempts, **values}).rowcount == 1

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn


def _row(entry: Entry) -> dict[str, Any]:
    return {**asdict(entry), "parameters": Jsonb(entry.parameters), "alert": Jsonb(entry.alert)}


def is_dsn(text: str) -> bool:
    """Whether `--queue` names a PostgreSQL database (a postgresql:// URI, or key=value pairs) rather than an SQLite
    file."""
    return text.startswith(("postgresql://", "postgres://")) or bool(re.match(r"\s*[a-z_]+\s*=", text))

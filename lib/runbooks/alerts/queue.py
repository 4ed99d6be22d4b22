"""The durable queue: one row per alert received (fingerprint + startsAt + status), committed before
Alertmanager gets its answer. This module: the queue of one `runbook serve`, an SQLite file (the default);
pgqueue.py: the queue several replicas share, in PostgreSQL. Both keep the same rows and answer the same calls.

Firing alerts with a route go queued -> running -> completed | failed; the others are kept as
unrouted, rejected or resolved, so a re-sent alert is recognised whatever became of it. Each claim counts an
attempt and names the claimer; the run then records the stem of its files (`started`), so whoever claims the
alert again after that run was cut short knows which files were its (runbooks.alerts.workers settles them: the
evidence written before the stop counts, a partial notebook becomes failed evidence). `finish` and `started`
take effect only for the attempt that holds the row, so a run taken over can never overwrite its successor.
A service killed mid-run leaves rows `running`: here `recover()` queues them again at the next start (one
process owns the file); in PostgreSQL another replica takes them over once their lease has expired. Completed
rows never run again; an alert claimed more than MAX_ATTEMPTS times fails. Here a claim also takes every other
alert of the incident queued for the same runbook with the same parameters (a storm: one outage, many alerts asking
for the same diagnosis, up to GROUP_LIMIT): one run answers them all, and each row gets its evidence (`Job.alike`;
the PostgreSQL queue runs each alert on its own).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
import sqlite3
from collections.abc import Iterable
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import UsageError

MAX_ATTEMPTS = 3
BUSY_TIMEOUT_SECONDS = 30.0  # how long a call waits for another connection's lock before it fails
MOVE_ASIDE = (
    "Move it aside and start again: runs it still held are lost (their evidence stays in the incident folders), "
    "new alerts queue in a new file"
)
RUN_STATES = ("queued", "running", "completed", "failed")

SCHEMA = """
    CREATE TABLE IF NOT EXISTS alerts (
        id          INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        starts_at   TEXT NOT NULL,
        status      TEXT NOT NULL,   -- firing | resolved, as Alertmanager sent it
        state       TEXT NOT NULL,   -- queued | running | completed | failed | unrouted | rejected | resolved
        alertname   TEXT NOT NULL,
        incident    TEXT NOT NULL,
        runbook     TEXT,
        parameters  TEXT NOT NULL,   -- JSON: the parameters taken from the alert, checked
        alert       TEXT NOT NULL,   -- JSON: what the evidence records under "alert"
        reason      TEXT,            -- why it was rejected or failed
        evidence    TEXT,            -- path of the run's evidence file
        attempts    INTEGER NOT NULL DEFAULT 0,
        files       TEXT,            -- the stem of the files of the run of the latest attempt
        owner       TEXT,            -- the replica (host:pid) that claimed it last
        received_at TEXT NOT NULL,
        started_at  TEXT,
        finished_at TEXT,
        UNIQUE (fingerprint, starts_at, status)
    )
"""
ADD = """
    INSERT INTO alerts (fingerprint, starts_at, status, state, alertname, incident, runbook, parameters, alert,
                        reason, received_at)
    VALUES (:fingerprint, :starts_at, :status, :state, :alertname, :incident, :runbook, :parameters, :alert,
            :reason, :received_at)
    ON CONFLICT (fingerprint, starts_at, status) DO NOTHING
"""
COLUMNS = (("files", "TEXT"), ("owner", "TEXT"))  # added since the first queue files: added to those
REQUEUE = "UPDATE alerts SET state = 'queued' WHERE state = 'running'"
NEXT = "SELECT id FROM alerts WHERE state = 'queued' ORDER BY id LIMIT 1"
CLAIM = """
    UPDATE alerts
    SET state = 'running', attempts = attempts + 1, owner = :owner, started_at = :now
    WHERE id = :id
    RETURNING id, runbook, incident, parameters, alert, attempts, files
"""
CLAIM_ALIKE = """
    UPDATE alerts
    SET state = 'running', attempts = attempts + 1, owner = :owner, started_at = :now
    WHERE id IN (
        SELECT id FROM alerts
        WHERE state = 'queued' AND incident = :incident AND runbook = :runbook AND parameters = :parameters
          AND attempts = 0
        ORDER BY id
        LIMIT :limit
    )
    RETURNING id, runbook, incident, parameters, alert, attempts, files
"""
GROUP_LIMIT = 1000  # alerts one run answers at most
STARTED = "UPDATE alerts SET files = :files WHERE id = :id AND attempts = :attempts AND state = 'running'"
RELEASE = "UPDATE alerts SET state = 'queued' WHERE id = :id AND attempts = :attempts AND state = 'running'"
FINISH = """
    UPDATE alerts
    SET state = :state, evidence = :evidence, reason = :reason, finished_at = :now
    WHERE id = :id AND attempts = :attempts AND state = 'running'
"""
RECENT_RUNS = """
    SELECT id, alertname, fingerprint, starts_at, runbook, incident, state AS status, parameters, evidence, reason,
           attempts, owner AS replica, files, received_at, started_at, finished_at
    FROM alerts
    WHERE runbook IS NOT NULL AND state IN ('queued', 'running', 'completed', 'failed')
    ORDER BY id DESC
    LIMIT :limit
"""
DEPTH = "SELECT state, count(*) FROM alerts WHERE state IN ('queued', 'running') GROUP BY state"


@dataclass(frozen=True)
class Entry:
    """One alert as received, and what became of it."""

    fingerprint: str
    starts_at: str
    status: str
    state: str
    alertname: str
    incident: str
    runbook: str | None
    parameters: dict[str, Any]
    alert: dict[str, Any]
    reason: str | None = None


@dataclass(frozen=True)
class Job:
    id: int
    runbook: str
    incident: str
    parameters: dict[str, Any]
    alert: dict[str, Any]
    attempts: int = 1  # this claim's number: the attempt that holds the row
    files: str | None = None  # the stem of the files of the attempt before this one, if it got that far
    alike: tuple[Job, ...] = ()  # the alerts of its incident waiting for the same run: this run answers them too

    @property
    def retried(self) -> bool:
        """Claimed before: an earlier attempt was cut short (its replica died or stopped)."""
        return self.attempts > 1

    def answering(self, alike: Iterable[Job]) -> Job:
        """This job, its run answering the `alike` jobs claimed with it too (in the order they were queued)."""
        return dataclasses.replace(self, alike=tuple(sorted(alike, key=lambda job: job.id)))


def replica() -> str:
    """This process, as the queue names who claimed a row: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class AlertQueue(Protocol):
    """What the service and its workers ask of a queue: this module's Queue, or pgqueue.PgQueue."""

    errors: tuple[type[Exception], ...]  # what a call raises when the queue fails (retried with backoff)
    where: str  # the file, or the connection string without its password: for messages
    secrets: tuple[str, ...]  # scrubbed from messages

    def add(self, entries: list[Entry]) -> list[bool]: ...
    def recover(self) -> int: ...
    def claim(self) -> Job | None: ...
    def started(self, job: Job, files: str) -> bool: ...
    def release(self, job: Job) -> bool: ...
    def finish(self, job: Job, state: str, evidence: str | None, reason: str | None) -> bool: ...
    def recent_runs(self, limit: int) -> list[dict[str, Any]]: ...
    def depth(self) -> dict[str, int]: ...
    def lead(self) -> bool: ...
    def fatal(self, error: Exception) -> bool: ...
    def describe(self, error: Exception) -> str: ...
    def close(self) -> None: ...


class Unusable(UsageError):
    """The queue file cannot be opened as the queue (not a database, damaged, not writable). Exit 4."""

    exit_code = 4


class Queue:
    """The SQLite queue of one `runbook serve`."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)  # what a call raises when the queue fails (retried)

    def __init__(self, path: Path):
        """The queue at `path`, created if missing; Unusable, in one line, when the file there is not one."""
        self.path = path
        self.where = str(path)
        self.secrets: tuple[str, ...] = ()
        self.owner = replica()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connection() as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(SCHEMA)
                have = {row[1] for row in conn.execute("PRAGMA table_info(alerts)")}
                for column, kind in COLUMNS:
                    if column not in have:
                        conn.execute(f"ALTER TABLE alerts ADD COLUMN {column} {kind}")  # names from COLUMNS only
                damage = [row for (row,) in conn.execute("PRAGMA quick_check") if row != "ok"]
        except sqlite3.Error as e:
            raise Unusable(f"the queue {path} cannot be used: {e}. {MOVE_ASIDE}") from None
        if damage:
            raise Unusable(f"the queue {path} is damaged ({'; '.join(damage[:3])}). {MOVE_ASIDE}")

    def add(self, entries: list[Entry]) -> list[bool]:
        """Record the entries in one transaction; for each, False when that alert was already there."""
        now = _now()
        with self._transaction() as conn:
            return [conn.execute(ADD, {**_row(e), "received_at": now}).rowcount == 1 for e in entries]

    def recover(self) -> int:
        """At start: the runs the last stop cut short (rows left `running`: this process owns the file) are queued
        again, each to be settled and run by the worker that claims it; how many."""
        with self._transaction() as conn:
            return conn.execute(REQUEUE).rowcount

    def claim(self) -> Job | None:
        """The oldest queued alert, now marked running by this attempt, with the alerts of its incident queued for
        the first time for the same run (same runbook, same parameters); None when nothing waits."""
        now = _now()
        with self._transaction() as conn:
            row = conn.execute(NEXT).fetchone()
            claimed = row and conn.execute(CLAIM, {"id": row[0], "owner": self.owner, "now": now}).fetchone()
            if not claimed:
                return None
            id_, runbook, incident, parameters, alert, attempts, files = claimed
            values = {"incident": incident, "runbook": runbook, "parameters": parameters, "limit": GROUP_LIMIT}
            alike = conn.execute(CLAIM_ALIKE, {**values, "owner": self.owner, "now": now}).fetchall()
        job = Job(id_, runbook, incident, json.loads(parameters), json.loads(alert), attempts, files)
        return job.answering(Job(i, b, n, json.loads(p), json.loads(a), t, f) for i, b, n, p, a, t, f in alike)

    def started(self, job: Job, files: str) -> bool:
        """Record the stem of the files the job's run writes; False when the job no longer holds its row."""
        with self._transaction() as conn:
            return conn.execute(STARTED, {"id": job.id, "attempts": job.attempts, "files": files}).rowcount == 1

    def release(self, job: Job) -> bool:
        """Queue the job again (its run was ended by a stop): the next claim settles and runs it."""
        with self._transaction() as conn:
            return conn.execute(RELEASE, {"id": job.id, "attempts": job.attempts}).rowcount == 1

    def finish(self, job: Job, state: str, evidence: str | None, reason: str | None) -> bool:
        """Record how the job ended; False (nothing written) when another attempt holds the row now."""
        values = {"id": job.id, "attempts": job.attempts, "state": state, "evidence": evidence, "reason": reason}
        with self._transaction() as conn:
            return conn.execute(FINISH, {**values, "now": _now()}).rowcount == 1

    def lead(self) -> bool:
        """Whether this replica does the work only one may do (escalations): the only one, here."""
        return True

    def fatal(self, error: Exception) -> bool:
        """An error no retry mends: the file is no database, or is damaged."""
        return isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError)

    def describe(self, error: Exception) -> str:
        return str(error)

    def close(self) -> None:
        """Nothing held between calls."""

    def recent_runs(self, limit: int) -> list[dict[str, Any]]:
        with self._connection() as conn:
            conn.row_factory = sqlite3.Row
            rows = [dict(r) for r in conn.execute(RECENT_RUNS, {"limit": limit})]
        return [{**r, "parameters": json.loads(r["parameters"])} for r in rows]

    def depth(self) -> dict[str, int]:
        """How many alerts are queued and running."""
        with self._connection() as conn:
            counts = dict(conn.execute(DEPTH).fetchall())
        return {state: counts.get(state, 0) for state in ("queued", "running")}

    @contextmanager
    def _connection(self):
        """A connection of its own for each call: the HTTP side and every worker thread use the queue."""
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)) as conn:
            conn.execute("PRAGMA synchronous = FULL")  # committed means on disk, before the answer
            yield conn

    @contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE takes the write lock at once: two workers never claim the same row."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _row(entry: Entry) -> dict[str, Any]:
    return {
        "fingerprint": entry.fingerprint,
        "starts_at": entry.starts_at,
        "status": entry.status,
        "state": entry.state,
        "alertname": entry.alertname,
        "incident": entry.incident,
        "runbook": entry.runbook,
        "parameters": json.dumps(entry.parameters),
        "alert": json.dumps(entry.alert),
        "reason": entry.reason,
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

"""The durable queue: one SQLite row per alert received (fingerprint + startsAt + status), committed
before Alertmanager gets its answer.

Firing alerts with a route go queued -> running -> completed | failed; the others are kept as
unrouted, rejected or resolved, so a re-sent alert is recognised whatever became of it. A service
killed mid-run leaves rows `running`: `recover()` queues them again unless they have already been tried
MAX_ATTEMPTS times (the workers first finish those whose evidence was written before the stop). Completed
rows never run again.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
GIVE_UP = """
    UPDATE alerts
    SET state = 'failed', reason = 'interrupted ' || attempts || ' times', finished_at = :now
    WHERE state = 'running' AND attempts >= :max_attempts
"""
REQUEUE = "UPDATE alerts SET state = 'queued' WHERE state = 'running'"
NEXT = "SELECT id FROM alerts WHERE state = 'queued' ORDER BY id LIMIT 1"
RUNNING = "SELECT id, runbook, incident, parameters, alert FROM alerts WHERE state = 'running' ORDER BY id"
CLAIM = """
    UPDATE alerts
    SET state = 'running', attempts = attempts + 1, started_at = :now
    WHERE id = :id
    RETURNING id, runbook, incident, parameters, alert
"""
FINISH = """
    UPDATE alerts
    SET state = :state, evidence = :evidence, reason = :reason, finished_at = :now
    WHERE id = :id
"""
RECENT_RUNS = """
    SELECT id, alertname, fingerprint, starts_at, runbook, incident, state AS status, parameters, evidence, reason,
           attempts, received_at, started_at, finished_at
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


class Unusable(UsageError):
    """The queue file cannot be opened as the queue (not a database, damaged, not writable). Exit 4."""

    exit_code = 4


class Queue:
    def __init__(self, path: Path):
        """The queue at `path`, created if missing; Unusable, in one line, when the file there is not one."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connection() as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(SCHEMA)
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
        """After a restart: runs cut short are queued again (or failed after MAX_ATTEMPTS); how many."""
        with self._transaction() as conn:
            conn.execute(GIVE_UP, {"now": _now(), "max_attempts": MAX_ATTEMPTS})
            return conn.execute(REQUEUE).rowcount

    def running(self) -> list[Job]:
        """The runs marked running: after a restart, those the last stop cut short."""
        with self._connection() as conn:
            rows = conn.execute(RUNNING).fetchall()
        return [
            Job(id_, runbook, incident, json.loads(parameters), json.loads(alert))
            for id_, runbook, incident, parameters, alert in rows
        ]

    def claim(self) -> Job | None:
        """The oldest queued alert, now marked running; None when nothing waits."""
        with self._transaction() as conn:
            row = conn.execute(NEXT).fetchone()
            claimed = row and conn.execute(CLAIM, {"id": row[0], "now": _now()}).fetchone()
        if not claimed:
            return None
        id_, runbook, incident, parameters, alert = claimed
        return Job(id_, runbook, incident, json.loads(parameters), json.loads(alert))

    def finish(self, id_: int, state: str, evidence: str | None, reason: str | None) -> None:
        with self._transaction() as conn:
            conn.execute(FINISH, {"id": id_, "state": state, "evidence": evidence, "reason": reason, "now": _now()})

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

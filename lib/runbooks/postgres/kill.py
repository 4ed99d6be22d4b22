"""The only statements that change anything: terminating idle sessions and cancelling queries.

Killing lives apart from looking. Each signal is sent per pid, and only if the session still
matches what was shown (still idle / still running past the threshold, never the runbook's own
session, never a background or replication process). Without `apply` nothing is sent and every
target is reported as a dry-run action.
"""

from __future__ import annotations

import pandas as pd
import psycopg

from ..evidence import Action
from .connections import IDLE_STATES
from .session import fetch_one

TERMINATE_IDLE = """
    SELECT pg_terminate_backend(pid) AS signalled
    FROM pg_stat_activity
    WHERE pid = %(pid)s
      AND pid <> pg_backend_pid()
      AND backend_type = 'client backend'
      AND state = ANY(%(states)s)
      AND state_change < now() - make_interval(secs => %(seconds)s)
"""

CANCEL_ACTIVE = """
    SELECT pg_cancel_backend(pid) AS signalled
    FROM pg_stat_activity
    WHERE pid = %(pid)s
      AND pid <> pg_backend_pid()
      AND backend_type = 'client backend'
      AND state = 'active'
      AND query_start < now() - make_interval(secs => %(seconds)s)
"""


def terminate_idle(conn: psycopg.Connection, idle: pd.DataFrame, idle_minutes: float, apply: bool) -> list[Action]:
    """pg_terminate_backend for each session in `idle` (from connections.idle_sessions)."""
    params = {"states": list(IDLE_STATES), "seconds": idle_minutes * 60}
    return [
        _signal(
            conn,
            TERMINATE_IDLE,
            "terminate-idle-session",
            "pg_terminate_backend",
            row,
            params,
            apply,
            f"{row.state} for {row.idle_for.total_seconds():.0f} s",
        )
        for row in idle.itertuples()
    ]


def cancel_long_running(
    conn: psycopg.Connection, running: pd.DataFrame, longer_than_seconds: float | None, apply: bool
) -> list[Action]:
    """pg_cancel_backend for active queries in `running` that have run longer than the threshold."""
    if longer_than_seconds is None:
        return []
    targets = running[(running["state"] == "active") & (running["duration"].dt.total_seconds() > longer_than_seconds)]
    params = {"seconds": longer_than_seconds}
    return [
        _signal(
            conn,
            CANCEL_ACTIVE,
            "cancel-query",
            "pg_cancel_backend",
            row,
            params,
            apply,
            f"running for {row.duration.total_seconds():.0f} s",
        )
        for row in targets.itertuples()
    ]


def _signal(conn, sql: str, action: str, function: str, row, params: dict, apply: bool, why: str) -> Action:
    target = f"pid {row.pid} ({row.application}, user {row.user}, {why})"
    if not apply:
        return Action(action, "dry-run", target, f"would call {function}({row.pid})")
    try:
        outcome = fetch_one(conn, sql, {**params, "pid": int(row.pid)})
    except psycopg.Error as e:
        return Action(action, "applied", target, f"failed: {' '.join(str(e).split())}")
    if outcome is None:
        return Action(action, "applied", target, "skipped: the session no longer matches (gone, busy or changed)")
    return Action(action, "applied", target, "done" if outcome["signalled"] else f"{function} returned false")

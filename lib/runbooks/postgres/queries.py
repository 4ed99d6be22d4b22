"""Queries: what runs long, who blocks whom, which statements are slow on average, which tables are read by
sequential scans."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import psycopg

from .. import escape
from .session import fetch_frame

SEQ_SCAN_MIN_ROWS = 1000  # smaller tables are cheap to scan; no index hint below this

# The incident-response runbook's running-queries check, with a threshold and without the runbook's own session.
LONG_RUNNING = """
    SELECT
      pid,
      coalesce(nullif(application_name, ''), '(none)') AS application,
      usename AS user,
      state,
      wait_event_type,
      wait_event,
      now() - query_start AS duration,
      left(query, 500) AS query
    FROM pg_stat_activity
    WHERE state <> 'idle'
      AND backend_type = 'client backend'
      AND pid <> pg_backend_pid()
      AND query_start < now() - make_interval(secs => %(min_duration_seconds)s)
    ORDER BY duration DESC
    LIMIT %(limit)s
"""

# One row per (blocked, blocker) pair; from https://wiki.postgresql.org/wiki/Lock_Monitoring,
# using pg_blocking_pids() (9.6+) instead of joining pg_locks by hand.
BLOCKING = """
    SELECT
      blocked.pid AS blocked_pid,
      coalesce(nullif(blocked.application_name, ''), '(none)') AS blocked_application,
      now() - blocked.query_start AS blocked_for,
      left(blocked.query, 300) AS blocked_query,
      blocker.pid AS blocking_pid,
      coalesce(nullif(blocker.application_name, ''), '(none)') AS blocking_application,
      blocker.state AS blocking_state,
      now() - blocker.xact_start AS blocking_transaction_age,
      left(blocker.query, 300) AS blocking_query
    FROM pg_stat_activity AS blocked
    CROSS JOIN LATERAL unnest(pg_blocking_pids(blocked.pid)) AS b(pid)
    JOIN pg_stat_activity AS blocker ON blocker.pid = b.pid
    ORDER BY blocked_for DESC
"""

# Which pg_stat_statements this is: mean_exec_time since 13, mean_time before.
STATEMENTS_COLUMNS = """
    SELECT attname
    FROM pg_attribute
    WHERE attrelid = to_regclass('pg_stat_statements')
      AND attname IN ('mean_exec_time', 'mean_time')
"""

# The incident-response runbook's pg_stat_statements query (PostgreSQL 13+ column names).
TOP_STATEMENTS = """
    SELECT
      d.datname AS database,
      s.calls,
      s.mean_exec_time AS mean_ms,
      s.total_exec_time AS total_ms,
      s.rows,
      left(s.query, 500) AS query
    FROM pg_stat_statements AS s
    LEFT JOIN pg_database AS d ON d.oid = s.dbid
    ORDER BY s.mean_exec_time DESC
    LIMIT %(limit)s
"""

# The same before PostgreSQL 13, where the columns were mean_time / total_time.
TOP_STATEMENTS_PRE13 = """
    SELECT
      d.datname AS database,
      s.calls,
      s.mean_time AS mean_ms,
      s.total_time AS total_ms,
      s.rows,
      left(s.query, 500) AS query
    FROM pg_stat_statements AS s
    LEFT JOIN pg_database AS d ON d.oid = s.dbid
    ORDER BY s.mean_time DESC
    LIMIT %(limit)s
"""

SEQ_SCANS = """
    SELECT
      schemaname AS schema,
      relname AS table,
      seq_scan,
      seq_tup_read,
      coalesce(idx_scan, 0) AS idx_scan,
      n_live_tup AS live_rows,
      seq_tup_read / nullif(seq_scan, 0) AS rows_per_seq_scan
    FROM pg_stat_user_tables
    WHERE seq_scan > 0
    ORDER BY seq_tup_read DESC
    LIMIT %(limit)s
"""

ENABLE_STATEMENTS = (
    "pg_stat_statements is not available here, so the slowest statements cannot be listed. "
    "To enable it: add pg_stat_statements to shared_preload_libraries in postgresql.conf, restart "
    "PostgreSQL, then run CREATE EXTENSION pg_stat_statements; in this database."
)


@dataclass(frozen=True)
class TopStatements:
    frame: pd.DataFrame | None  # None when pg_stat_statements is unavailable
    note: str | None = None

    def _repr_html_(self) -> str:
        if self.frame is None:
            return f'<p class="{escape.NO_MATH}"><b>Note:</b> {escape.html(self.note)}</p>'
        return self.frame.to_html()


def long_running(conn: psycopg.Connection, min_duration_seconds: float, limit: int) -> pd.DataFrame:
    return fetch_frame(conn, LONG_RUNNING, {"min_duration_seconds": min_duration_seconds, "limit": limit})


def blocking(conn: psycopg.Connection) -> pd.DataFrame:
    """Who blocks whom, with the root blocker of each blocked session (the end of its chain)."""
    edges = fetch_frame(conn, BLOCKING)
    blockers = edges.groupby("blocked_pid")["blocking_pid"].apply(list).to_dict()
    edges["root_blocker_pid"] = [_root(pid, blockers) for pid in edges["blocked_pid"]]
    return edges


def root_blockers(chains: pd.DataFrame) -> pd.DataFrame:
    """One row per root blocker: what it is doing and how many sessions wait behind it."""
    columns = ["pid", "application", "state", "transaction_age", "query", "sessions_blocked"]
    if chains.empty:
        return pd.DataFrame(columns=columns)
    roots = chains[chains["blocking_pid"] == chains["root_blocker_pid"]].drop_duplicates("blocking_pid")
    waiting = chains.groupby("root_blocker_pid")["blocked_pid"].nunique()
    return pd.DataFrame(
        {
            "pid": roots["blocking_pid"].to_numpy(),
            "application": roots["blocking_application"].to_numpy(),
            "state": roots["blocking_state"].to_numpy(),
            "transaction_age": roots["blocking_transaction_age"].to_numpy(),
            "query": roots["blocking_query"].to_numpy(),
            "sessions_blocked": waiting.reindex(roots["blocking_pid"]).to_numpy(),
        }
    ).sort_values("sessions_blocked", ascending=False, ignore_index=True)


def top_statements(conn: psycopg.Connection, limit: int) -> TopStatements:
    columns = set(fetch_frame(conn, STATEMENTS_COLUMNS)["attname"])
    if not columns:
        return TopStatements(None, ENABLE_STATEMENTS)
    sql = TOP_STATEMENTS if "mean_exec_time" in columns else TOP_STATEMENTS_PRE13
    try:
        return TopStatements(fetch_frame(conn, sql, {"limit": limit}))
    except psycopg.errors.ObjectNotInPrerequisiteState as e:  # created but not preloaded
        return TopStatements(None, f"{ENABLE_STATEMENTS} (server says: {str(e).strip()})")


def seq_scans(conn: psycopg.Connection, limit: int) -> pd.DataFrame:
    """Tables by rows read sequentially; `index_hint` marks large ones read mostly without an index."""
    frame = fetch_frame(conn, SEQ_SCANS, {"limit": limit})
    frame["index_hint"] = (frame["live_rows"] >= SEQ_SCAN_MIN_ROWS) & (frame["seq_scan"] > frame["idx_scan"])
    return frame


def _root(pid: int, blockers: dict[int, list[int]]) -> int:
    """Follow the first blocker until a session that nothing blocks (or a cycle: a deadlock)."""
    seen = {pid}
    while pid in blockers:
        nxt = blockers[pid][0]
        if nxt in seen:
            return nxt
        seen.add(nxt)
        pid = nxt
    return pid

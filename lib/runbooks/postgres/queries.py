"""Queries: what runs long, who blocks whom, which statements are slow on average, which tables are read by
sequential scans."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import pandas as pd
import psycopg

from .. import display, escape, units
from .session import fetch_frame, fetch_one

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

# One row per (blocked, blocker) pair; from https://wiki.postgresql.org/wiki/Lock_Monitoring, using
# pg_blocking_pids() (9.6+) instead of joining pg_locks by hand. Its documented edge cases: a lock held by a
# prepared transaction shows as pid 0 (the LEFT JOIN keeps it: no session has that pid), and a parallel query
# shows as its leader, possibly several times (DISTINCT). A parallel worker waiting for a lock is its leader's
# wait, already listed under the leader: workers are not listed as blocked sessions of their own.
BLOCKING = """
    SELECT DISTINCT ON (blocked.pid, b.pid)
      blocked.pid AS blocked_pid,
      coalesce(nullif(blocked.application_name, ''), '(none)') AS blocked_application,
      now() - blocked.query_start AS blocked_for,
      left(blocked.query, 300) AS blocked_query,
      b.pid AS blocking_pid,
      coalesce(nullif(blocker.application_name, ''), '(none)') AS blocking_application,
      blocker.state AS blocking_state,
      now() - blocker.xact_start AS blocking_transaction_age,
      left(blocker.query, 300) AS blocking_query
    FROM pg_stat_activity AS blocked
    CROSS JOIN LATERAL unnest(pg_blocking_pids(blocked.pid)) AS b(pid)
    LEFT JOIN pg_stat_activity AS blocker ON blocker.pid = b.pid
    WHERE blocked.backend_type IS DISTINCT FROM 'parallel worker'
    ORDER BY blocked.pid, b.pid
"""

# Which prepared transactions (PREPARE TRANSACTION, two-phase commit) hold a lock a session waits for: in
# pg_locks a lock held by one has no pid; its locks share a virtual transaction, among them the exclusive lock
# on its own transaction id, which names it in pg_prepared_xacts.
PREPARED_BLOCKERS = """
    SELECT DISTINCT
      waiting.pid AS blocked_pid,
      p.gid,
      p.owner,
      p.database,
      p.prepared,
      now() - p.prepared AS age
    FROM pg_locks AS waiting
    JOIN pg_locks AS held
      ON held.granted
     AND held.pid IS NULL
     AND held.locktype = waiting.locktype
     AND held.database IS NOT DISTINCT FROM waiting.database
     AND held.relation IS NOT DISTINCT FROM waiting.relation
     AND held.page IS NOT DISTINCT FROM waiting.page
     AND held.tuple IS NOT DISTINCT FROM waiting.tuple
     AND held.virtualxid IS NOT DISTINCT FROM waiting.virtualxid
     AND held.transactionid IS NOT DISTINCT FROM waiting.transactionid
     AND held.classid IS NOT DISTINCT FROM waiting.classid
     AND held.objid IS NOT DISTINCT FROM waiting.objid
     AND held.objsubid IS NOT DISTINCT FROM waiting.objsubid
    JOIN pg_locks AS own
      ON own.virtualtransaction = held.virtualtransaction
     AND own.pid IS NULL
     AND own.locktype = 'transactionid'
     AND own.mode = 'ExclusiveLock'
    JOIN pg_prepared_xacts AS p ON p.transaction = own.transactionid
    WHERE NOT waiting.granted
"""

# Which pg_stat_statements this is: mean_exec_time since 13, mean_time before.
STATEMENTS_COLUMNS = """
    SELECT attname
    FROM pg_attribute
    WHERE attrelid = to_regclass('pg_stat_statements')
      AND attname IN ('mean_exec_time', 'mean_time')
"""

# The incident-response runbook's pg_stat_statements query (PostgreSQL 13+ column names), ranked by total time:
# the counters are cumulative since the last reset, so a statement slow on average but rarely run (or slow last
# week) would otherwise outrank what loads the server now.
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
    ORDER BY s.total_exec_time DESC
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
    ORDER BY s.total_time DESC
    LIMIT %(limit)s
"""

# Since when pg_stat_statements counts (PostgreSQL 14+: pg_stat_statements_info); NULL before.
STATEMENTS_RESET = """
    SELECT CASE WHEN to_regclass('pg_stat_statements_info') IS NOT NULL
                THEN (SELECT stats_reset FROM pg_stat_statements_info) END AS stats_reset
"""

# Every statement's counters now, for a difference between two snapshots (PostgreSQL 13+).
STATEMENTS_SNAPSHOT = """
    SELECT
      s.userid,
      s.dbid,
      s.queryid,
      d.datname AS database,
      s.calls,
      s.total_exec_time AS total_ms,
      s.rows,
      left(s.query, 500) AS query
    FROM pg_stat_statements AS s
    LEFT JOIN pg_database AS d ON d.oid = s.dbid
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
    stats_reset: dt.datetime | None = None  # since when the counters count (PostgreSQL 14+)
    sampled_seconds: float | None = None  # set for a difference of two snapshots: the calls during that interval

    @property
    def counted(self) -> str:
        """Over what time the numbers are: the sample, or since the last reset."""
        if self.sampled_seconds is not None:
            return f"during the last {self.sampled_seconds:g} s"
        if self.stats_reset is None:
            return "since pg_stat_statements was last reset (when: unknown before PostgreSQL 14)"
        return f"since pg_stat_statements was last reset, {units.when(self.stats_reset)}"

    def _repr_html_(self) -> str:
        if self.frame is None:
            return f'<p class="{escape.NO_MATH}"><b>Note:</b> {escape.html(self.note or "")}</p>'
        return f'<p class="{escape.NO_MATH}">Counted {escape.html(self.counted)}.</p>' + display.frame_html(self.frame)


def long_running(conn: psycopg.Connection, min_duration_seconds: float, limit: int) -> pd.DataFrame:
    running = fetch_frame(conn, LONG_RUNNING, {"min_duration_seconds": min_duration_seconds, "limit": limit})
    return display.table(running, empty=f"No query has run longer than {min_duration_seconds:g} s: nothing to cancel.")


def blocking(conn: psycopg.Connection) -> pd.DataFrame:
    """Who blocks whom: one row per (blocked, blocker) pair, with every root blocker of the blocked session.

    A blocker is a session (`blocking_pid`) or a prepared transaction (`blocking_pid` 0, named by
    `blocking_gid`); `blocker` names either. `root_blockers` lists the ends of every chain the blocked session
    waits in: a lock can have several holders (shared locks), and each of them is a root.
    """
    edges = fetch_frame(conn, BLOCKING)
    edges = _name_prepared(conn, edges)
    edges["blocker"] = [
        _blocker(pid, gid) for pid, gid in zip(edges["blocking_pid"], edges["blocking_gid"], strict=True)
    ]
    graph = {int(k): list(v) for k, v in edges.groupby("blocked_pid")["blocker"]}
    edges["root_blockers"] = [_roots(int(pid), graph) for pid in edges["blocked_pid"]]
    return display.table(edges, empty="No session waits on a lock held by another.")


def root_blockers(chains: pd.DataFrame) -> pd.DataFrame:
    """One row per root blocker: what it is doing and how many distinct sessions wait behind it (each counted
    once however many chains lead it there). A prepared transaction shows as pid 0 with its gid."""
    columns = ["pid", "gid", "application", "state", "transaction_age", "query", "sessions_blocked"]
    if chains.empty:
        return display.table(pd.DataFrame(columns=columns), empty="Nothing blocks: no root blocker.")
    behind = chains[["blocked_pid", "root_blockers"]].explode("root_blockers")
    waiting = behind.groupby("root_blockers")["blocked_pid"].nunique()
    rows = chains.drop_duplicates("blocker").set_index("blocker")
    roots = [name for name in waiting.index if name in rows.index]
    frame = pd.DataFrame(
        [
            {
                "pid": int(rows.loc[name, "blocking_pid"]),
                "gid": rows.loc[name, "blocking_gid"],
                "application": rows.loc[name, "blocking_application"],
                "state": rows.loc[name, "blocking_state"],
                "transaction_age": rows.loc[name, "blocking_transaction_age"],
                "query": rows.loc[name, "blocking_query"],
                "sessions_blocked": int(waiting[name]),
            }
            for name in roots
        ],
        columns=columns,
    )
    return frame.sort_values(["sessions_blocked", "pid"], ascending=[False, True], ignore_index=True)


def top_statements(conn: psycopg.Connection, limit: int) -> TopStatements:
    """The statements with the most total execution time since pg_stat_statements was last reset."""
    columns = set(fetch_frame(conn, STATEMENTS_COLUMNS)["attname"])
    if not columns:
        return TopStatements(None, ENABLE_STATEMENTS)
    sql = TOP_STATEMENTS if "mean_exec_time" in columns else TOP_STATEMENTS_PRE13
    try:
        frame = fetch_frame(conn, sql, {"limit": limit})
    except psycopg.errors.ObjectNotInPrerequisiteState as e:  # created but not preloaded
        return TopStatements(None, f"{ENABLE_STATEMENTS} (server says: {str(e).strip()})")
    reset = fetch_one(conn, STATEMENTS_RESET)
    return TopStatements(frame, stats_reset=reset["stats_reset"] if reset else None)


def statements_during(conn: psycopg.Connection, seconds: float, limit: int) -> TopStatements:
    """What ran in the next `seconds`: two pg_stat_statements snapshots and their difference per statement,
    ranked by the time spent between them (`mean_ms` over the calls in between): slow right now, not slow
    since the last reset. PostgreSQL 13+ (`total_exec_time`)."""
    if seconds <= 0:
        return TopStatements(None, "not sampled (sample_seconds is 0): the ranking above counts since the last reset")
    columns = set(fetch_frame(conn, STATEMENTS_COLUMNS)["attname"])
    if "mean_exec_time" not in columns:
        return TopStatements(None, ENABLE_STATEMENTS if not columns else "sampling needs PostgreSQL 13 or later")
    try:
        before = fetch_frame(conn, STATEMENTS_SNAPSHOT)
        time.sleep(seconds)
        after = fetch_frame(conn, STATEMENTS_SNAPSHOT)
    except psycopg.errors.ObjectNotInPrerequisiteState as e:
        return TopStatements(None, f"{ENABLE_STATEMENTS} (server says: {str(e).strip()})")
    return TopStatements(difference(before, after).head(limit), sampled_seconds=seconds)


def difference(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Per statement (user, database, queryid), the calls, time and rows between two snapshots; a statement
    new in `after` (or reset in between) counts whole. Statements not called in between are left out."""
    key = ["userid", "dbid", "queryid"]
    after = after.groupby([*key, "database", "query"], as_index=False, dropna=False)[
        ["calls", "total_ms", "rows"]
    ].sum()
    before = before.groupby(key, as_index=False)[["calls", "total_ms", "rows"]].sum()
    merged = after.merge(before, on=key, how="left", suffixes=("", "_before"))
    for column in ("calls", "total_ms", "rows"):
        earlier = merged[f"{column}_before"].fillna(0)
        reset = merged["calls"] < merged["calls_before"].fillna(0)  # counters went back: reset in between
        merged[column] = merged[column] - earlier.where(~reset, 0)
    merged = merged[merged["calls"] > 0]
    merged["mean_ms"] = merged["total_ms"] / merged["calls"]
    columns = ["database", "calls", "mean_ms", "total_ms", "rows", "query"]
    return merged.sort_values("total_ms", ascending=False, ignore_index=True)[columns]


def seq_scans(conn: psycopg.Connection, limit: int) -> pd.DataFrame:
    """Tables by rows read sequentially; `index_hint` marks large ones read mostly without an index."""
    frame = fetch_frame(conn, SEQ_SCANS, {"limit": limit})
    frame["index_hint"] = (frame["live_rows"] >= SEQ_SCAN_MIN_ROWS) & (frame["seq_scan"] > frame["idx_scan"])
    return frame


def _name_prepared(conn: psycopg.Connection, edges: pd.DataFrame) -> pd.DataFrame:
    """Pid-0 blockers replaced by one row per prepared transaction holding a lock that session waits for."""
    edges = edges.assign(blocking_gid=None)
    if not (edges["blocking_pid"] == 0).any():
        return edges
    prepared = fetch_frame(conn, PREPARED_BLOCKERS)
    sessions, zero = edges[edges["blocking_pid"] != 0], edges[edges["blocking_pid"] == 0]
    named = zero.drop(columns="blocking_gid").merge(prepared, on="blocked_pid", how="left")
    named = named.assign(
        blocking_gid=named["gid"],
        blocking_application=[
            f"(prepared transaction {gid}, owner {owner})" if isinstance(gid, str) else "(prepared transaction)"
            for gid, owner in zip(named["gid"], named["owner"], strict=True)
        ],
        blocking_state="prepared",
        blocking_transaction_age=named["age"],
        blocking_query=[
            f"COMMIT PREPARED / ROLLBACK PREPARED '{gid}' ends it (prepared {units.when(when, seconds=True)})"
            if isinstance(gid, str)
            else None
            for gid, when in zip(named["gid"], named["prepared"], strict=True)
        ],
    )[edges.columns]
    return pd.concat([sessions, named], ignore_index=True)


def _blocker(pid: int, gid: str | None) -> str:
    return f"prepared {gid}" if pid == 0 else f"pid {pid}"


def _roots(pid: int, graph: dict[int, list[str]]) -> list[str]:
    """Every end of every chain `pid` waits in: the blockers it reaches that wait for nobody (in a pure cycle,
    a deadlock PostgreSQL is about to break, every blocker it reaches)."""
    reachable: set[str] = set()
    todo = list(graph.get(pid, []))
    while todo:
        blocker = todo.pop()
        if blocker in reachable:
            continue
        reachable.add(blocker)
        if blocker.startswith("pid "):
            todo.extend(graph.get(int(blocker[4:]), []))
    free = [b for b in reachable if not (b.startswith("pid ") and graph.get(int(b[4:])))]
    return sorted(free or reachable)

"""Connection pool exhaustion: limits, who holds the slots, which sessions sit idle.

Runbook section: Database Issues / Connection Pool Exhausted. Every count leaves out the
runbook's own session, so the diagnosis reads the same with or without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
import psycopg

from ..evidence import Finding
from .session import fetch_frame, fetch_one

IDLE_STATES = ("idle", "idle in transaction", "idle in transaction (aborted)")
NEAR_EXHAUSTION = 0.8  # share of the ordinary slots in use from which the pool counts as nearly exhausted

# reserved_connections (PostgreSQL 16+) reads as NULL on older servers.
LIMITS = """
    SELECT
      current_setting('max_connections')::int AS max_connections,
      current_setting('superuser_reserved_connections')::int AS superuser_reserved,
      coalesce(current_setting('reserved_connections', true)::int, 0) AS role_reserved,
      count(*) FILTER (WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) AS client_connections
    FROM pg_stat_activity
"""

# The seed's "connections by service", split by user and state.
BY_APPLICATION = """
    SELECT
      coalesce(nullif(application_name, ''), '(none)') AS application,
      usename AS user,
      coalesce(state, '(unknown)') AS state,
      count(*) AS connections
    FROM pg_stat_activity
    WHERE backend_type = 'client backend'
      AND pid <> pg_backend_pid()
    GROUP BY 1, 2, 3
    ORDER BY connections DESC, application, state
"""

IDLE_SESSIONS = """
    SELECT
      pid,
      coalesce(nullif(application_name, ''), '(none)') AS application,
      usename AS user,
      client_addr,
      state,
      now() - state_change AS idle_for,
      backend_start,
      left(query, 200) AS last_query
    FROM pg_stat_activity
    WHERE backend_type = 'client backend'
      AND pid <> pg_backend_pid()
      AND state = ANY(%(states)s)
      AND state_change < now() - make_interval(secs => %(idle_seconds)s)
    ORDER BY idle_for DESC
"""


@dataclass(frozen=True)
class PoolUsage:
    max_connections: int
    superuser_reserved: int
    role_reserved: int
    client_connections: int  # every client session but the runbook's own

    @property
    def ordinary_limit(self) -> int:
        """Slots open to ordinary roles; past this, only reserved roles get in."""
        return self.max_connections - self.superuser_reserved - self.role_reserved

    @property
    def utilisation(self) -> float:
        return self.client_connections / self.ordinary_limit if self.ordinary_limit else 1.0

    @property
    def status(self) -> str:
        if self.client_connections >= self.ordinary_limit:
            return "exhausted"
        return "near exhaustion" if self.utilisation >= NEAR_EXHAUSTION else "ok"

    def frame(self) -> pd.DataFrame:
        row = {**asdict(self), "ordinary_limit": self.ordinary_limit,
               "utilisation": f"{self.utilisation:.0%}", "status": self.status}
        return pd.DataFrame([row])


def pool_usage(conn: psycopg.Connection) -> PoolUsage:
    return PoolUsage(**fetch_one(conn, LIMITS))


def by_application(conn: psycopg.Connection) -> pd.DataFrame:
    return fetch_frame(conn, BY_APPLICATION)


def idle_sessions(conn: psycopg.Connection, idle_minutes: float) -> pd.DataFrame:
    """Idle and idle-in-transaction client sessions idle for longer than `idle_minutes`."""
    return fetch_frame(conn, IDLE_SESSIONS, {"states": list(IDLE_STATES), "idle_seconds": idle_minutes * 60})


def assess(usage: PoolUsage, connections: pd.DataFrame, idle: pd.DataFrame, idle_minutes: float) -> list[Finding]:
    per_app = connections.groupby("application")["connections"].sum().sort_values(ascending=False)
    idle_per_app = (
        connections[connections["state"].isin(IDLE_STATES)]
        .groupby("application")["connections"].sum().sort_values(ascending=False)
    )
    severity = {"exhausted": "critical", "near exhaustion": "warning", "ok": "info"}[usage.status]
    consequence = {
        "exhausted": "ordinary clients are refused (\"too many connections\")",
        "near exhaustion": f"{usage.ordinary_limit - usage.client_connections} ordinary slots left",
        "ok": "the pool has room",
    }[usage.status]
    findings = [
        Finding(
            "pool-usage",
            f"{usage.client_connections} of {usage.ordinary_limit} ordinary connection slots in use "
            f"({usage.utilisation:.0%}; max_connections {usage.max_connections}, "
            f"{usage.superuser_reserved} reserved for superusers): {consequence}",
            severity,
            {**asdict(usage), "ordinary_limit": usage.ordinary_limit, "status": usage.status},
        )
    ]
    if not per_app.empty:
        top, count = per_app.index[0], int(per_app.iloc[0])
        findings.append(Finding(
            "top-application",
            f"{top} holds the most connections: {count} of {usage.client_connections} "
            f"({count / max(usage.client_connections, 1):.0%})",
            "warning" if usage.status != "ok" else "info",
            {"application": top, "connections": count, "by_application": per_app.to_dict()},
        ))
    if not idle_per_app.empty:
        top, count = idle_per_app.index[0], int(idle_per_app.iloc[0])
        findings.append(Finding(
            "top-idle-application",
            f"{top} holds the most idle connections: {count}",
            "warning" if usage.status != "ok" else "info",
            {"application": top, "idle_connections": count, "by_application": idle_per_app.to_dict()},
        ))
    in_transaction = int((idle["state"] != "idle").sum()) if not idle.empty else 0
    findings.append(Finding(
        "stale-idle-sessions",
        f"{len(idle)} sessions idle for more than {idle_minutes:g} min "
        f"({in_transaction} of them idle in transaction)",
        "warning" if len(idle) else "info",
        {"pids": [int(p) for p in idle["pid"]], "idle_minutes": idle_minutes},
    ))
    return findings

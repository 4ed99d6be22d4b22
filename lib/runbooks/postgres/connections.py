"""Connections: the limits, who holds the slots, which sessions sit idle.

Every count leaves out the runbook's own session, so a diagnosis reads the same with or without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
import psycopg

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

# The incident-response runbook's "connections by service", split by user and state.
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
        row = {
            **asdict(self),
            "ordinary_limit": self.ordinary_limit,
            "utilisation": f"{self.utilisation:.0%}",
            "status": self.status,
        }
        return pd.DataFrame([row])


def pool_usage(conn: psycopg.Connection) -> PoolUsage:
    row = fetch_one(conn, LIMITS)
    assert row is not None, "an aggregate query returns one row"
    return PoolUsage(**row)


def by_application(conn: psycopg.Connection) -> pd.DataFrame:
    return fetch_frame(conn, BY_APPLICATION)


def idle_sessions(conn: psycopg.Connection, idle_minutes: float) -> pd.DataFrame:
    """Idle and idle-in-transaction client sessions idle for longer than `idle_minutes`."""
    return fetch_frame(conn, IDLE_SESSIONS, {"states": list(IDLE_STATES), "idle_seconds": idle_minutes * 60})

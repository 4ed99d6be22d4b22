"""Connections: the limits, who holds the slots, which sessions sit idle, and what this role cannot see.

Every count leaves out the runbook's own session, so a diagnosis reads the same with or without it.

A role that is neither superuser nor a member of pg_read_all_stats (nor of the session's own role) sees other
roles' sessions in pg_stat_activity with backend_type, state, query_start... as NULL and query as
'<insufficient privilege>'; user, database and application_name stay visible. Such a session is told apart from
a background process by having both a database and a user (autovacuum workers and the server's own processes
have no user). These hidden sessions hold slots like any other: they are counted as client sessions, listed by
application with state '(not visible)', and reported with the privilege that would show them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
import psycopg

from .. import display
from .session import fetch_frame, fetch_one

IDLE_STATES = ("idle", "idle in transaction", "idle in transaction (aborted)")
NEAR_EXHAUSTION = 0.8  # share of the ordinary slots in use from which the pool counts as nearly exhausted

READ_ALL_STATS = "pg_read_all_stats"

# reserved_connections (PostgreSQL 16+) reads as NULL on older servers.
LIMITS = """
    SELECT
      current_setting('max_connections')::int AS max_connections,
      current_setting('superuser_reserved_connections')::int AS superuser_reserved,
      coalesce(current_setting('reserved_connections', true)::int, 0) AS role_reserved,
      count(*) FILTER (
        WHERE pid <> pg_backend_pid()
          AND (backend_type = 'client backend' OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL))
      ) AS client_connections,
      count(*) FILTER (WHERE backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL) AS hidden_sessions,
      current_user AS role,
      pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS reads_all_stats
    FROM pg_stat_activity
"""

# The same visibility on its own, for runbooks that do not count the pool.
VISIBILITY = """
    SELECT
      current_user AS role,
      pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS reads_all_stats,
      count(*) FILTER (WHERE backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL) AS hidden_sessions
    FROM pg_stat_activity
"""

# The incident-response runbook's "connections by service", split by user and state.
BY_APPLICATION = """
    SELECT
      coalesce(nullif(application_name, ''), '(none)') AS application,
      usename AS user,
      coalesce(state, CASE WHEN backend_type IS NULL THEN '(not visible)' ELSE '(unknown)' END) AS state,
      count(*) AS connections
    FROM pg_stat_activity
    WHERE (backend_type = 'client backend' OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL))
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
class Visibility:
    """Whether this session's role sees every session's state, and how many it does not."""

    role: str
    reads_all_stats: bool  # superuser or member of pg_read_all_stats
    hidden_sessions: int  # other roles' sessions whose state, query and times read NULL

    @property
    def note(self) -> str | None:
        """What could not be seen and the privilege that would show it; None when everything is visible."""
        if not self.hidden_sessions:
            return None
        return (
            f"{self.hidden_sessions} sessions of other roles are not visible to role {self.role} (state, query and "
            f"times read NULL): it is neither superuser nor a member of {READ_ALL_STATS} "
            f"(GRANT {READ_ALL_STATS} TO {self.role})"
        )


@dataclass(frozen=True)
class PoolUsage:
    max_connections: int
    superuser_reserved: int
    role_reserved: int
    client_connections: int  # every client session but the runbook's own, those of other roles it cannot see included
    hidden_sessions: int = 0  # of those, other roles' sessions whose state this role cannot see
    role: str = ""
    reads_all_stats: bool = True

    @property
    def visibility(self) -> Visibility:
        return Visibility(self.role, self.reads_all_stats, self.hidden_sessions)

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
            **{k: v for k, v in asdict(self).items() if k not in ("role", "reads_all_stats")},
            "ordinary_limit": self.ordinary_limit,
            "utilisation": self.utilisation,
            "status": self.status,
        }
        return display.table(pd.DataFrame([row]), utilisation="percent")


def pool_usage(conn: psycopg.Connection) -> PoolUsage:
    row = fetch_one(conn, LIMITS)
    assert row is not None, "an aggregate query returns one row"
    return PoolUsage(**row)


def visibility(conn: psycopg.Connection) -> Visibility:
    row = fetch_one(conn, VISIBILITY)
    assert row is not None, "an aggregate query returns one row"
    return Visibility(**row)


def by_application(conn: psycopg.Connection) -> pd.DataFrame:
    return fetch_frame(conn, BY_APPLICATION)


def idle_sessions(conn: psycopg.Connection, idle_minutes: float) -> pd.DataFrame:
    """Idle and idle-in-transaction client sessions idle for longer than `idle_minutes`."""
    idle = fetch_frame(conn, IDLE_SESSIONS, {"states": list(IDLE_STATES), "idle_seconds": idle_minutes * 60})
    return display.table(
        idle, empty=f"No session idle longer than {idle_minutes:g} min: the resolution would end none."
    )

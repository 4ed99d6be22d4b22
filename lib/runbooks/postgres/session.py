"""The diagnostic session: read-only, named, time-boxed, so a runbook never worsens the incident.

Every query of every runbook goes through `fetch_frame` / `fetch_one` on a connection opened by
`connect`, so timeouts and read-only-ness are set in exactly one place.

Two layers, because a connection pooler may stand between us and the server:
- the startup `options` (`-c default_transaction_read_only=on -c statement_timeout=...`) set the session's
  defaults on a direct connection;
- every query runs in its own `BEGIN READ ONLY` transaction that first sets the statement and lock timeouts
  with `set_config(..., is_local => true)` (SET LOCAL).
PgBouncer refuses the `options` startup parameter ("unsupported startup parameter: options") or, listed in its
`ignore_startup_parameters`, drops it silently; in transaction pooling a session-level SET would stay on the
server connection and reach the next client (an application made read-only), and its limits would not follow
us to the next transaction. The second layer holds in every case: nothing is left on a pooled server
connection, and the limits are checked with SHOW once connected (`connect` refuses a session that is not
read-only or not time-boxed). Statements are never prepared server-side (a pooler in transaction mode would
lose them).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from ..errors import DatabaseUnreachable
from ..redact import redact_dsn

STATEMENT_TIMEOUT = "10s"
LOCK_TIMEOUT = "2s"
CONNECT_TIMEOUT_SECONDS = 10
SESSION_DEFAULTS = (
    ("default_transaction_read_only", "on"),
    ("statement_timeout", STATEMENT_TIMEOUT),
    ("lock_timeout", LOCK_TIMEOUT),
    ("idle_in_transaction_session_timeout", "60s"),
)
POOLER_REFUSES_OPTIONS = "unsupported startup parameter"  # PgBouncer's words for `options`

# The client's side of a connection that stops answering (a server's statement_timeout cannot end a wait for a
# server gone silent): TCP keepalives from 10 s of silence, 3 probes 5 s apart, and any data unacknowledged for
# 30 s ends the connection (TCP_USER_TIMEOUT). Unix sockets ignore them.
TCP = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
}

# The limits of one query's transaction (SET LOCAL): they end with it, on whatever server connection it ran.
LOCAL_LIMITS = """
    SELECT
      set_config('statement_timeout', %(statement_timeout)s, true),
      set_config('lock_timeout', %(lock_timeout)s, true)
"""
LIMITS_IN_FORCE = """
    SELECT
      current_setting('transaction_read_only') AS read_only,
      current_setting('statement_timeout') AS statement_timeout,
      current_setting('lock_timeout') AS lock_timeout
"""

# What libpq says when the server refuses for lack of slots, and what to do about it. PostgreSQL 16 names the
# reservation that applies; managed services add their own reserved roles (RDS: rds_reserved).
_REFUSALS = {
    "reserved for non-replication superuser": (
        "Every ordinary slot is taken; only superusers can still connect (superuser_reserved_connections). "
        "Run again with a superuser role in dsn (e.g. -p dsn 'user=autolytiq_admin ...')."
    ),
    "reserved for roles with the superuser attribute": (
        "Every ordinary slot is taken; only superusers can still connect (superuser_reserved_connections). "
        "Run again with a superuser role in dsn (e.g. -p dsn 'user=autolytiq_admin ...')."
    ),
    'reserved for roles with privileges of the "pg_use_reserved_connections" role': (
        "Every ordinary slot is taken; PostgreSQL 16+ keeps reserved_connections for roles granted "
        "pg_use_reserved_connections: run again with such a role in dsn "
        "(grant it ahead of time to the on-call role: GRANT pg_use_reserved_connections TO <role>)."
    ),
    "reserved for roles with privileges of the": (
        "Every ordinary slot is taken and the rest are reserved for the provider's own administrative role, "
        "which no customer role has. Free slots from the application side: scale down the deployment holding "
        "the most connections (kubectl scale deployment/<service> --replicas=0 -n autolytiq-prod), or end "
        "sessions from the provider's console, then run this runbook again."
    ),
    "too many clients": (
        "Every slot is taken, the reserved ones included. Free some from the application side: "
        "scale down the deployment holding the most connections "
        "(kubectl scale deployment/<service> --replicas=0 -n autolytiq-prod), then run this runbook again; "
        "as a last resort restart PostgreSQL."
    ),
}
# Managed PostgreSQL by host name: no role there is a superuser, so the superuser reserve is out of reach.
_MANAGED = {
    ".rds.amazonaws.com": "Amazon RDS",
    ".postgres.database.azure.com": "Azure Database for PostgreSQL",
    "/cloudsql/": "Cloud SQL",
}
_MANAGED_ADVICE = (
    "{service} gives no customer role the SUPERUSER attribute, so its superuser_reserved_connections are out of "
    "reach: on PostgreSQL 16+ set reserved_connections and GRANT pg_use_reserved_connections to the on-call role "
    "ahead of time; during the incident free slots from the application side (scale down the deployment holding "
    "the most connections) or end sessions from the provider's console."
)


def connect(dsn: str, runbook: str) -> psycopg.Connection:
    """A read-only autocommit session named `runbook:<runbook>` with statement and lock timeouts, checked, and
    client-side TCP keepalives and user timeout.

    The password comes from libpq's usual places (PGPASSWORD, ~/.pgpass); `runbook run` moves one
    found in `dsn` there before the notebook starts.
    """
    try:
        try:
            conn = _open(dsn, runbook, startup_options=True)
        except psycopg.OperationalError as e:
            if POOLER_REFUSES_OPTIONS not in str(e):
                raise
            conn = _open(dsn, runbook, startup_options=False)  # PgBouncer: the limits come per transaction
        conn.prepare_threshold = None
        conn.read_only = True
        _check_limits(conn, dsn)
        return conn
    except psycopg.Error as e:
        raise DatabaseUnreachable(_explain(dsn, e)) from None


def fetch_frame(conn: psycopg.Connection, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with conn.transaction(), conn.cursor() as cur:
        _limit(cur)
        cur.execute(sql, params or {})
        columns = [c.name for c in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def fetch_one(conn: psycopg.Connection, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The first row, or None when the query found none."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        _limit(cur)
        cur.execute(sql, params or {})
        return cur.fetchone()


def limits(conn: psycopg.Connection) -> dict[str, str]:
    """What a query of this session runs under (SHOW inside one of its transactions): read_only, timeouts."""
    row = fetch_one(conn, LIMITS_IN_FORCE)
    assert row is not None, "current_setting returns one row"
    return row


def _open(dsn: str, runbook: str, startup_options: bool) -> psycopg.Connection:
    given = str(conninfo_to_dict(dsn).get("options") or "")
    ours = " ".join(f"-c {setting}={value}" for setting, value in SESSION_DEFAULTS) if startup_options else ""
    conninfo = make_conninfo(
        dsn,
        application_name=f"runbook:{runbook}",
        options=" ".join(filter(None, [given, ours])) or None,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        **TCP,
    )
    return psycopg.connect(conninfo, autocommit=True)


def _limit(cur: psycopg.Cursor[Any]) -> None:
    cur.execute(LOCAL_LIMITS, {"statement_timeout": STATEMENT_TIMEOUT, "lock_timeout": LOCK_TIMEOUT})


def _check_limits(conn: psycopg.Connection, dsn: str) -> None:
    shown = limits(conn)
    wanted = {"read_only": "on", "statement_timeout": STATEMENT_TIMEOUT, "lock_timeout": LOCK_TIMEOUT}
    wrong = {k: v for k, v in shown.items() if v != wanted[k]}
    if wrong:
        conn.close()
        raise DatabaseUnreachable(
            f"connected to {redact_dsn(dsn)}, but its queries would not run read-only and time-boxed "
            f"(SHOW gave {wrong}, wanted {wanted}): refusing to use it"
        )


def _explain(dsn: str, error: psycopg.Error) -> str:
    # psycopg reports sqlstate None for refusals at connect time: the message is all there is.
    reason = " ".join(str(error).split())
    lowered = reason.lower()
    key = next((key for key in _REFUSALS if key.lower() in lowered), None)
    advice = _REFUSALS[key] if key else ""
    service = next((name for marker, name in _MANAGED.items() if marker in dsn), None)
    if service and key and "superuser" in key.lower():  # the superuser reserve is out of reach there
        advice = _MANAGED_ADVICE.format(service=service)
    where = redact_dsn(dsn) or "libpq defaults (PGHOST/PGPORT/PGUSER/PGDATABASE)"
    return f"cannot connect to {where}: {reason}" + (f" {advice}" if advice else "")

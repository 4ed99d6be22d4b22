"""The diagnostic session: read-only, named, time-boxed, so a runbook never worsens the incident.

Every query of every runbook goes through `fetch_frame` / `fetch_one` on a connection opened by
`connect`, so timeouts and read-only-ness are set in exactly one place.
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

# What libpq says when the server refuses for lack of slots, and what to do about it.
_REFUSALS = {
    "remaining connection slots are reserved": (
        "Every ordinary slot is taken; only roles with reserved slots can still connect. "
        "Run again with a superuser role in dsn (e.g. -p dsn 'user=autolytiq_admin ...'): "
        "superuser_reserved_connections keeps slots for exactly this."
    ),
    "too many clients": (
        "Every slot is taken, the superuser reserve included. Free some from the application side: "
        "scale down the deployment holding the most connections "
        "(kubectl scale deployment/<service> --replicas=0 -n autolytiq-prod), then run this runbook again; "
        "as a last resort restart PostgreSQL."
    ),
}


def connect(dsn: str, runbook: str) -> psycopg.Connection:
    """A read-only autocommit session named `runbook:<runbook>` with statement and lock timeouts, and client-side
    TCP keepalives and user timeout.

    The password comes from libpq's usual places (PGPASSWORD, ~/.pgpass); `runbook run` moves one
    found in `dsn` there before the notebook starts.
    """
    options = " ".join(
        f"-c {setting}={value}"
        for setting, value in (
            ("default_transaction_read_only", "on"),
            ("statement_timeout", STATEMENT_TIMEOUT),
            ("lock_timeout", LOCK_TIMEOUT),
            ("idle_in_transaction_session_timeout", "60s"),
        )
    )
    try:
        conninfo = make_conninfo(
            dsn,
            application_name=f"runbook:{runbook}",
            options=" ".join(filter(None, [str(conninfo_to_dict(dsn).get("options") or ""), options])),
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            **TCP,
        )
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as e:
        raise DatabaseUnreachable(_explain(dsn, e)) from None


def fetch_frame(conn: psycopg.Connection, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(sql, params or {})
        columns = [c.name for c in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def fetch_one(conn: psycopg.Connection, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The first row, or None when the query found none."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params or {})
        return cur.fetchone()


def _explain(dsn: str, error: psycopg.Error) -> str:
    # psycopg reports sqlstate None for refusals at connect time: the message is all there is.
    reason = " ".join(str(error).split())
    advice = next((text for key, text in _REFUSALS.items() if key in reason), "")
    where = redact_dsn(dsn) or "libpq defaults (PGHOST/PGPORT/PGUSER/PGDATABASE)"
    return f"cannot connect to {where}: {reason}" + (f" {advice}" if advice else "")

"""Connection pool exhausted: how full the pool is, who holds it, which idle sessions could go.

Runbook section: Database Issues / Connection Pool Exhausted. Reads through runbooks.postgres.connections;
terminating idle sessions is runbooks.postgres.kill.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from .. import units
from ..evidence import Finding
from ..postgres.connections import IDLE_STATES, READ_ALL_STATS, PoolUsage


def assess(usage: PoolUsage, connections: pd.DataFrame, idle: pd.DataFrame, idle_minutes: float) -> list[Finding]:
    per_app = connections.groupby("application")["connections"].sum().sort_values(ascending=False)
    idle_per_app = (
        connections[connections["state"].isin(IDLE_STATES)]
        .groupby("application")["connections"]
        .sum()
        .sort_values(ascending=False)
    )
    severity = {"exhausted": "critical", "near exhaustion": "warning", "ok": "info"}[usage.status]
    consequence = {
        "exhausted": 'ordinary clients are refused ("too many connections")',
        "near exhaustion": f"{units.count(usage.ordinary_limit - usage.client_connections, 'ordinary slot')} left",
        "ok": "the pool has room",
    }[usage.status]
    hidden = usage.visibility.note
    findings = [
        Finding(
            "pool-usage",
            f"{usage.client_connections} of {usage.ordinary_limit} ordinary connection slots in use "
            f"({units.percent(usage.utilisation, 0)}; max_connections {usage.max_connections}, "
            f"{usage.superuser_reserved} reserved for superusers): {consequence}"
            + (f". Counted but not classified: {hidden}" if hidden else ""),
            severity,
            {**asdict(usage), "ordinary_limit": usage.ordinary_limit, "status": usage.status},
        )
    ]
    if not per_app.empty:
        top, count = per_app.index[0], int(per_app.iloc[0])
        findings.append(
            Finding(
                "top-application",
                f"{top} holds the most connections: {count} of {usage.client_connections} "
                f"({units.percent(count / max(usage.client_connections, 1), 0)})",
                "warning" if usage.status != "ok" else "info",
                {"application": top, "connections": count, "by_application": per_app.to_dict()},
            )
        )
    if not idle_per_app.empty:
        top, count = idle_per_app.index[0], int(idle_per_app.iloc[0])
        findings.append(
            Finding(
                "top-idle-application",
                f"{top} holds the most idle connections: {count}",
                "warning" if usage.status != "ok" else "info",
                {"application": top, "idle_connections": count, "by_application": idle_per_app.to_dict()},
            )
        )
    in_transaction = int((idle["state"] != "idle").sum()) if not idle.empty else 0
    unseen = (
        f"; the {usage.hidden_sessions} sessions of other roles whose state role {usage.role} cannot see are not "
        f"among them (grant {READ_ALL_STATS} to see them; ending another role's session needs pg_signal_backend)"
        if usage.hidden_sessions
        else ""
    )
    hint = ""
    if idle.empty and usage.status != "ok":
        busiest = f"{per_app.index[0]} (it holds {int(per_app.iloc[0])})" if not per_app.empty else "the busiest client"
        hint = (
            f": the resolution would end none, and the pool is {usage.status}. What to try: a shorter idle_minutes "
            f"(-p idle_minutes 2) to see the sessions idle for less; {busiest}, for a leak or a pool sized too large; "
            "then more max_connections or a pooler (PgBouncer) in front"
        )
    findings.append(
        Finding(
            "stale-idle-sessions",
            f"{units.count(len(idle), 'session')} idle for more than {idle_minutes:g} min "
            f"({in_transaction} of them idle in transaction){unseen}{hint}",
            "warning" if len(idle) or usage.hidden_sessions or hint else "info",
            {
                "pids": [int(p) for p in idle["pid"]],
                "idle_minutes": idle_minutes,
                "not_visible": usage.hidden_sessions,
            },
        )
    )
    return findings

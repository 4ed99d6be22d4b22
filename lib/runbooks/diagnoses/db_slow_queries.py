"""Slow queries: the longest running, the root of each lock chain, the slowest statements, missing indexes.

Runbook section: Database Issues / Slow Queries. Reads through runbooks.postgres.queries; cancelling
queries is runbooks.postgres.kill.
"""

from __future__ import annotations

import pandas as pd

from .. import units
from ..evidence import Finding
from ..postgres.connections import Visibility
from ..postgres.queries import TopStatements


def assess(
    running: pd.DataFrame,
    roots: pd.DataFrame,
    statements: TopStatements,
    scans: pd.DataFrame,
    min_duration_seconds: float,
    visibility: Visibility | None = None,
    sampled: TopStatements | None = None,
) -> list[Finding]:
    """`visibility` (postgres.connections.visibility) says what this role could not see: other roles' queries
    are then missing from `running` and from the blocking chains, and a finding says so. `sampled`: the
    difference of two pg_stat_statements snapshots (queries.statements_during), what is slow right now."""
    findings = []
    unseen = visibility.note if visibility else None
    if unseen:
        findings.append(
            Finding(
                "sessions-not-visible",
                f"{unseen}: their queries cannot be listed as long-running or as blockers",
                "warning",
                {"role": visibility.role, "hidden_sessions": visibility.hidden_sessions, "missing": "pg_read_all_stats"}
                if visibility
                else None,
            )
        )
    if running.empty:
        findings.append(
            Finding(
                "long-running-queries",
                f"no query has run longer than {min_duration_seconds:g} s"
                + (" among the sessions this role can see" if unseen else ""),
                "info",
                {"pids": []},
            )
        )
    else:
        top = running.iloc[0]
        findings.append(
            Finding(
                "long-running-queries",
                f"{len(running)} queries running longer than {min_duration_seconds:g} s; longest: pid {top.pid} "
                f"({top.application}, {top.state}) for {top.duration.total_seconds():.0f} s: {_short(top.query)}",
                "warning",
                {
                    "pids": [int(p) for p in running["pid"]],
                    "longest_pid": int(top.pid),
                    "longest_seconds": top.duration.total_seconds(),
                },
            )
        )
    if roots.empty:
        findings.append(Finding("root-blocker", "no session is blocked by another", "info", None))
    else:
        root = roots.iloc[0]
        listed = "; ".join(
            f"{_who(r)} ({r.application}, {r.state}) blocks {units.count(r.sessions_blocked, 'session')}: "
            f"{_short(r.query)}"
            for r in roots.itertuples()
        )
        findings.append(
            Finding(
                "root-blocker",
                (f"{len(roots)} root blockers: " if len(roots) > 1 else "") + listed,
                "critical",
                {
                    "pid": int(root.pid),
                    "gid": root.gid,
                    "state": root.state,
                    "query": root.query,
                    "sessions_blocked": int(root.sessions_blocked),
                    "all_roots": [int(p) for p in roots["pid"]],
                    "roots": [
                        {"pid": int(r.pid), "gid": r.gid, "state": r.state, "sessions_blocked": int(r.sessions_blocked)}
                        for r in roots.itertuples()
                    ],
                },
            )
        )
    findings.append(_statements_finding("top-statements", statements))
    if sampled is not None and sampled.frame is not None:
        findings.append(_statements_finding("slow-right-now", sampled))
    hinted = scans[scans["index_hint"]]
    if not hinted.empty:
        findings.append(
            Finding(
                "missing-index-hints",
                "large tables read mostly by sequential scans: "
                + ", ".join(f"{r.schema}.{r.table}" for r in hinted.itertuples()),
                "info",
                {"tables": hinted[["schema", "table", "seq_scan", "idx_scan", "live_rows"]]},
            )
        )
    return findings


def _statements_finding(id: str, statements: TopStatements) -> Finding:
    if statements.frame is None:
        return Finding(id, statements.note or "", None, None)
    data = {
        "counted": statements.counted,
        "stats_reset": statements.stats_reset,
        "sampled_seconds": statements.sampled_seconds,
        "statements": statements.frame[["query", "calls", "mean_ms", "total_ms"]].head(5),
    }
    if statements.frame.empty:
        return Finding(id, f"no statement ran {statements.counted}", "info", data)
    top = statements.frame.iloc[0]
    return Finding(
        id,
        f"most time {statements.counted}: {top.total_ms / 1000:.1f} s over {top.calls} calls "
        f"({top.mean_ms:.0f} ms each): {_short(top.query)}",
        "info",
        data,
    )


def _who(root) -> str:
    return f"prepared transaction {root.gid}" if root.pid == 0 else f"pid {root.pid}"


def _short(query: str, width: int = 120) -> str:
    query = " ".join(str(query).split())
    return query if len(query) <= width else query[: width - 1] + "…"

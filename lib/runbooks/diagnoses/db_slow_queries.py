"""Slow queries: the longest running, the root of each lock chain, the slowest statements, missing indexes.

Runbook section: Database Issues / Slow Queries. Reads through runbooks.postgres.queries; cancelling
queries is runbooks.postgres.kill.
"""

from __future__ import annotations

import pandas as pd

from ..evidence import Finding
from ..postgres.queries import TopStatements


def assess(
    running: pd.DataFrame,
    roots: pd.DataFrame,
    statements: TopStatements,
    scans: pd.DataFrame,
    min_duration_seconds: float,
) -> list[Finding]:
    findings = []
    if running.empty:
        findings.append(
            Finding(
                "long-running-queries", f"no query has run longer than {min_duration_seconds:g} s", "info", {"pids": []}
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
        findings.append(
            Finding(
                "root-blocker",
                f"pid {root.pid} ({root.application}, {root.state}) blocks {root.sessions_blocked} sessions: "
                f"{_short(root.query)}",
                "critical",
                {
                    "pid": int(root.pid),
                    "state": root.state,
                    "query": root.query,
                    "sessions_blocked": int(root.sessions_blocked),
                    "all_roots": [int(p) for p in roots["pid"]],
                },
            )
        )
    if statements.frame is None:
        findings.append(Finding("top-statements", statements.note or "", None, None))
    elif not statements.frame.empty:
        top = statements.frame.iloc[0]
        findings.append(
            Finding(
                "top-statements",
                f"slowest statement on average: {top.mean_ms:.0f} ms over {top.calls} calls: {_short(top.query)}",
                "info",
                {"statements": statements.frame[["query", "calls", "mean_ms", "total_ms"]].head(5)},
            )
        )
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


def _short(query: str, width: int = 120) -> str:
    query = " ".join(str(query).split())
    return query if len(query) <= width else query[: width - 1] + "…"

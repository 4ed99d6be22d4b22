"""Third-party APIs: errors about each one in service logs, a live probe of its health URL, a verdict.

Runbook section: External Service Issues / Third-Party API Down. The incident-response runbook greps service logs for
`timeout|connection refused|503` and checks the provider's status page. Here each dependency is named
by a regex that picks out log lines about it (host name, client name); a line counts as an error of
that dependency when it also carries an error signature (timeouts, refused or reset connections, 5xx,
429 rate limiting, DNS failures, TLS errors, an open circuit breaker). Counts come per minute from
`kube.logs.scan`, so the first minute with errors says since when the dependency fails. Each health URL
gets one GET (runbooks.health: a status page's body is read for its indicator; 401/403 are not "up");
an unreachable URL is a row with the reason, never an exception. Nothing in the cluster is changed and
nothing is posted: the resolution is text (a status-page message, a Slack update, a fallback checklist)
for a human.

What logs can and cannot say: many services log failed calls only. The share of failing calls is then not
measurable (every line about the dependency is an error), so errors alone make a dependency "degraded",
not "down", unless the probe fails too or a circuit breaker reports open. An open circuit breaker stops the
calls: no new timeouts, which would look like recovery; its lines count as errors.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .. import communication, escape, health, severity, units
from ..evidence import Action, Finding
from ..kube import logs
from ..kube.cluster import Cluster
from ..kube.pods import list_pods

# What the incident-response runbook greps for, and the other ways a call to a remote API fails.
# Name -> regex (case-insensitive).
ERROR_SIGNATURES = {
    "timeout": r"time-?outs?\b|timed out|deadline exceeded|ETIMEDOUT",
    "connection refused": r"connection refused|ECONNREFUSED",
    "connection reset": r"connection reset|reset by peer|ECONNRESET|broken pipe|EPIPE|socket hang up"
    r"|unexpected EOF|Connection aborted|RemoteDisconnected",
    "http 5xx": r"(?:status(?:_?code)?|code|http/\d(?:\.\d)?|returned|got|received|response)\W{0,3}5\d\d\b"
    r"|service unavailable|bad gateway|gateway time-?out|internal server error",
    "rate limited": r"(?:status(?:_?code)?|code|http/\d(?:\.\d)?|returned|got|received|response)\W{0,3}429\b"
    r"|too many requests|rate.?limit(?:ed| exceeded)",
    "circuit open": r"circuit(?:[ _-]?breaker)?\b.{0,60}?\b(?:is|now|state)\W{1,3}(?:now\s+)?open\b"
    r"|(?:circuit|breaker)\W{0,3}(?:is\s+)?open\b|CallNotPermittedException|BrokenCircuitError|short-?circuited"
    r"|OpenCircuitException",
    "dns": r"no such host|name or service not known|temporary failure in name resolution"
    r"|could not resolve host|ENOTFOUND|EAI_AGAIN",
    "tls": r"tls handshake|ssl[_: ]?error|ssl routines|x509|certificate[_ ]verify[_ ]failed"
    r"|certificate has expired|unknown authority",
}
SIGNATURES = list(ERROR_SIGNATURES)
LINES, ERRORS = "lines", "errors"  # scan pattern kinds besides the signatures
SEPARATOR = " :: "  # between dependency and kind in a scan pattern's name

RECENT_MINUTES = 10  # errors in this many last minutes count as "still failing"
MIN_ERRORS = 3  # at least this many recent error lines ...
DOWN_SHARE = 0.5  # ... making at least this share of the recent lines about the dependency: down


@dataclass(frozen=True)
class Dependency:
    name: str
    match: str  # regex picking out log lines about it
    health_url: str = ""  # probed with GET; empty: not probed
    feature: str = ""  # what users know it as, for the status page

    @property
    def shown_as(self) -> str:
        return self.feature or f"{self.name} integration"


def parse(dependencies: dict) -> list[Dependency]:
    """The `dependencies` parameter (name -> {match, health_url, feature}) checked: fails loudly on bad entries."""
    parsed = []
    for name, spec in dependencies.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("match"), str) or not spec["match"]:
            raise ValueError(f"dependency {name!r}: needs a mapping with a non-empty 'match' regex, got {spec!r}")
        unknown = set(spec) - {"match", "health_url", "feature"}
        if unknown:
            raise ValueError(f"dependency {name!r}: unknown keys {sorted(unknown)} (known: match, health_url, feature)")
        try:
            re.compile(spec["match"])
        except re.error as e:
            raise ValueError(f"dependency {name!r}: 'match' is not a regex: {e}") from None
        url = spec.get("health_url") or ""
        if url and not re.match(r"https?://", url, re.IGNORECASE):
            raise ValueError(f"dependency {name!r}: health_url must be http:// or https://, got {url!r}")
        parsed.append(Dependency(str(name), spec["match"], url, spec.get("feature") or ""))
    return parsed


# --- errors in service logs


@dataclass(frozen=True)
class LogErrors:
    counts: pd.DataFrame  # dependency, kind (lines | errors | a signature), pod, container, instance, minute, count
    examples: dict[str, list[str]]  # dependency -> an error line of each signature seen, redacted
    services: dict[str, str]  # pod -> the service it belongs to (its app label)
    lines_read: int
    read_at: dt.datetime
    since_minutes: float


def patterns(dependencies: list[Dependency]) -> dict[str, str]:
    """Scan patterns: per dependency, its lines, its error lines, and its lines of each signature.

    A line is an error of a dependency when it matches both the dependency's regex and a signature,
    anywhere and in any order: two lookaheads, anchored so that a miss is not retried at every offset.
    """
    any_error = "|".join(f"(?:{regex})" for regex in ERROR_SIGNATURES.values())
    result = {}
    for dep in dependencies:
        about = f"(?=.*?(?:{dep.match}))"
        result[f"{dep.name}{SEPARATOR}{LINES}"] = f"^{about}"
        result[f"{dep.name}{SEPARATOR}{ERRORS}"] = f"^{about}(?=.*?(?:{any_error}))"
        for signature, regex in ERROR_SIGNATURES.items():
            result[f"{dep.name}{SEPARATOR}{signature}"] = f"^{about}(?=.*?(?:{regex}))"
    return result


def log_errors(
    cluster: Cluster, dependencies: list[Dependency], selector: str = "", since_minutes: float = 60
) -> LogErrors:
    """Lines about each dependency, and its error lines by signature, per pod and minute (the runbook's grep)."""
    read_at = dt.datetime.now(dt.timezone.utc)
    scan = logs.scan(cluster, selector, patterns(dependencies), since_minutes=since_minutes)
    counts = scan.counts.copy()
    names = [pattern.rpartition(SEPARATOR) for pattern in counts["pattern"]]
    counts.insert(0, "dependency", pd.Series([name for name, _, _ in names], index=counts.index, dtype=object))
    counts.insert(1, "kind", pd.Series([kind for _, _, kind in names], index=counts.index, dtype=object))
    counts = counts.drop(columns="pattern")
    examples = {dep.name: _one_per_signature(scan.examples, dep.name) for dep in dependencies}
    services = {pod.metadata.name: _service(pod) for pod in list_pods(cluster, selector)}
    return LogErrors(counts, examples, services, scan.lines_read, read_at, since_minutes)


def error_summary(errors: LogErrors, dependencies: list[Dependency]) -> pd.DataFrame:
    """One row per dependency: lines about it, error lines (all, per signature), first and last error, pods."""
    counts = errors.counts
    recent_from = errors.read_at - dt.timedelta(minutes=RECENT_MINUTES)
    rows = []
    for dep in dependencies:
        mine = counts[counts["dependency"] == dep.name]
        failed = mine[mine["kind"] == ERRORS]
        recent = mine[mine["minute"] >= recent_from]
        rows.append(
            {
                "dependency": dep.name,
                "lines": int(mine.loc[mine["kind"] == LINES, "count"].sum()),
                "errors": int(failed["count"].sum()),
                **{s: int(mine.loc[mine["kind"] == s, "count"].sum()) for s in SIGNATURES},
                "first_error": failed["minute"].min() if not failed.empty else pd.NaT,
                "last_error": failed["minute"].max() if not failed.empty else pd.NaT,
                "recent_lines": int(recent.loc[recent["kind"] == LINES, "count"].sum()),
                "recent_errors": int(recent.loc[recent["kind"] == ERRORS, "count"].sum()),
                "recent_circuit_open": int(recent.loc[recent["kind"] == "circuit open", "count"].sum()),
                "pods": sorted(failed["pod"].unique()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "dependency",
            "lines",
            "errors",
            *SIGNATURES,
            "first_error",
            "last_error",
            "recent_lines",
            "recent_errors",
            "recent_circuit_open",
            "pods",
        ],
    )


def errors_per_minute(errors: LogErrors, dependencies: list[Dependency]) -> pd.DataFrame:
    """Error lines per minute (rows: every minute of the window, UTC) per dependency (columns)."""
    end = pd.Timestamp(errors.read_at).floor("min")
    start = (pd.Timestamp(errors.read_at) - pd.Timedelta(minutes=errors.since_minutes)).floor("min")
    minutes = pd.date_range(start, end, freq="min", name="minute")
    failed = errors.counts[errors.counts["kind"] == ERRORS]
    table = failed.groupby(["minute", "dependency"])["count"].sum().unstack("dependency")
    return table.reindex(index=minutes, columns=[d.name for d in dependencies]).fillna(0).astype(int)


def affected_pods(errors: LogErrors) -> pd.DataFrame:
    """Which services and pods log errors about which dependency, most errors first."""
    failed = errors.counts[errors.counts["kind"] == ERRORS]
    columns = ["dependency", "service", "pod", "container", "errors", "first_error", "last_error"]
    if failed.empty:
        return pd.DataFrame(columns=columns)
    table = failed.groupby(["dependency", "pod", "container"], as_index=False).agg(
        errors=("count", "sum"), first_error=("minute", "min"), last_error=("minute", "max")
    )
    table.insert(1, "service", table["pod"].map(errors.services))
    return table[columns].sort_values(["dependency", "errors"], ascending=[True, False], ignore_index=True)


@dataclass(frozen=True)
class ErrorLines:
    """A few error lines per dependency, shown whole as text (a table would cut them)."""

    lines: dict[str, list[str]]

    def _repr_markdown_(self) -> str:
        shown = [
            f"**{escape.markdown(name)}**\n\n{escape.code_block(chr(10).join(lines))}"
            for name, lines in self.lines.items()
            if lines
        ]
        return "\n\n".join(shown) or "*No error lines about any dependency.*"

    def _repr_html_(self) -> str:
        shown = [
            f"<p><strong>{escape.html(name)}</strong></p>\n{escape.html_block(chr(10).join(lines))}"
            for name, lines in self.lines.items()
            if lines
        ]
        return "\n".join(shown) or "<p><em>No error lines about any dependency.</em></p>"


def example_lines(errors: LogErrors) -> ErrorLines:
    """An error line of each signature seen, per dependency, credentials redacted (kube.logs.scan redacts)."""
    return ErrorLines(errors.examples)


def _one_per_signature(examples: dict[str, list[str]], dependency: str) -> list[str]:
    picked = [examples.get(f"{dependency}{SEPARATOR}{s}", [])[:1] for s in SIGNATURES]
    return list(dict.fromkeys(line for lines in picked for line in lines))


def _service(pod) -> str:
    labels = pod.metadata.labels or {}
    owners = pod.metadata.owner_references or []
    return (
        labels.get("app.kubernetes.io/name") or labels.get("app") or (owners[0].name if owners else pod.metadata.name)
    )


def probe_all(dependencies: list[Dependency], timeout: float) -> pd.DataFrame:
    """The probe of each dependency's health URL, one row each (dependencies without a URL: not probed)."""
    probes = [health.probe(dep.health_url, timeout) for dep in dependencies]
    rows = [
        {
            "dependency": dep.name,
            "url": p.url,
            "status": p.status,
            "latency_ms": p.latency_ms,
            "result": p.result,
            "failure": p.failure,
            "error": p.error,
            "page": f"{p.indicator}: {p.description}" if p.indicator else None,
        }
        for dep, p in zip(dependencies, probes, strict=True)
    ]
    frame = pd.DataFrame(
        rows, columns=["dependency", "url", "status", "latency_ms", "result", "failure", "error", "page"]
    )
    return frame.astype({"status": "Int64", "latency_ms": "Float64"})


# --- verdict and findings

PROBE_COLUMNS = {
    "url": "health_url",
    "status": "probe_status",
    "latency_ms": "probe_latency_ms",
    "result": "probe",
    "failure": "probe_failure",
    "error": "probe_error",
    "page": "probe_page",
}
VERDICT_FIRST = [
    "dependency",
    "status",
    "basis",
    "errors",
    "recent_errors",
    "first_error",
    "last_error",
    "probe",
    "probe_status",
    "probe_latency_ms",
    "probe_error",
]  # what to read first


def verdicts(summary: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """Logs and probe together: each dependency down, unconfirmed, degraded, recovered or ok, and on what basis.

    down: at least MIN_ERRORS error lines in the last RECENT_MINUTES, making at least DOWN_SHARE of the
    lines about it, when that share means something (some successful call is logged), the probe fails too, or a
    circuit breaker reports open; or the probe fails (no answer, 5xx, a status page saying major) and no recent
    call in the logs succeeded. unconfirmed: the probe fails from here while the services' recent calls succeed
    (look at the probe's network path first); degraded: errors only with no success ever logged (share
    unknown), fewer recent errors, or a probe answering 429 or a status page saying minor; recovered: errors
    earlier only.
    """
    table = summary.merge(probes.rename(columns=PROBE_COLUMNS), on="dependency", how="left")
    judged = [_judge(row) for row in table.to_dict("records")]
    table["status"] = [status for status, _ in judged]
    table["basis"] = [basis for _, basis in judged]
    return table[VERDICT_FIRST + [c for c in table.columns if c not in VERDICT_FIRST]]


def _judge(row: dict) -> tuple[str, str]:
    recent, recent_ok = row["recent_errors"], row["recent_lines"] - row["recent_errors"]
    share_known = row["lines"] > row["errors"]  # some successful call is logged in the window
    burst = recent >= MIN_ERRORS and recent >= DOWN_SHARE * row["recent_lines"]
    circuit = row["recent_circuit_open"] > 0
    probe_failing = row["probe"] == "failing"
    if burst and (share_known or probe_failing or circuit):
        why = "circuit breaker open" if circuit and not share_known and not probe_failing else "logs"
        return "down", f"{why} and probe" if probe_failing else why
    if probe_failing and not recent_ok:
        return "down", "probe"
    if burst:
        return "degraded", "logs: errors only (no successful call logged, so the share failing is unknown)"
    if probe_failing:
        return "unconfirmed", "probe fails here, services' recent calls succeed"
    if row["probe"] == "degraded":
        return "degraded", "probe: " + _probe_says(row)
    if recent:
        return "degraded", "logs"
    if row["errors"]:
        return "recovered", "logs"
    return "ok", "" if row["probe"] != "unknown" else "probe not let in (401/403): health unknown"


def assess(
    verdict: pd.DataFrame, affected: pd.DataFrame, dependencies: list[Dependency], since_minutes: float
) -> list[Finding]:
    features = {dep.name: dep.shown_as for dep in dependencies}
    rows = [_plain(row) for row in verdict.to_dict("records")]
    findings = [_down(row, affected, features[row["dependency"]]) for row in rows if row["status"] == "down"]
    if not findings:
        findings.append(
            Finding(
                "no-dependency-down",
                f"No third-party dependency judged down: no failing health probe and no burst of errors in the "
                f"last {RECENT_MINUTES} min ({len(rows)} checked)",
                "info",
                {"dependencies": [row["dependency"] for row in rows]},
            )
        )
    counts = {row["dependency"]: _counts(row) for row in rows}
    listed = ", ".join(f"{name} {c['errors']} ({c['status']})" for name, c in counts.items())
    findings.append(
        Finding(
            "dependency-errors",
            f"Error lines about third-party dependencies in the last {since_minutes:g} min: "
            f"{listed or 'none configured'}",
            "warning" if any(c["errors"] for c in counts.values()) else "info",
            {"since_minutes": since_minutes, "dependencies": counts},
        )
    )
    return findings


def _down(row: dict, affected: pd.DataFrame, feature: str) -> Finding:
    mine = affected[affected["dependency"] == row["dependency"]]
    pods, services = sorted(mine["pod"].unique()), sorted(mine["service"].unique())
    since = row["first_error"]
    logged = (
        f"{row['errors']} error lines since {units.clock(since)} ({_signature_text(row)}) "
        f"from {len(pods)} pods of {', '.join(services)}"
        if since
        else "no errors in service logs"
    )
    return Finding(
        "dependency-down",
        f"{row['dependency']} is down ({row['basis']}): {logged}; health probe {_probe_text(row)}",
        "critical" if "logs" in row["basis"] else "warning",
        {
            "dependency": row["dependency"],
            "feature": feature,
            "basis": row["basis"],
            "since": since,
            "last_error": row["last_error"],
            "errors": row["errors"],
            "error_counts": {s: row[s] for s in SIGNATURES},
            "health_url": row["health_url"],
            "probe_status": row["probe_status"],
            "probe_latency_ms": row["probe_latency_ms"],
            "probe_error": row["probe_error"],
            "affected_pods": pods,
            "affected_services": services,
        },
    )


def _counts(row: dict) -> dict:
    return {
        "status": row["status"],
        "lines": row["lines"],
        "errors": row["errors"],
        "error_counts": {s: row[s] for s in SIGNATURES},
        "first_error": row["first_error"],
        "last_error": row["last_error"],
        "probe_status": row["probe_status"],
        "probe_error": row["probe_error"],
        "pods": row["pods"],
    }


def _plain(row: dict) -> dict:
    """A verdict row with pandas' missing values (NaT, NA, NaN) as None and timestamps as datetimes."""
    plain: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list):
            plain[key] = value
        elif pd.isna(value):
            plain[key] = None
        elif isinstance(value, pd.Timestamp):
            plain[key] = value.to_pydatetime()
        else:
            plain[key] = value.item() if hasattr(value, "item") else value
    return plain


def _signature_text(row: dict) -> str:
    return ", ".join(f"{s} {row[s]}" for s in SIGNATURES if row[s])


def _probe_text(row: dict) -> str:
    if row["probe"] in (None, "not probed"):
        return "not configured"
    if row["probe_status"] is None:
        return f"failed: {row['probe_error']}"
    return f"answered {row['probe_status']} in {row['probe_latency_ms']:g} ms" + (
        f" ({_probe_says(row)})" if row.get("probe_page") or row["probe"] in ("degraded", "unknown") else ""
    )


def _probe_says(row: dict) -> str:
    if row.get("probe_page"):
        return f"status page: {row['probe_page']}"
    return {429: "rate limited", 401: "not let in", 403: "not let in"}.get(row["probe_status"], row["probe"])


# --- resolution: text for humans, nothing sent


@dataclass(frozen=True)
class Drafts:
    status_page: (
        str | None
    )  # the incident-response runbook's "Status Page - Identified"; None when no dependency fails in the logs
    slack: str  # the incident-response runbook's "Slack Status Update"
    checklist: tuple[str, ...] = field(default_factory=tuple)

    @property
    def action(self) -> Action:
        return Action("communicate", "dry-run", "status page / #incidents", "drafted (not posted)")

    def _repr_markdown_(self) -> str:
        page = (
            escape.code_block(self.status_page)
            if self.status_page
            else "*No status-page message: no dependency fails in the services' logs.*"
        )
        steps = "\n".join(f"- [ ] {escape.markdown(item)}" for item in self.checklist)
        return (
            f"### Fallback checklist\n\n{steps}\n\n### Status page — Identified (draft, not posted)\n\n{page}\n\n"
            f"### Slack #incidents — status update (draft, not posted)\n\n{escape.code_block(self.slack)}\n"
        )

    def _repr_html_(self) -> str:
        page = (
            escape.html_block(self.status_page)
            if self.status_page
            else "<p><em>No status-page message: no dependency fails in the services' logs.</em></p>"
        )
        steps = "".join(f"<li>☐ {escape.html(item)}</li>" for item in self.checklist)
        return (
            f'<h3>Fallback checklist</h3>\n<ul class="{escape.NO_MATH}">{steps}</ul>\n'
            f"<h3>Status page — Identified (draft, not posted)</h3>\n{page}\n"
            f"<h3>Slack #incidents — status update (draft, not posted)</h3>\n{escape.html_block(self.slack)}\n"
        )


def drafts(findings: list[Finding], now: dt.datetime | None = None) -> Drafts:
    """The runbook's resolution as text: fallback checklist, status-page message, Slack update. Nothing is sent.

    The status page speaks only of dependencies whose errors show in the services' logs (users see
    them); one judged down by its probe alone gets a check in the checklist instead.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    down = [f.data for f in findings if f.id == "dependency-down"]
    confirmed = [d for d in down if d["since"]]
    level = severity.classify(
        features_down=[d["feature"] for d in confirmed],
        features_degraded=[d["feature"] for d in down if not d["since"]],
    ).level
    checklist = _checklist(down)
    started = min((d["since"] for d in confirmed), default=None)
    slack = communication.render(
        "slack-update",
        incident=(
            f"Third-party API down: {', '.join(d['dependency'] for d in down)}"
            if down
            else "Third-party API check: no dependency judged down"
        ),
        severity=level,
        duration=f"{(now - started).total_seconds() / 60:.0f} minutes"
        if started
        else "unknown (no errors in service logs)",
        status="Identified" if down else "Investigating",
        known=[f.summary for f in findings],
        actions=[
            "Read service logs for errors about each third-party dependency and probed their health URLs "
            "(runbook third-party-api-down)",
            "Drafted the status-page message (not posted)" if confirmed else "No status-page message drafted",
        ],
        next_steps=checklist,
        next_update=(
            f"{units.clock(now + dt.timedelta(minutes=30))} (in 30 minutes)"
            if confirmed
            else "at the next major update"
        ),
    )
    page = None
    if confirmed:
        page = communication.render(
            "status-identified",
            feature=" and ".join(d["feature"] for d in confirmed),
            impact=" ".join(_impact(d) for d in confirmed),
            updated=units.when(now),
        )
    return Drafts(page, slack, tuple(checklist))


def _impact(down: dict) -> str:
    return (
        f"Since {units.when(down['since'])}, {down['feature']} may fail or take longer than usual "
        f"for some users: a third-party provider it relies on is not responding normally."
    )


def _checklist(down: list[dict]) -> list[str]:
    if not down:
        return [
            "No dependency is judged down: look for the failing feature's cause in its own service "
            "(errors, restarts, recent deploys) before blaming a provider.",
            "Re-run this runbook if errors about a dependency appear.",
        ]
    items = []
    for d in down:
        probe = (
            f"health URL answers {d['probe_status']}"
            if d["probe_status"] is not None
            else f"health URL: {d['probe_error'] or 'not configured'}"
        )
        if not d["since"]:
            items.append(
                f"Confirm {d['dependency']} from inside the cluster (its probe fails from here: {probe}; "
                f"no errors about it in the services' logs) and check its own status page."
            )
            continue
        kinds = ", ".join(f"{k} {n}" for k, n in d["error_counts"].items() if n)
        items += [
            f"Enable the fallback or cache for {d['dependency']} if there is one (cached responses, queue and "
            f"retry later, or the feature's flag off) so that {d['feature']} degrades instead of failing.",
            f"Check the status page of {d['dependency']} itself; contact its support if needed with: errors since "
            f"{units.clock(d['since'])} ({kinds}), {probe}, affected services "
            f"{', '.join(d['affected_services'])}.",
        ]
    return [
        *items,
        "Communicate the degraded functionality: fill in the estimate, post the status-page message and the "
        "Slack update in #incidents (drafted below, not posted).",
        "Re-run this runbook every 30 minutes: when the errors per minute stop and the probe answers, "
        "post Monitoring, then Resolved.",
    ]

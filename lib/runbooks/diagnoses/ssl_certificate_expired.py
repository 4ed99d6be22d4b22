"""SSL certificate expired: the endpoints' certificates and cert-manager's, expired, expiring, not trusted.

Runbook section: Certificate Issues / SSL Certificate Expired. The endpoints are read by TLS handshakes
(runbooks.tls), the cert-manager Certificates through the cluster (kube.certmanager); the renewal asks
cert-manager to issue again, as `cmctl renew` does, and never deletes anything.
"""

from __future__ import annotations

import pandas as pd

from .. import units
from ..evidence import Finding
from ..kube.certmanager import Certificates


def to_renew(certificates: Certificates, names: list[str]) -> list[str]:
    """`names` if given, else the Certificates that are not Ready or have expired (`namespace/name` for one in
    another namespace than the runbook's)."""
    if names:
        return list(names)
    frame = certificates.frame
    due = frame[(frame["ready"] != "True") | _below(frame, 0)]
    return list(due["ref"])


def assess_endpoints(table: pd.DataFrame, warn_days: float) -> list[Finding]:
    expired = table[table["status"] == "expired"]
    expiring = table[table["status"] == "expiring"]
    reachable = table[table["status"] != "unreachable"]
    untrusted = reachable[~(reachable["trusted"].eq(True) & reachable["hostname_match"].eq(True))]
    unreachable = table[table["status"] == "unreachable"]
    lenient = reachable[reachable["trusted"].eq(True) & reachable["strict"].eq(False)]
    return [
        _finding(
            "expired-endpoints",
            expired,
            "critical",
            _expired_line,
            "no endpoint presents an expired certificate (the chains included)",
            not_after={r.endpoint: r.not_after for r in expired.itertuples()},
            chain_not_after={r.endpoint: r.chain_not_after for r in expired.itertuples()},
        ),
        _finding(
            "expiring-endpoints",
            expiring,
            "warning",
            lambda r: f"{r.endpoint} expires {units.when(r.not_after)} (in {units.count(r.days_left, 'day')})",
            f"no endpoint's certificate expires within {warn_days:g} days",
            not_after={r.endpoint: r.not_after for r in expiring.itertuples()},
            days_left={r.endpoint: r.days_left for r in expiring.itertuples()},
            warn_days=warn_days,
        ),
        _finding(
            "untrusted-endpoints",
            untrusted,
            "critical",
            lambda r: f"{r.endpoint}: {r.error}",
            "every reachable endpoint's certificate verifies and names its host",
            errors={r.endpoint: r.error for r in untrusted.itertuples()},
        ),
        _finding(
            "unreachable-endpoints",
            unreachable,
            "warning",
            lambda r: f"{r.endpoint}: {r.error}",
            "every endpoint answered a TLS handshake",
            errors={r.endpoint: r.error for r in unreachable.itertuples()},
        ),
        _finding(
            "strict-x509",
            lenient,
            "warning",
            lambda r: f"{r.endpoint}: {r.error}",
            "every trusted endpoint also verifies with strict X.509 checks",
            errors={r.endpoint: r.error for r in lenient.itertuples()},
            consequence="clients verifying strictly (Python 3.13+ by default) refuse these; others accept them: "
            "reissue with an Authority Key Identifier and critical basicConstraints",
        ),
    ]


def _expired_line(row) -> str:
    if row.not_after is not None and row.days_left < 0 and row.not_after <= (row.chain_not_after or row.not_after):
        return f"{row.endpoint} expired {units.when(row.not_after)} ({units.count(-row.days_left, 'day')} ago)"
    return f"{row.endpoint}: {row.error}"


def _finding(id: str, rows: pd.DataFrame, severity: str, line, none: str, consequence: str = "", **data) -> Finding:
    endpoints = list(rows["endpoint"])
    if not endpoints:
        return Finding(id, none, "info", {"endpoints": [], **data})
    text = "; ".join(line(r) for r in rows.itertuples()) + (f". {consequence}" if consequence else "")
    return Finding(id, text, severity, {"endpoints": endpoints, **data})


def assess_certificates(certificates: Certificates, warn_days: float) -> list[Finding]:
    frame = certificates.frame
    if certificates.note:
        return [
            Finding(
                id,
                f"Certificates not checked: {certificates.note}",
                "info",
                {"certificates": [], "note": certificates.note},
            )
            for id in ("certificates-not-ready", "certificates-expiring")
        ]
    not_ready = frame[frame["ready"] != "True"]
    expiring = frame[_below(frame, warn_days)]
    partial = f" ({certificates.partial})" if certificates.partial else ""
    findings = [
        Finding(
            "certificates-not-ready",
            (
                "; ".join(_not_ready(r) for r in not_ready.itertuples())
                or (
                    f"every Certificate is Ready ({len(frame)} listed)"
                    if len(frame)
                    else "no Certificates in the namespace, nor elsewhere for the endpoints' names"
                )
            )
            + partial,
            "critical" if len(not_ready) else "info",
            {
                "certificates": list(not_ready["ref"]),
                "reasons": dict(zip(not_ready["ref"], not_ready["reason"], strict=True)),
                "note": certificates.partial,
            },
        )
    ]
    findings.append(
        Finding(
            "certificates-expiring",
            "; ".join(_expiry(r) for r in expiring.itertuples()) or f"no Certificate expires within {warn_days:g} days",
            ("critical" if _below(expiring, 0).any() else "warning") if len(expiring) else "info",
            {
                "certificates": list(expiring["ref"]),
                "not_after": dict(zip(expiring["ref"], expiring["not_after"], strict=True)),
                "days_left": dict(zip(expiring["ref"], expiring["days_left"], strict=True)),
                "renewal_overdue": list(expiring.loc[expiring["renewal_overdue"].eq(True), "ref"]),
                "warn_days": warn_days,
            },
        )
    )
    return findings


def _not_ready(row) -> str:
    if pd.isna(row.ready):
        return f"{row.ref}: no Ready condition yet"
    return f"{row.ref}: Ready={row.ready} ({row.reason}: {row.message})"


def _expiry(row) -> str:
    when = units.when(row.not_after)
    text = (
        f"{row.ref} expired {when} ({units.count(-row.days_left, 'day')} ago)"
        if row.days_left < 0
        else f"{row.ref} expires {when} (in {units.count(row.days_left, 'day')})"
    )
    return text + (f"; its renewal was due {units.when(row.renewal_time)}" if row.renewal_overdue else "")


def _below(frame: pd.DataFrame, days: float) -> pd.Series:
    return (frame["days_left"] < days).fillna(False).astype(bool)

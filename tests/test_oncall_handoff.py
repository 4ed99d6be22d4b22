"""`oncall-handoff`: a week of incidents left by real runs, and the environment checked live: the test Kubernetes
API (autolytiq-prod, whose Certificate expires in 5 days), the test PostgreSQL, TLS endpoints on loopback (one
expired), and a real Alertmanager holding a firing alert.

The output folder: INC-A (triage, verify-recovery, closed, review written), INC-B (triage only: open), INC-OLD
(ten days old and closed: out of the week), and a folder of an earlier handoff (not an incident).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from evidence_files import add_run
from runbooks import cli, command_evidence
from runbooks.evidence import Finding
from runbooks_sandbox.alertmanager import AlertmanagerServer
from runbooks_sandbox.endpoints import closed_port, serve_pki
from runbooks_sandbox.prometheus import PrometheusServer, http_traffic
from test_verify_recovery import scenarios

RUNBOOK = "oncall-handoff"
NS = "autolytiq-prod"


def runbook(*args):
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def week(prod, tmp_path):
    """The output folder of the week, made by real runs (and one old incident's evidence, ten days back)."""
    output = tmp_path / "incidents"
    cluster = prod.runbook_args(NS)
    with PrometheusServer(http_traffic(scenarios(float(int(time.time())))["recovered"])) as prom:
        for incident in ("INC-A", "INC-B"):
            runbook(
                "run",
                "triage",
                "--incident",
                incident,
                "--output-dir",
                output,
                *cluster,
                "-p",
                "prometheus_url",
                prom.url,
            )
        runbook(
            "run", "verify-recovery", "--incident", "INC-A", "--output-dir", output, "-p", "prometheus_url", prom.url
        )
    runbook("close", "INC-A", "--output-dir", output)
    runbook("report", "INC-A", "--output-dir", output)
    old_incident(output)
    runbook(
        "run",
        RUNBOOK,
        "--incident",
        "handoff-last-week",
        "--output-dir",
        output,
        "-p",
        "output_dir",
        str(tmp_path / "none"),
    )
    return output


def old_incident(output: Path) -> None:
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=10)
    severity = {"id": "severity", "summary": "P3", "severity": "warning", "data": {"severity": "P3", "rule": "x"}}
    add_run(output / "INC-OLD", "triage", started, [severity])
    resolved = Finding("resolution", "resolved", "info", {"resolved_at": started + dt.timedelta(hours=2)})
    command_evidence.write(output, "INC-OLD", "close", {}, [resolved], [], started)


def test_the_handoff_lists_the_weeks_incidents_the_open_ones_and_the_environment_live(
    week, prod, server, run_runbook, tmp_path
):
    with (
        AlertmanagerServer(tmp_path / "alertmanager") as alertmanager,
        serve_pki(tmp_path / "pki") as pki,
    ):
        now = dt.datetime.now(dt.timezone.utc)
        alertmanager.post_alerts(
            {
                "labels": {"alertname": "HighErrorRate", "severity": "critical", "namespace": NS},
                "annotations": {"summary": "5xx <b>above</b> 10 %"},
                "startsAt": (now - dt.timedelta(minutes=3)).isoformat(),
                "endsAt": (now + dt.timedelta(hours=1)).isoformat(),
            }
        )
        outcome = run_runbook(
            RUNBOOK,
            *prod.runbook_args(NS),
            "-p", "output_dir", str(week),
            "-p", "dsn", server.dsn(),
            "-p", "alertmanager_url", alertmanager.url,
            "-p", "endpoints", json.dumps(pki.endpoints[:2]),
            "-p", "ca_file", str(pki.ca_file),
            "-p", "known_issues", '["tax-rates API flaps at night"]',
        )  # fmt: skip
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    findings = outcome.findings()

    listed = {row["incident"]: row for row in findings["incidents"]["data"]["incidents"]}
    assert set(listed) == {"INC-A", "INC-B"}  # not the old one, not the earlier handoff
    a, b = listed["INC-A"], listed["INC-B"]
    assert (a["severity"], a["state"], a["review"]) == ("P2", "closed", True)
    assert a["time_to_resolve"] and a["time_to_acknowledge"]  # the first run by hand acknowledged it
    assert (b["severity"], b["state"], b["review"], b["time_to_resolve"]) == ("P2", "open", False, None)
    assert b["duration"].endswith(" so far")
    assert findings["incidents"]["data"]["by_severity"] == {"P2": 2}
    assert (
        findings["open-incidents"]["data"]["open"] == ["INC-B"] and findings["open-incidents"]["severity"] == "warning"
    )
    assert findings["known-issues"]["data"]["known_issues"] == ["tax-rates API flaps at night"]

    checks = {c["check"]: c for c in findings["environment-health"]["data"]["checks"]}
    assert checks[f"pods not ready in {NS}"]["status"] == "ok"
    assert checks["certificates (cert-manager)"]["status"] == "attention"
    assert (
        "certificate/api-gateway-tls (expiring, 4 days left)" in checks["certificates (cert-manager)"]["detail"]
    )  # 5 days less a moment
    assert checks["certificates (endpoints)"]["status"] == "attention"
    assert (
        pki.expired in checks["certificates (endpoints)"]["detail"]
        and pki.valid not in checks["certificates (endpoints)"]["detail"]
    )
    assert checks["database connection pool"]["status"] == "ok"
    assert checks["alerts firing (Alertmanager)"] == {
        "check": "alerts firing (Alertmanager)",
        "status": "attention",
        "detail": "HighErrorRate (critical)",
    }
    [alert] = findings["environment-health"]["data"]["alerts_firing"]
    assert alert["summary"] == "5xx <b>above</b> 10 %"  # data, shown escaped in the notebook's table
    notebook = (outcome.evidence_path.parent / outcome.evidence["artifacts"][1]["path"]).read_text()
    assert "<b>above</b>" not in notebook
    assert {r.method for r in prod.requests} == {"GET"}


def test_targets_that_do_not_answer_are_rows_not_a_failed_handoff(run_runbook, tmp_path):
    outcome = run_runbook(
        RUNBOOK,
        "-p", "output_dir", str(tmp_path / "empty"),
        "-p", "kubeconfig", str(tmp_path / "no-kubeconfig"),
        "-p", "dsn", "host=127.0.0.1 port=1 connect_timeout=2",
        "-p", "alertmanager_url", f"http://127.0.0.1:{closed_port()}",
    )  # fmt: skip
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()
    statuses = {c["check"]: c["status"] for c in findings["environment-health"]["data"]["checks"]}
    assert statuses == {
        "pods not ready": "unreachable",
        "certificates (cert-manager)": "unreachable",
        "certificates (endpoints)": "not checked",
        "database connection pool": "unreachable",
        "alerts firing (Alertmanager)": "unreachable",
    }
    assert findings["incidents"]["summary"] == "0 incidents in the last 7 days"

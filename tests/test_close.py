"""`runbook close` and the review it leads to, on incidents that real runs opened, mitigated and verified.

One module-wide incident per outcome, each made by the real notebooks against the test Kubernetes API and a real
Prometheus (test_verify_recovery's scenarios): triage, the gateway runbook applying its fix, verify-recovery.
Each test works on a copy of the folder.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from runbooks import cli, escalation
from runbooks.evidence import schema
from runbooks_sandbox.kubeapi.kubeconfig import write_kubeconfig
from runbooks_sandbox.kubeapi.server import KubeApiServer
from runbooks_sandbox.prometheus import PrometheusServer, http_traffic
from test_verify_recovery import scenarios

NS = "autolytiq-prod"


def runbook(*args: str):
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run(output: Path, incident: str, name: str, *args: str) -> dict:
    result = runbook("run", name, "--incident", incident, "--output-dir", output, *args)
    assert result.exit_code == 0, result.output
    return json.loads(Path(result.stdout.splitlines()[-1]).read_text())


@pytest.fixture(scope="module")
def incidents(tmp_path_factory):
    """Incident folders: `recovered` (triage P2, the gateway runbook's restart applied, verified recovered),
    `failing` (triage P2, verified not recovered), `unverified` (triage only)."""
    output = tmp_path_factory.mktemp("output")
    now = float(int(time.time()))
    traffic = scenarios(now)
    with (
        KubeApiServer() as kube,
        PrometheusServer(http_traffic(traffic["recovered"])) as recovered,
        PrometheusServer(http_traffic(traffic["failing"])) as failing,
    ):
        kube.load("autolytiq-prod")
        kubeconfig = write_kubeconfig(output.parent / "kubeconfig", kube.url, context="test")
        cluster = ["-p", "kubeconfig", str(kubeconfig), "-p", "context", "test", "-p", "namespace", NS]
        for incident, prom in (("recovered", recovered.url), ("failing", failing.url), ("unverified", recovered.url)):
            run(output, incident, "triage", *cluster, "-p", "prometheus_url", prom)
        run(output, "recovered", "api-gateway-high-error-rate", *cluster, "-p", "apply", "true")
        run(output, "recovered", "verify-recovery", "-p", "prometheus_url", recovered.url)
        run(output, "failing", "verify-recovery", "-p", "prometheus_url", failing.url)
    return output


@pytest.fixture
def output(incidents, tmp_path):
    """A copy of the incidents this test may change."""
    return Path(shutil.copytree(incidents, tmp_path / "output"))


def close(output: Path, incident: str, *args: str):
    return runbook("close", incident, "--output-dir", output, *args)


def records(folder: Path, runbook_name: str) -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*.evidence.json"))]
    return [r for r in found if r["runbook"] == runbook_name]


# --- closing


def test_a_recovered_incident_closes_and_says_when_its_review_is_due(output):
    result = close(output, "recovered")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    [record] = records(output / "recovered", "close")
    jsonschema.validate(record, schema())
    assert record["artifacts"] == [] and record["status"] == "completed"
    resolution = record["findings"][0]
    data = resolution["data"]
    resolved = dt.datetime.fromisoformat(data["resolved_at"])
    due = escalation.review_due("P2", resolved)
    assert (data["forced"], data["severity"], data["review_due"]) == (False, "P2", due.due.isoformat())
    assert data["recovery"]["status"] == "recovered" and data["recovery"]["evidence"].endswith(
        "-verify-recovery.evidence.json"
    )
    assert record["actions"] == [
        {
            "id": "close",
            "mode": "applied",
            "target": "incident recovered",
            "result": f"closed: recovered per verify-recovery ({data['recovery']['evidence']})",
        }
    ]
    assert lines[0].startswith("recovered closed: resolved ") and "(recovered per verify-recovery (" in lines[0]
    assert lines[1] == f"post-incident review due by {due.due:%a %Y-%m-%d} ET (P2: within 3 business days)"
    assert lines[-1].endswith("-close.evidence.json")
    # The close joins the chain: verify still finds it whole, and a second close is refused.
    assert runbook("verify", "recovered", "--output-dir", output).exit_code == 0
    again = close(output, "recovered")
    assert again.exit_code == 2 and "closed already" in again.stderr
    assert len(records(output / "recovered", "close")) == 1


@pytest.mark.parametrize(
    "incident, says",
    [("failing", "says not-recovered: Not recovered"), ("unverified", "no verify-recovery run")],
)
def test_without_a_confirmed_recovery_it_stays_open(output, incident, says):
    result = close(output, incident)
    assert result.exit_code == cli_not_recovered() == 4
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr
    assert "run verify-recovery, or close with --force REASON" in result.stderr
    assert records(output / incident, "close") == []


def test_force_closes_with_the_reason_recorded(output):
    assert close(output, "failing", "--force", "   ").exit_code == 2  # a reason, not blanks
    result = close(output, "failing", "--force", "errors are a known batch job; customers unaffected")
    assert result.exit_code == 0, result.output
    [record] = records(output / "failing", "close")
    resolution = record["findings"][0]
    assert resolution["severity"] == "warning"
    assert resolution["data"]["forced"] is True
    assert resolution["data"]["reason"] == "errors are a known batch job; customers unaffected"
    assert resolution["data"]["recovery"]["status"] == "not-recovered"
    assert "forced: errors are a known batch job" in result.stdout


def cli_not_recovered() -> int:
    from runbooks.closing import NotRecovered

    return NotRecovered.exit_code


# --- the review after closing


def test_the_review_shows_deadline_meeting_impact_and_chart(output):
    assert close(output, "recovered").exit_code == 0
    result = runbook("report", "recovered", "--output-dir", output)
    assert result.exit_code == 0, result.output
    folder = output / "recovered"
    markdown, html = (folder / "review.md").read_text(), (folder / "review.html").read_text()
    resolution = records(folder, "close")[0]["findings"][0]["data"]
    due = dt.date.fromisoformat(resolution["review_due"])

    assert "- Status: closed, resolved " in markdown and "(recovery confirmed by verify-recovery)" in markdown
    assert f"Due by {due:%a %Y-%m-%d} ET (P2: within 3 business days)." in markdown
    # Attendees: the roles P2's row engaged over the incident (50 minutes: primary and secondary), the leads of
    # the services the evidence names (the deployment the gateway runbook restarted, its likely cause).
    assert "- Incident responder: Primary On-Call (PagerDuty (on-call schedule))" in markdown
    assert "- Incident responder: Secondary On-Call" in markdown
    assert "- Team lead of auth-service: @[name]" in markdown
    assert "- Optional stakeholders: Support, Product, Account management" in markdown
    # The agenda, answered where the evidence knows.
    assert "1. **Timeline Review (15 min)**" in markdown and "4. **Action Items (15 min)**" in markdown
    assert "   - When was it resolved? " in markdown and "not closed yet" not in markdown
    assert "   - What actions were taken? rollout-restart on deployment/auth-service in autolytiq-prod" in markdown
    assert "   - SLA impact: P2: response in " in markdown and "resolution in " in markdown
    assert "   - What caused the incident? memory-exhaustion in deployment auth-service" in markdown
    # Impact: the peak and how long each threshold held, from the recorded series (15 % errors for 10 minutes).
    assert "- Error rate: peak 15.0 %" in markdown
    over = next(line for line in markdown.splitlines() if line.startswith("- Time over each severity threshold"))
    minutes = {m.group(1): int(m.group(2)) for m in re.finditer(r"error rate >= (\d+) % \(P\d\): (\d+) min", over)}
    assert set(minutes) == {"1", "10"} and 8 <= minutes["10"] <= minutes["1"] <= 20, over
    assert "![Error rate and latency over the incident, against the baseline](review-impact.png)" in markdown
    assert (folder / "review-impact.png").read_bytes().startswith(b"\x89PNG")
    assert '<img src="data:image/png;base64,iVBOR' in html
    # The timeline shows the close.
    assert "| Closed: Resolved at " in markdown
    assert "`runbook close` (evidence `" in markdown


def test_an_open_incident_says_when_its_review_will_be_due(output):
    result = runbook("report", "unverified", "--output-dir", output)
    assert result.exit_code == 0, result.output
    markdown = (output / "unverified" / "review.md").read_text()
    assert "- Status: open (not closed with `runbook close`)" in markdown
    assert "Due once closed (`runbook close`): P1/P2 within 3 business days, P3 within 1 week." in markdown
    assert "When was it resolved? not closed yet" in markdown


# --- the deadline rule


@pytest.mark.parametrize(
    "severity, resolved, due",
    [
        ("P1", "2026-11-27T20:00:00Z", "2026-12-02"),  # Friday 15:00 ET: Mon, Tue, Wed
        ("P2", "2026-11-28T20:00:00Z", "2026-12-02"),  # Saturday: the same Wednesday
        ("P2", "2026-11-30T20:00:00Z", "2026-12-03"),  # Monday: Thursday
        ("P2", "2026-11-28T03:00:00Z", "2026-12-02"),  # Friday 22:00 ET (Saturday in UTC): counts from Friday
        ("P3", "2026-11-27T03:00:00Z", "2026-12-03"),  # Thursday 22:00 ET: one week
        ("P4", "2026-11-27T03:00:00Z", None),
    ],
)
def test_review_deadline(severity, resolved, due):
    result = escalation.review_due(severity, dt.datetime.fromisoformat(resolved.replace("Z", "+00:00")))
    assert result.due == (dt.date.fromisoformat(due) if due else None)

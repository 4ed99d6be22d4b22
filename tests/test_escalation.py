"""Escalation on time: an unresolved incident crossing 30 min, 1 h, 2 h is escalated once per column, drafted into
its evidence and posted to Slack (through the Slack receiver, runbooks_sandbox.receivers) when configured.

The incident logs are the lines `runbook serve` writes (alerts.jsonl); the last test runs `runbook serve` itself.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from evidence_files import add_run
from runbooks import chain, cli, command_evidence, notify
from runbooks.alerts import routing
from runbooks.alerts.escalations import escalate
from runbooks.alerts.service import Service as Service_
from runbooks.evidence import Finding, schema
from runbooks.runfiles import ALERT_LOG
from serving import Service, alert, notification, wait_for

START = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.timezone.utc)
HOSTILE = "Disk<!channel>Full"


@pytest.fixture
def integrations(receivers, tmp_path):
    path = receivers.write_integrations(tmp_path / "integrations.yaml", attempts=2, backoff_seconds=0.1)
    path.write_text(
        path.read_text().replace(
            "webhook_url_env: SLACK_WEBHOOK_URL\n",
            'webhook_url_env: SLACK_WEBHOOK_URL\n  mentions: {"Secondary On-Call": "<!subteam^S0ONCALL>"}\n'
            '  incident_url: "https://runbooks.example/incidents/{incident}"\n',
        )
    )
    return notify.load(path)


def log_alert(folder: Path, state: str, alertname: str = HOSTILE, starts_at: dt.datetime = START) -> None:
    """A line of the incident log as `runbook serve` writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    line = {
        "received_at": (starts_at + dt.timedelta(minutes=1)).isoformat(),
        "fingerprint": "f00d",
        "starts_at": starts_at.isoformat(),
        "status": "resolved" if state == "resolved" else "firing",
        "state": state,
        "alertname": alertname,
        "incident": folder.name,
        "runbook": None,
        "parameters": {},
        "alert": {},
        "reason": None,
    }
    chain.append(folder / ALERT_LOG, line)  # a record of the incident's chain, as the service appends it


def escalations(folder: Path) -> list[dict]:
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.evidence.json"))]
    return [r for r in records if r["runbook"] == "escalate"]


def test_each_column_is_escalated_once_and_posted_with_its_mentions(tmp_path, receivers, integrations):
    folder = tmp_path / "INC-900"
    log_alert(folder, "unrouted")
    assert escalate(tmp_path, folder, integrations, START + dt.timedelta(minutes=29)) is None  # 0-30 min: no one new

    path = escalate(tmp_path, folder, integrations, START + dt.timedelta(minutes=31))
    record = json.loads(path.read_text())
    jsonschema.validate(record, schema())
    finding = record["findings"][0]
    data = finding["data"]
    assert (data["column"], data["severity"], data["severity_assumed"]) == ("30-60 min", "P2", True)
    assert data["engage"] == ["Secondary On-Call"] and data["still_firing"] == [HOSTILE]
    assert finding["summary"] == "P2, 31 min unresolved (30-60 min): engage Secondary On-Call"
    # The runbook's Via Slack: @mention, incident link, current status, why escalating, what help is needed.
    text = data["text"]
    assert text.startswith(":arrow_double_up: ESCALATION: INC-900 (P2, assumed: no triage run)")
    assert "Incident: https://runbooks.example/incidents/INC-900" in text
    assert f"Current status: unresolved for 31 min; still firing: {HOSTILE} (since 2026-11-30 09:00 EST)" in text
    assert (
        "Why escalating: unresolved after 31 min: the escalation matrix (P2, 30-60 min) adds Secondary On-Call" in text
    )
    assert "Help needed: [What help is needed]" in text  # no suspected cause in the evidence yet
    [sent] = receivers.accepted("slack")
    assert sent.body["text"].startswith(":arrow_double_up: ESCALATION:")
    assert "\n<!subteam^S0ONCALL>\n" in sent.body["text"]  # the configured mention, as Slack markup
    assert "Disk&lt;!channel&gt;Full" in sent.body["text"] and "<!channel>" not in sent.body["text"]
    assert [a["id"] for a in record["actions"]] == ["escalate", "slack-escalation"]
    assert record["actions"][1]["result"] == "sent: HTTP 200 (attempt 1)"

    # Once per column: the same column again is nothing; the next one is escalated.
    assert escalate(tmp_path, folder, integrations, START + dt.timedelta(minutes=45)) is None
    later = json.loads(escalate(tmp_path, folder, integrations, START + dt.timedelta(minutes=61)).read_text())
    assert later["findings"][0]["data"]["engage"] == ["Engineering Manager"]
    assert "@eng-manager" in receivers.accepted("slack")[1].body["text"]
    assert len(escalations(folder)) == 2 and chain.verify(folder).intact


def test_first_seen_past_several_columns_it_escalates_the_latest_only(tmp_path, receivers, integrations):
    folder = tmp_path / "INC-901"
    log_alert(folder, "queued")
    escalate(tmp_path, folder, integrations, START + dt.timedelta(hours=2, minutes=5))
    [record] = escalations(folder)
    data = record["findings"][0]["data"]
    assert (data["column"], data["engage"]) == ("2+ hours", ["VP Engineering"])
    assert data["engaged_by_now"] == ["Primary On-Call", "Secondary On-Call", "Engineering Manager", "VP Engineering"]
    assert escalate(tmp_path, folder, integrations, START + dt.timedelta(hours=3)) is None


@pytest.mark.parametrize("why", ["resolved", "closed", "stale"])
def test_resolved_closed_or_stale_incidents_are_not_escalated(tmp_path, receivers, integrations, why):
    folder = tmp_path / "INC-902"
    log_alert(folder, "unrouted")
    at = START + dt.timedelta(minutes=40)
    if why == "resolved":
        log_alert(folder, "resolved")
    elif why == "closed":
        resolved = Finding("resolution", "closed", "info", {"resolved_at": START + dt.timedelta(minutes=35)})
        command_evidence.write(tmp_path, "INC-902", "close", {}, [resolved], [], START + dt.timedelta(minutes=35))
    else:
        at = START + dt.timedelta(hours=25)
    assert escalate(tmp_path, folder, integrations, at) is None
    assert escalations(folder) == [] and receivers.requests == []


def test_a_column_that_adds_nobody_is_drafted_not_posted(tmp_path, receivers, integrations):
    folder = tmp_path / "INC-903"
    log_alert(folder, "queued")
    triage = {"id": "severity", "summary": "P3", "severity": "warning", "data": {"severity": "P3", "rule": "x"}}
    add_run(folder, "triage", START, [triage])
    escalate(tmp_path, folder, integrations, START + dt.timedelta(minutes=31))
    [record] = escalations(folder)
    data = record["findings"][0]["data"]
    assert (data["severity"], data["severity_assumed"], data["engage"]) == ("P3", False, [])
    assert "adds nobody (Continue investigation)" in data["text"]
    assert record["actions"] == [
        {
            "id": "escalate",
            "mode": "dry-run",
            "target": "#incidents (Via Slack)",
            "result": "drafted into the incident's evidence",
        }
    ]
    assert receivers.requests == []


def test_without_slack_it_is_drafted_into_the_evidence_only(tmp_path):
    folder = tmp_path / "INC-904"
    log_alert(folder, "unrouted")
    escalate(tmp_path, folder, notify.load(), START + dt.timedelta(minutes=31))  # the default: no channel
    [record] = escalations(folder)
    assert [a["mode"] for a in record["actions"]] == ["dry-run"]
    review = CliRunner().invoke(cli.main, ["report", "INC-904", "--output-dir", str(tmp_path)])
    assert review.exit_code == 0, review.output
    assert (
        "| Escalation: P2, 31 min unresolved (30-60 min): engage Secondary On-Call |"
        in (folder / "review.md").read_text()
    )


def test_runbook_serve_escalates_an_alert_left_firing_once(tmp_path, receivers, integrations):
    output = tmp_path / "output"
    fired = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=65)).isoformat(timespec="seconds")
    options = ("--integrations", str(integrations.path), "--escalate-every", "0.5", "--routes", str(routes(tmp_path)))
    with Service(output, *options) as serve:
        payload = notification(
            alert("DiskAlmostFull", "0123456789abcdef", starts_at=fired.replace("+00:00", "Z"), incident="INC-905")
        )
        posted = serve.post(payload)
        assert posted.status_code == 202 and posted.json()["alerts"][0]["outcome"] == "unrouted"
        folder = output / "INC-905"
        wait_for(lambda: escalations(folder) and receivers.accepted("slack"), timeout=30, what="the escalation")
        time.sleep(2)  # four more looks at it
        assert len(escalations(folder)) == 1 and len(receivers.requests) == 1
    [record] = escalations(folder)
    assert record["findings"][0]["data"]["column"] == "1-2 hours"
    assert receivers.accepted("slack")[0].body["text"].startswith(":arrow_double_up: ESCALATION: INC-905 (P2")
    assert "incident INC-905: escalation 1-2 hours: slack: slack-escalation sent" in serve.log()


def test_kernels_start_without_the_integrations_secrets(tmp_path, receivers, integrations, monkeypatch):
    monkeypatch.setenv("RUNBOOK_WEBHOOK_TOKEN", "t0ken")
    service = Service_(routing.load(routes(tmp_path)), tmp_path / "output", 1, "t0ken", integrations)
    environment = service.kernel_environment()
    assert not {"RUNBOOK_WEBHOOK_TOKEN", "SLACK_WEBHOOK_URL", "STATUSPAGE_API_KEY", "PAGERDUTY_ROUTING_KEY"} & set(
        environment
    )
    assert environment["PATH"] == os.environ["PATH"]


def routes(tmp_path: Path) -> Path:
    """Routing with no route: every alert is logged as unrouted and starts no run."""
    path = tmp_path / "routes.yaml"
    path.write_text("routes: {}\n")
    return path

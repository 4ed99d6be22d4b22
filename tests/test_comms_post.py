"""`runbook comms INC --kind KIND --post`: Slack, Statuspage and PagerDuty, through local receivers that accept only
each API's documented request shape (runbooks_sandbox.receivers), and what the evidence keeps of it.

The incidents are opened by real triage runs (the test Kubernetes API, a real Prometheus): P2 on 12 % errors, P4 on
quiet traffic. Each test copies them before posting.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
from pathlib import Path

import jsonschema
import pytest
import requests
from click.testing import CliRunner

from evidence_files import add_run
from runbooks import cli
from runbooks.evidence import schema
from runbooks.incident import load
from runbooks.notify.slack import escape
from runbooks_sandbox.kubeapi.kubeconfig import write_kubeconfig
from runbooks_sandbox.kubeapi.server import KubeApiServer
from runbooks_sandbox.prometheus import NORMAL_LATENCY, PrometheusServer, Traffic, http_traffic
from runbooks_sandbox.receivers import Receivers
from test_verify_recovery import scenarios

HOSTILE = "<!channel> please <https://evil.example|click> & see"


def runbook(*args) -> object:
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def incidents(tmp_path_factory):
    """`INC-P2` (triage: 12 % errors) and `INC-P4` (triage: quiet), each one real triage run."""
    output = tmp_path_factory.mktemp("output")
    now = float(int(time.time()))
    quiet = [Traffic(now - 7 * 86400 - 4200, now - 7 * 86400 + 600, 100, 0.002, NORMAL_LATENCY)]
    quiet.append(Traffic(now - 4200, now + 600, 100, 0.002, NORMAL_LATENCY))
    with (
        KubeApiServer() as kube,
        PrometheusServer(http_traffic(scenarios(now)["failing"])) as failing,
        PrometheusServer(http_traffic(quiet)) as calm,
    ):
        kube.load("autolytiq-prod")
        kubeconfig = write_kubeconfig(output.parent / "kubeconfig", kube.url, context="test")
        for incident, prom in (("INC-P2", failing.url), ("INC-P4", calm.url)):
            result = runbook(
                "run", "triage", "--incident", incident, "--output-dir", output, "-p", "kubeconfig", kubeconfig,
                "-p", "context", "test", "-p", "namespace", "autolytiq-prod", "-p", "prometheus_url", prom,
            )  # fmt: skip
            assert result.exit_code == 0, result.output
    return output


@pytest.fixture
def output(incidents, tmp_path):
    return Path(shutil.copytree(incidents, tmp_path / "output"))


@pytest.fixture
def integrations(receivers, tmp_path):
    return receivers.write_integrations(
        tmp_path / "integrations.yaml", attempts=3, backoff_seconds=0.1, timeout_seconds=1
    )


def post(output: Path, incident: str, kind: str, integrations: Path):
    return runbook("comms", incident, "--kind", kind, "--post", "--integrations", integrations, "--output-dir", output)


def comms_records(folder: Path) -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*.evidence.json"))]
    return [r for r in found if r["runbook"] == "comms"]


def no_secret_written(folder: Path, receivers: Receivers) -> None:
    for path in folder.iterdir():
        text = path.read_text(errors="replace")
        for secret in (receivers.slack_webhook_path, receivers.statuspage_key, receivers.pagerduty_key):
            assert secret not in text, path.name


# --- Slack


def test_slack_gets_the_message_as_json_and_the_evidence_keeps_what_was_sent(output, receivers, integrations):
    printed = runbook("comms", "INC-P2", "--kind", "slack-update", "--output-dir", output).stdout  # as drafted
    result = post(output, "INC-P2", "slack-update", integrations)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "slack: slack-update sent: HTTP 200 (attempt 1)"
    [arrived] = receivers.accepted("slack")
    assert arrived.method == "POST" and arrived.headers["content-type"] == "application/json"
    assert set(arrived.body) == {"text"}
    assert arrived.body["text"].split("Next Update:")[0] == escape(printed).split("Next Update:")[0]  # the draft

    folder = output / "INC-P2"
    [record] = comms_records(folder)
    jsonschema.validate(record, schema())
    assert lines[-1] == str(folder / Path(lines[-1]).name) and record["status"] == "completed"
    assert record["actions"] == [
        {
            "id": "slack-update",
            "mode": "applied",
            "target": "Slack (incoming webhook $SLACK_WEBHOOK_URL)",
            "result": "sent: HTTP 200 (attempt 1)",
        }
    ]
    message = record["findings"][0]
    assert message["id"] == "message-slack" and message["data"]["text"] == arrived.body["text"]
    assert message["data"]["answer"] == "ok" and [a["status"] for a in message["data"]["attempts"]] == [200]
    no_secret_written(folder, receivers)
    assert runbook("verify", "INC-P2", "--output-dir", output).exit_code == 0
    # The review's timeline shows it.
    assert runbook("report", "INC-P2", "--output-dir", output).exit_code == 0
    review = (folder / "review.md").read_text()
    assert "| Message sent: slack-update to Slack (incoming webhook \\$SLACK\\_WEBHOOK\\_URL): sent: HTTP 200" in review


def test_text_from_the_evidence_cannot_become_slack_markup(output, receivers, integrations):
    hostile = {"id": "dependency-down", "summary": HOSTILE, "severity": "critical", "data": {}}
    add_run(output / "INC-P2", "third-party-api-down", dt.datetime.now(dt.timezone.utc), [hostile])
    assert post(output, "INC-P2", "slack-update", integrations).exit_code == 0
    text = receivers.accepted("slack")[0].body["text"]
    assert "&lt;!channel&gt; please &lt;https://evil.example|click&gt; &amp; see" in text
    assert "<!channel>" not in text and "<https://" not in text


def test_a_private_channel_keeps_only_the_texts_hash(output, receivers, integrations):
    integrations.write_text(
        integrations.read_text().replace("SLACK_WEBHOOK_URL\n", "SLACK_WEBHOOK_URL\n  private: true\n")
    )
    assert post(output, "INC-P2", "slack-resolved", integrations).exit_code == 0
    sent = receivers.accepted("slack")[0].body["text"]
    [record] = comms_records(output / "INC-P2")
    data = record["findings"][0]["data"]
    assert "text" not in data and "request" not in data
    assert data["sha256"] == hashlib.sha256(sent.encode()).hexdigest()
    assert "INCIDENT RESOLVED" not in json.dumps(record)


# --- Statuspage


def test_the_status_page_incident_is_created_then_updated(output, receivers, integrations):
    first = post(output, "INC-P2", "status-investigating", integrations)
    assert first.exit_code == 0, first.output
    second = post(output, "INC-P2", "status-identified", integrations)
    assert second.exit_code == 0, second.output
    created, updated = receivers.accepted("statuspage")
    page = receivers.statuspage_page
    assert (created.method, created.path) == ("POST", f"/v1/pages/{page}/incidents")
    [incident_id] = receivers.incidents
    assert (updated.method, updated.path) == ("PATCH", f"/v1/pages/{page}/incidents/{incident_id}")
    assert created.headers["authorization"] == f"OAuth {receivers.statuspage_key}"
    body = created.body["incident"]
    assert body["name"] == "Investigating Issues with [Feature/Service]"
    assert (body["status"], body["impact_override"], body["deliver_notifications"]) == ("investigating", "major", True)
    assert body["body"].startswith("We are currently investigating") and "Posted:" not in body["body"]
    assert updated.body == {"incident": {"status": "identified", "body": updated.body["incident"]["body"]}}
    assert [u["status"] for u in receivers.incidents[incident_id]["incident_updates"]] == [
        "investigating",
        "identified",
    ]
    records = comms_records(output / "INC-P2")
    assert [r["findings"][0]["data"]["reference"] for r in records] == [incident_id, incident_id]
    assert records[1]["actions"][0]["target"] == f"Statuspage page {page} incident {incident_id}"
    no_secret_written(output / "INC-P2", receivers)


def test_p4_is_internal_only_and_never_reaches_the_status_page(output, receivers, integrations):
    result = post(output, "INC-P4", "status-investigating", integrations)
    assert result.exit_code == 0
    assert result.stdout == "statuspage: skipped: P4 is internal only (not on the public status page)\n"
    assert receivers.requests == [] and comms_records(output / "INC-P4") == []


# --- PagerDuty


def test_pagerduty_trigger_acknowledge_resolve_share_the_incident_as_dedup_key(output, receivers, integrations):
    printed = runbook("comms", "INC-P2", "--kind", "pagerduty-trigger", "--output-dir", output).stdout
    assert json.loads(printed)["routing_key"] == "$PAGERDUTY_ROUTING_KEY"  # never the key itself
    for kind in ("pagerduty-trigger", "pagerduty-acknowledge", "pagerduty-resolve"):
        result = post(output, "INC-P2", kind, integrations)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"pagerduty: {kind} sent: HTTP 202 (attempt 1)")
    trigger, acknowledge, resolve = (r.body for r in receivers.accepted("pagerduty"))
    assert {b["dedup_key"] for b in (trigger, acknowledge, resolve)} == {"INC-P2"}
    assert [b["event_action"] for b in (trigger, acknowledge, resolve)] == ["trigger", "acknowledge", "resolve"]
    assert trigger["routing_key"] == receivers.pagerduty_key
    payload = trigger["payload"]
    assert payload["summary"].startswith("INC-P2: P2 - error rate >= 10 %") and payload["severity"] == "error"
    assert payload["source"] == "autolytiq-sandbox" and payload["custom_details"]["severity"] == "P2"
    assert "payload" not in acknowledge and set(resolve) == {"routing_key", "event_action", "dedup_key"}
    records = comms_records(output / "INC-P2")
    assert [r["findings"][0]["data"]["request"]["routing_key"] for r in records] == ["$PAGERDUTY_ROUTING_KEY"] * 3
    no_secret_written(output / "INC-P2", receivers)
    # The acknowledgement counts as the incident's: the handoff's time to acknowledge reads it.
    incident = load(output, "INC-P2")
    assert incident.acknowledged_at is not None


# --- failures: retried with backoff, then recorded, never lost


def test_a_5xx_is_retried_until_it_goes_through(output, receivers, integrations):
    receivers.fail_next("slack", 2, 503)
    result = post(output, "INC-P2", "slack-update", integrations)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "slack: slack-update sent: HTTP 200 (attempt 3)"
    [record] = comms_records(output / "INC-P2")
    assert [a["status"] for a in record["findings"][0]["data"]["attempts"]] == [503, 503, 200]


def test_a_timeout_is_retried(output, receivers, integrations):
    receivers.fail_next("slack", 1, None, delay=2.5)  # answers nothing within timeout_seconds 1
    result = post(output, "INC-P2", "slack-update", integrations)
    assert result.exit_code == 0
    [record] = comms_records(output / "INC-P2")
    attempts = record["findings"][0]["data"]["attempts"]
    assert attempts[0]["error"] == "no answer within 1 s" and attempts[-1]["status"] == 200


def test_a_post_failing_every_attempt_is_recorded_as_failed(output, receivers, integrations):
    receivers.fail_next("pagerduty", 3, 500)
    result = post(output, "INC-P2", "pagerduty-trigger", integrations)
    assert result.exit_code == 1
    assert (
        result.stdout.splitlines()[0]
        == "pagerduty: pagerduty-trigger failed after 3 attempts: HTTP 500: upstream trouble"
    )
    assert result.stderr == "runbook: INC-P2: 1 message not delivered (recorded)\n"
    [record] = comms_records(output / "INC-P2")
    jsonschema.validate(record, schema())
    assert record["status"] == "failed" and record["error"]["ename"] == "PostFailed"
    assert record["actions"][0]["result"].startswith("failed after 3 attempts: HTTP 500")
    assert record["findings"][0]["severity"] == "warning" and record["findings"][0]["data"]["sent"] is False
    assert len(receivers.requests) == 3


def test_a_request_the_api_refuses_is_not_retried(output, receivers, integrations, monkeypatch):
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "not-the-key")
    result = post(output, "INC-P2", "pagerduty-trigger", integrations)
    assert result.exit_code == 1
    assert "failed after 1 attempt: HTTP 400" in result.stdout and "'routing_key' is invalid" in result.stdout
    assert len(receivers.requests) == 1
    assert "not-the-key" not in json.dumps(comms_records(output / "INC-P2"))


# --- channels not configured


def test_a_channel_not_configured_is_skipped_with_a_line(output, receivers, integrations, monkeypatch):
    integrations.write_text(integrations.read_text().split("pagerduty:")[0])
    result = post(output, "INC-P2", "pagerduty-trigger", integrations)
    assert result.exit_code == 0 and result.stdout == f"pagerduty: skipped: not configured in {integrations}\n"
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    result = post(output, "INC-P2", "slack-update", integrations)
    assert result.exit_code == 0 and result.stdout == "slack: skipped: $SLACK_WEBHOOK_URL is not set\n"
    assert receivers.requests == [] and comms_records(output / "INC-P2") == []


def test_the_default_integrations_configure_no_channel(output):
    result = runbook("comms", "INC-P2", "--kind", "slack-update", "--post", "--output-dir", output)
    assert result.exit_code == 0 and result.stdout.startswith("slack: skipped: not configured in ")


@pytest.mark.parametrize(
    "content, message",
    [
        ("slack:\n  webhook_url_env: https://hooks.slack.com/services/T/B/x\n", "must name an environment variable"),
        ("slack:\n  webhook_url: x\n", "unknown keys ['webhook_url']"),
        ("email:\n  to: x\n", "unknown sections ['email']"),
    ],
)
def test_an_integrations_file_with_a_secret_or_a_typo_is_refused(output, tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = post(output, "INC-P2", "slack-update", path)
    assert result.exit_code == 2 and message in result.stderr


def test_the_customer_email_goes_to_no_channel(output, integrations):
    result = post(output, "INC-P2", "customer-email", integrations)
    assert result.exit_code == 2 and "customer-email goes to no channel" in result.stderr


# --- the receivers hold each API to its documented shape


def test_the_receivers_refuse_what_the_real_apis_refuse(receivers):
    slack = requests.post(receivers.slack_webhook, data={"payload": '{"text": "x"}'}, timeout=5)
    assert (slack.status_code, slack.text) == (400, "invalid_payload")
    assert requests.post(receivers.slack_webhook + "x", json={"text": "x"}, timeout=5).status_code == 404
    page = f"{receivers.url}/v1/pages/{receivers.statuspage_page}/incidents"
    incident = {"incident": {"name": "x", "status": "investigating"}}
    assert requests.post(page, json=incident, headers={"Authorization": "Bearer x"}, timeout=5).status_code == 401
    auth = {"Authorization": f"OAuth {receivers.statuspage_key}"}
    assert requests.post(page, json={"incident": {"status": "down"}}, headers=auth, timeout=5).status_code == 422
    event = {"routing_key": receivers.pagerduty_key, "event_action": "trigger", "dedup_key": "x"}
    refused = requests.post(f"{receivers.url}/v2/enqueue", json=event, timeout=5)
    assert refused.status_code == 400 and "'payload' is required for trigger" in refused.json()["errors"]
    assert receivers.accepted("slack") == receivers.accepted("statuspage") == receivers.accepted("pagerduty") == []

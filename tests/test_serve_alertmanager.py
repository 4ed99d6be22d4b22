"""End to end with a real Alertmanager: an alert posted to its API reaches `runbook serve` through the
webhook receiver (bearer token), the routed runbook runs against the test PostgreSQL mid-incident, its
evidence carries the alert; the resolved notification is logged and starts nothing."""

import datetime as dt
import json

import jsonschema
import pytest

from runbooks.evidence import schema
from runbooks.runfiles import ALERT_LOG
from runbooks_sandbox.incidents import hold_pools
from serving import TOKEN, Alertmanager, Service, wait_for

LABELS = {
    "alertname": "DatabaseConnectionPoolExhausted",
    "severity": "critical",
    "namespace": "autolytiq-prod",
    "service": "deal-service",
}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@pytest.fixture
def serve(server, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(f"dsn: '{server.dsn()}'\n")
    with Service(tmp_path / "output", "-f", str(params), workers=1) as running:
        yield running


def test_an_alert_through_alertmanager_runs_its_runbook_with_the_alert_in_the_evidence(server, serve, tmp_path):
    started = now()
    posted = {
        "labels": LABELS,
        "annotations": {"summary": "deal-service pool exhausted"},
        "startsAt": started,
        "generatorURL": "http://prometheus.example/graph?g0.expr=pg_stat_activity_count",
    }
    with Alertmanager(tmp_path / "alertmanager", f"{serve.url}/alerts", TOKEN) as alertmanager, hold_pools(server):
        alertmanager.post_alerts(posted)
        path = wait_for(lambda: next(serve.output_dir.glob("*/*.evidence.json"), None), what="the run's evidence")
        record = json.loads(path.read_text())

        alertmanager.post_alerts({**posted, "endsAt": now()})  # resolved
        log = path.parent / ALERT_LOG
        wait_for(
            lambda: "resolved" in {json.loads(line)["state"] for line in log.read_text().splitlines()},
            what="the resolved notification in the incident's log",
        )

    jsonschema.validate(record, schema())
    assert record["runbook"] == "db-connection-pool-exhausted" and record["status"] == "completed"
    assert record["parameters"]["dsn"] == server.dsn()
    findings = {f["id"]: f for f in record["findings"]}
    assert findings["pool-usage"]["severity"] == "critical"
    assert findings["pool-usage"]["data"]["client_connections"] == 17  # the pools held in the test PostgreSQL
    alert = record["alert"]
    assert alert["labels"] == LABELS
    assert alert["annotations"] == posted["annotations"]
    assert alert["generatorURL"] == posted["generatorURL"]
    assert alert["startsAt"].startswith(started[:-1])
    assert len(alert["fingerprint"]) == 16 and 'alertname="DatabaseConnectionPoolExhausted"' in alert["groupKey"]
    assert path.parent.name.startswith("DatabaseConnectionPoolExhausted-")
    assert len(list(serve.output_dir.glob("*/*.evidence.json"))) == 1  # the resolved notification ran nothing
    assert [r["status"] for r in serve.runs()] == ["completed"]

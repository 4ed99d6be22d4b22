"""POST /alerts and the read endpoints, in-process through Starlette's TestClient (no workers run here:
what a request leaves is read back from the queue, the incident logs and the metrics)."""

import datetime as dt
import json
import sqlite3

import pytest
import yaml
from starlette.testclient import TestClient

from runbooks.alerts import routing, service
from runbooks.alerts.queue import Queue
from serving import TOKEN, alert, notification

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "pw-never-shown-9d2"


@pytest.fixture
def output(tmp_path):
    return tmp_path / "output"


@pytest.fixture
def client(tmp_path, output):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dsn": f"host=db.internal user=admin password={PASSWORD} dbname=autolytiq"}))
    app = service.create_app(routing.load(files=(params,)), output, workers=1, token=TOKEN)
    return TestClient(app)


def queue_rows(output):
    with sqlite3.connect(output / service.QUEUE) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM alerts ORDER BY id")]


def log_lines(output, incident):
    return [json.loads(line) for line in (output / incident / "alerts.jsonl").read_text().splitlines()]


def metric(client, line_start):
    text = client.get("/metrics").text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start)]
    return values[0] if values else 0.0


def test_a_firing_alert_is_queued_logged_and_answered_202(client, output):
    payload = notification(alert("DatabaseConnectionPoolExhausted", "a1b2c3d4e5f60718", namespace="autolytiq-prod"))
    response = client.post("/alerts", json=payload, headers=AUTH)

    assert response.status_code == 202
    (outcome,) = response.json()["alerts"]
    assert outcome["outcome"] == "queued" and outcome["runbook"] == "db-connection-pool-exhausted"
    incident = outcome["incident"]
    assert incident.startswith("DatabaseConnectionPoolExhausted-")
    (row,) = queue_rows(output)
    assert (row["state"], row["fingerprint"], row["incident"]) == ("queued", "a1b2c3d4e5f60718", incident)
    assert json.loads(row["alert"])["labels"]["namespace"] == "autolytiq-prod"
    (line,) = log_lines(output, incident)
    assert line["state"] == "queued" and line["alert"]["groupKey"] == payload["groupKey"]
    assert metric(client, 'runbook_alerts_received_total{status="firing"}') == 1
    assert metric(client, 'runbook_queue_depth{state="queued"}') == 1


def test_the_same_alert_resent_is_queued_once(client, output):
    first = alert("SlowDatabaseQueries", "00000000000000aa", threshold_seconds="3")
    again = notification(first, alert("SlowDatabaseQueries", "00000000000000bb"))
    client.post("/alerts", json=notification(first), headers=AUTH)
    response = client.post("/alerts", json=again, headers=AUTH)

    assert [o["outcome"] for o in response.json()["alerts"]] == ["duplicate", "queued"]
    assert [r["fingerprint"] for r in queue_rows(output)] == ["00000000000000aa", "00000000000000bb"]
    assert metric(client, "runbook_alerts_deduplicated_total") == 1
    # The same fingerprint firing again later (a new startsAt) is a new alert.
    later = alert("SlowDatabaseQueries", "00000000000000aa", starts_at="2026-11-26T12:00:00Z")
    assert client.post("/alerts", json=notification(later), headers=AUTH).json()["alerts"][0]["outcome"] == "queued"


def test_resolved_alerts_are_logged_in_the_incident_and_start_nothing(client, output):
    firing = alert("HighErrorRate", "0000000000000abc", namespace="autolytiq-prod")
    resolved = alert("HighErrorRate", "0000000000000abc", status="resolved", namespace="autolytiq-prod")
    client.post("/alerts", json=notification(firing), headers=AUTH)
    response = client.post("/alerts", json=notification(resolved, status="resolved"), headers=AUTH)
    client.post("/alerts", json=notification(resolved, status="resolved"), headers=AUTH)  # re-sent

    (outcome,) = response.json()["alerts"]
    assert outcome["outcome"] == "resolved" and outcome["runbook"] is None
    assert [r["state"] for r in queue_rows(output)] == ["queued", "resolved"]
    assert [line["state"] for line in log_lines(output, outcome["incident"])] == ["queued", "resolved"]


def test_an_alert_without_a_route_is_recorded_as_unrouted(client, output):
    response = client.post("/alerts", json=notification(alert("DiskAlmostFull", "0000000000000def")), headers=AUTH)
    (outcome,) = response.json()["alerts"]
    assert outcome["outcome"] == "unrouted"
    assert queue_rows(output)[0]["state"] == "unrouted"
    assert log_lines(output, outcome["incident"])[0]["state"] == "unrouted"
    assert metric(client, 'runbook_alerts_not_run_total{reason="unrouted"}') == 1


@pytest.mark.parametrize(
    "labels",
    [
        {"namespace": "prod\nimport os; os.system('id')"},
        {"namespace": "autolytiq-prod", "app": "auth-service,tier!=x"},
        {"namespace": "autolytiq-prod", "app": "x) or (y"},
        {"namespace": "autolytiq-prod'; DROP TABLE deals; --"},
    ],
)
def test_a_hostile_label_rejects_the_alert_and_reaches_nothing(client, output, labels):
    response = client.post(
        "/alerts", json=notification(alert("CriticalMemoryUsage", "0000000000000bad", **labels)), headers=AUTH
    )
    assert response.status_code == 202
    (outcome,) = response.json()["alerts"]
    assert outcome["outcome"] == "rejected" and "is not a Kubernetes" in outcome["reason"]
    (row,) = queue_rows(output)
    assert row["state"] == "rejected" and json.loads(row["parameters"]) == {}
    assert metric(client, 'runbook_alerts_not_run_total{reason="rejected"}') == 1
    assert not list(output.glob("*/*.ipynb"))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_no_or_wrong_token_is_401_and_queues_nothing(client, output, headers):
    response = client.post("/alerts", json=notification(alert("HighErrorRate", "0000000000000001")), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert queue_rows(output) == []
    assert client.get("/runs", headers=headers).status_code == 401


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(client, output):
    big = b"[" + b" " * service.MAX_BODY + b"]"
    assert client.post("/alerts", content=big, headers=AUTH).status_code == 413
    streamed = client.post("/alerts", content=iter([big[:1000], big[1000:]]), headers=AUTH)  # chunked: no length
    assert streamed.status_code == 413
    assert queue_rows(output) == []


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00", b"[" * 100000 + b"]" * 100000])
def test_a_body_that_is_not_json_is_400(client, body):
    response = client.post("/alerts", content=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON")


def valid():
    return notification(alert("HighErrorRate", "0000000000000001"))


def without(path):
    payload = valid()
    *parents, last = path
    target = payload
    for key in parents:
        target = target[key]
    del target[last]
    return payload


def setting(path, value):
    payload = valid()
    *parents, last = path
    target = payload
    for key in parents:
        target = target[key]
    target[last] = value
    return payload


@pytest.mark.parametrize(
    "payload,field",
    [
        ([], "payload"),
        (without(["groupKey"]), "payload: 'groupKey' is a required property"),
        (without(["version"]), "'version' is a required property"),
        (setting(["version"], "3"), "version"),
        (setting(["status"], "burning"), "status"),
        (setting(["groupLabels"], {"alertname": 1}), "groupLabels.alertname"),
        (setting(["commonAnnotations"], []), "commonAnnotations"),
        (setting(["truncatedAlerts"], -1), "truncatedAlerts"),
        (setting(["alerts"], {}), "alerts"),
        (without(["alerts", 0, "fingerprint"]), "alerts[0]: 'fingerprint' is a required property"),
        (without(["alerts", 0, "startsAt"]), "alerts[0]: 'startsAt' is a required property"),
        (setting(["alerts", 0, "fingerprint"], "../../etc/passwd"), "alerts[0].fingerprint"),
        (setting(["alerts", 0, "startsAt"], "yesterday"), "alerts[0].startsAt"),
        (setting(["alerts", 0, "status"], "pending"), "alerts[0].status"),
        (setting(["alerts", 0, "labels"], {"severity": "critical"}), "alerts[0].labels: 'alertname' is a required"),
        (setting(["alerts", 0, "labels"], {"alertname": "X", "namespace": ["a"]}), "alerts[0].labels.namespace"),
        (setting(["alerts", 0, "annotations"], None), "alerts[0].annotations"),
        (setting(["alerts", 0, "generatorURL"], 5), "alerts[0].generatorURL"),
    ],
)
def test_a_payload_of_the_wrong_shape_is_422_naming_the_field(client, output, payload, field):
    response = client.post("/alerts", json=payload, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"].startswith(field) or field in response.json()["error"]
    assert queue_rows(output) == []


def test_runs_lists_queued_runs_without_the_dsn_password(client):
    client.post(
        "/alerts", json=notification(alert("DatabaseConnectionPoolExhausted", "0000000000000042")), headers=AUTH
    )
    client.post("/alerts", json=notification(alert("NoSuchAlert", "0000000000000043")), headers=AUTH)
    response = client.get("/runs", headers=AUTH)
    (run,) = response.json()["runs"]  # the unrouted alert is no run
    assert (run["runbook"], run["status"], run["fingerprint"]) == (
        "db-connection-pool-exhausted",
        "queued",
        "0000000000000042",
    )
    assert run["evidence"] is None
    assert PASSWORD not in response.text
    assert client.get("/runs?limit=0", headers=AUTH).status_code == 400


def test_healthz_needs_no_token_and_shows_the_queue(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "queued": 0, "running": 0}


def test_wrong_methods_and_paths(client):
    assert client.get("/alerts", headers=AUTH).status_code == 405
    assert client.post("/nope", headers=AUTH).status_code == 404


def test_nothing_stored_holds_the_password(client, output):
    client.post(
        "/alerts", json=notification(alert("DatabaseConnectionPoolExhausted", "0000000000000042")), headers=AUTH
    )
    for path in output.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def record(status: str, error, alert: dict) -> dict:
    from runbooks.evidence import Record

    at = dt.datetime(2026, 11, 26, 10, tzinfo=dt.timezone.utc)
    return Record("db-slow-queries", "inc", at, at, status, error, {}, (), (), (), {}, alert).to_json()


def test_a_run_stopped_after_its_evidence_was_written_is_finished_from_it_not_run_again(tmp_path):
    from runbooks.alerts.queue import MAX_ATTEMPTS, Entry
    from runbooks.alerts.telemetry import Telemetry
    from runbooks.alerts.workers import Workers
    from runbooks.evidence import RunError

    queue = Queue(tmp_path / "q.sqlite3")
    alerts = {n: {"fingerprint": n * 16, "startsAt": "2026-11-26T10:00:00Z"} for n in ("a", "b")}
    queue.add(
        [
            Entry(a["fingerprint"], a["startsAt"], "firing", "queued", "X", "inc", "db-slow-queries", {}, a)
            for a in alerts.values()
        ]
    )
    queue.claim(), queue.claim()
    # The service was killed between writing the first run's evidence and marking it completed.
    (tmp_path / "inc").mkdir()
    evidence = tmp_path / "inc" / "20261126T100001Z-db-slow-queries.evidence.json"
    evidence.write_text(json.dumps(record("completed", None, alerts["a"])))
    (tmp_path / "inc" / "20261126T100002Z-db-slow-queries.evidence.json").write_text("{not json")  # ignored
    # An earlier attempt of the second alert, cut short by an earlier kill, does not finish it.
    (tmp_path / "inc" / "20261126T090000Z-db-slow-queries.evidence.json").write_text(
        json.dumps(record("failed", RunError(None, "Interrupted", "cut short"), alerts["b"]))
    )

    workers = Workers(1, routing=None, queue=queue, output_dir=tmp_path, telemetry=Telemetry())
    assert workers.recover() == 2  # the next start: both are claimed again, each settled by its worker
    written, cut_short = queue.claim(), queue.claim()
    assert workers.settle(written) and not workers.settle(cut_short)  # only the second runs again
    states = {r["id"]: (r["status"], r["evidence"]) for r in queue.recent_runs(10)}
    assert states == {written.id: ("completed", str(evidence)), cut_short.id: ("running", None)}

    # Claimed more than MAX_ATTEMPTS times, it fails without running.
    for _ in range(MAX_ATTEMPTS - 1):
        queue.recover()
        cut_short = queue.claim()
    workers._take(cut_short)
    assert {r["id"]: (r["status"], r["reason"]) for r in queue.recent_runs(10)}[cut_short.id] == (
        "failed",
        f"interrupted {MAX_ATTEMPTS} times",
    )

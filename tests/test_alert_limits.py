"""What alerts may do (`limits` in the routes file): a storm of a thousand distinct alerts is all taken; only what is
clearly abuse (an endless queue, an endless notification, endless incident folders) is refused, with a clear
answer and a log line; which incident names and endpoints alerts may use is configurable."""

from __future__ import annotations

import logging
import sqlite3

import pytest
import yaml
from starlette.testclient import TestClient

from runbooks import catalog, chain
from runbooks.alerts import routing, service
from serving import TOKEN, alert, notification

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client_for(tmp_path, limits: dict | None = None) -> TestClient:
    """The service in-process without its lifespan (nothing runs: what requests leave is read back), routed by
    the shipped routes plus `limits`."""
    routes = catalog.read_yaml(routing.ROUTES)
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump({**routes, **({"limits": limits} if limits else {})}))
    return TestClient(service.create_app(routing.load(path), tmp_path / "output", workers=1, token=TOKEN))


def fingerprint(i: int) -> str:
    return f"{i:016x}"


def states(tmp_path) -> dict[str, int]:
    with sqlite3.connect(tmp_path / "output" / service.QUEUE) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM alerts GROUP BY state").fetchall())


@pytest.mark.parametrize("incidents", [1000, 1])
def test_a_storm_of_a_thousand_distinct_alerts_is_all_queued_by_default(tmp_path, incidents):
    client = client_for(tmp_path)
    storm = [
        alert("PodOOMKilled", fingerprint(i), namespace="autolytiq-prod", pod=f"p-{i}", incident=f"POD-{i % incidents}")
        for i in range(1000)
    ]
    response = client.post("/alerts", json=notification(*storm), headers=AUTH)

    assert response.status_code == 202
    assert {o["outcome"] for o in response.json()["alerts"]} == {"queued"}
    assert states(tmp_path) == {"queued": 1000}
    folders = [p for p in (tmp_path / "output").iterdir() if not p.name.startswith(".")]
    assert len(folders) == incidents
    assert sum(chain.verify(folder).log_lines for folder in folders) == 1000
    assert all(chain.verify(folder).intact for folder in folders[:3])


def test_an_overfull_queue_is_refused_with_503_and_a_log_line(tmp_path, caplog):
    client = client_for(tmp_path, {"queued": 5})
    first = [alert("PodOOMKilled", fingerprint(i), namespace="autolytiq-prod") for i in range(5)]
    assert client.post("/alerts", json=notification(*first), headers=AUTH).status_code == 202
    with caplog.at_level(logging.WARNING):
        refused = client.post("/alerts", json=notification(alert("PodOOMKilled", fingerprint(9))), headers=AUTH)

    assert refused.status_code == 503 and refused.headers["retry-after"] == "60"
    assert refused.json()["error"] == "the queue is full: 5 runs wait (limits.queued 5); send again later"
    assert "POST /alerts refused (503): the queue is full" in caplog.text
    assert states(tmp_path) == {"queued": 5}


def test_an_endless_notification_is_refused_with_413(tmp_path, caplog):
    client = client_for(tmp_path, {"alerts_per_notification": 10})
    many = [alert("PodOOMKilled", fingerprint(i)) for i in range(11)]
    with caplog.at_level(logging.WARNING):
        refused = client.post("/alerts", json=notification(*many), headers=AUTH)
    assert refused.status_code == 413 and "over limits.alerts_per_notification (10)" in refused.json()["error"]
    assert "POST /alerts refused (413)" in caplog.text
    assert not (tmp_path / "output" / service.QUEUE).exists() or not states(tmp_path)


def test_new_incident_folders_are_bounded_existing_ones_still_take_alerts(tmp_path):
    client = client_for(tmp_path, {"incidents": 2})
    labels = ["INC-1", "INC-2", "INC-3", "INC-1"]
    alerts = [alert("PodOOMKilled", fingerprint(i), incident=label) for i, label in enumerate(labels)]
    outcomes = client.post("/alerts", json=notification(*alerts), headers=AUTH).json()["alerts"]

    assert [o["outcome"] for o in outcomes] == ["queued", "queued", "rejected", "queued"]
    assert outcomes[2]["reason"] == "no new incident folder: 2 exist (limits.incidents)"
    assert sorted(p.name for p in (tmp_path / "output").iterdir() if not p.name.startswith(".")) == ["INC-1", "INC-2"]


@pytest.mark.parametrize(
    "pattern,label,folder",
    [
        (None, "DB-POOL-7", "DB-POOL-7"),  # the default: any plain name
        (None, "INC-1234", "INC-1234"),
        ("INC-[0-9]+", "INC-1234", "INC-1234"),
        ("INC-[0-9]+", "DB-POOL-7", None),  # not admitted: the group's own folder instead
        ("INC-[0-9]+|../x", "../x", None),  # a pattern never makes a path of a label
    ],
)
def test_which_incident_names_alerts_may_use_is_configurable(tmp_path, pattern, label, folder):
    client = client_for(tmp_path, {"incident": pattern} if pattern else None)
    (outcome,) = client.post(
        "/alerts", json=notification(alert("PodOOMKilled", fingerprint(1), incident=label)), headers=AUTH
    ).json()["alerts"]
    if folder:
        assert outcome["incident"] == folder
    else:
        assert outcome["incident"].startswith("PodOOMKilled-") and "/" not in outcome["incident"]


def test_which_endpoints_alerts_may_name_is_configurable(tmp_path):
    client = client_for(tmp_path, {"endpoints": ["*.autolytiq.com:443", "status.autolytiq.com"]})
    endpoints = ["api.autolytiq.com:443", "status.autolytiq.com:8443", "10.0.0.1:22", "api.autolytiq.com:22"]
    alerts = [alert("SSLCertificateExpired", fingerprint(i), endpoint=e) for i, e in enumerate(endpoints)]
    outcomes = client.post("/alerts", json=notification(*alerts), headers=AUTH).json()["alerts"]

    assert [o["outcome"] for o in outcomes] == ["queued", "queued", "rejected", "rejected"]
    assert (
        outcomes[2]["reason"]
        == "label 'endpoint' = '10.0.0.1:22' is not an endpoint alerts may name (limits.endpoints)"
    )


def test_limits_are_checked_when_the_routes_are_loaded(tmp_path):
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump({**catalog.read_yaml(routing.ROUTES), "limits": {"queued": 0}}))
    with pytest.raises(catalog.UsageError, match=r"limits\.queued"):
        routing.load(path)

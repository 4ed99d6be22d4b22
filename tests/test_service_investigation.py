"""`service-investigation` (Phase 2) against the test Kubernetes API (autolytiq-prod mid-incident) and a real
Prometheus holding the gateway's traffic as the sandbox serves it (12 % 5xx and twice the latency for 20 minutes).

The scenario: api-gateway rolled out 1.14.2 twenty minutes ago and answers 502/503/504 naming auth-service as its
upstream; auth-service is OOMKilled (5 restarts, 96 % of its memory limit).
"""

from __future__ import annotations

import datetime as dt
import time

import jsonschema
import pandas as pd
import pytest

from runbooks.diagnoses import service_investigation as diagnosis
from runbooks.evidence import schema
from runbooks.kube import revisions
from runbooks_sandbox.environment import gateway_traffic
from runbooks_sandbox.prometheus import NORMAL_LATENCY, PrometheusServer, Traffic, http_traffic

RUNBOOK = "service-investigation"
NS = "autolytiq-prod"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJpbnZlc3RpZ2F0ZSJ9.c2lnbmF0dXJlLWludmVzdGlnYXRl"


@pytest.fixture(scope="module")
def prom():
    now = time.time()
    surge = [
        Traffic(now - 7 * 86400 - 4200, now - 7 * 86400 + 600, 100, 0.002, NORMAL_LATENCY),
        Traffic(now - 4200, now - 900, 100, 0.002, NORMAL_LATENCY),
        Traffic(now - 885, now + 600, 350, 0.002, NORMAL_LATENCY),  # 3.5x the requests, no errors
    ]
    with (
        PrometheusServer(http_traffic(gateway_traffic(now))) as gateway,
        PrometheusServer(http_traffic(surge)) as busy,
    ):
        yield {"gateway": gateway.url, "surge": busy.url}


def investigate(run_runbook, kube, service: str, *args: str):
    outcome = run_runbook(RUNBOOK, *kube.runbook_args(NS), "-p", "service", service, *args)
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    jsonschema.validate(outcome.evidence, schema())
    return outcome


def test_the_gateway_points_at_its_failing_upstream_and_its_rollout(run_runbook, prod, prom):
    prod.set_logs(
        NS,
        "api-gateway-7d9f8b6c5d-q7m4z",
        "gateway",
        current=[
            (
                dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=2),
                f'level=error msg="upstream rejected" status=502 upstream=auth-service authorization="Bearer {TOKEN}"',
            )
        ],
    )
    outcome = investigate(run_runbook, prod, "api-gateway", "-p", "prometheus_url", prom["gateway"])
    findings = outcome.findings()

    cause = findings["suspected-cause"]
    assert cause["severity"] == "critical"
    assert (cause["data"]["cause"], cause["data"]["also"]) == ("dependency-failing", ["recent-change"])
    dependency = findings["dependency-failing"]["data"]
    assert dependency["holds"] is True and dependency["in_logs"][0]["host"] == "auth-service"
    assert dependency["in_logs"][0]["error_lines"] == 6  # x2k9p: 502, 503 x3, 504; q7m4z: ours (its logs replaced)
    # The rollout 20 minutes ago, before the first error: it coincides; what it changed is named.
    change = findings["recent-change"]["data"]
    assert (change["holds"], change["revision"], change["previous_revision"]) == (True, 3, 2)
    assert change["changes"] == [
        {
            "container": "gateway",
            "change": "image",
            "name": "image",
            "before": "registry.autolytiq.io/api-gateway:1.14.1",
            "after": "registry.autolytiq.io/api-gateway:1.14.2",
        }
    ]
    assert "16 min before the first error line" in findings["recent-change"]["summary"]
    assert findings["resource-exhaustion"]["data"]["holds"] is False
    traffic = findings["traffic-anomaly"]["data"]
    assert traffic["holds"] is False and traffic["ratio"] == pytest.approx(1.0, abs=0.01)
    metrics = findings["service-metrics"]
    assert metrics["severity"] == "warning" and "error rate 12.00 % now" in metrics["summary"]
    assert "against 0.20 % 1w earlier" in metrics["summary"]
    # Error lines grouped by signature (numbers and ids made N), counted per minute, credentials redacted.
    signatures = findings["error-signatures"]["data"]["signatures"]
    top = signatures[0]
    assert (
        top["count"] == 3
        and 'status=N upstream=auth-service latency_ms=N error="no healthy upstream"' in top["signature"]
    )
    assert any("Bearer [REDACTED]" in s["signature"] for s in signatures)
    for path in outcome.evidence_path.parent.iterdir():
        assert TOKEN not in path.read_text(), path.name
    assert {r.method for r in prod.requests} == {"GET"}  # it only looks


def test_the_oomkilled_upstream_shows_resource_exhaustion(run_runbook, prod, prom):
    outcome = investigate(run_runbook, prod, "auth-service", "-p", "prometheus_url", prom["gateway"])
    findings = outcome.findings()
    assert findings["suspected-cause"]["data"]["cause"] == "resource-exhaustion"
    exhaustion = findings["resource-exhaustion"]["data"]
    assert exhaustion["oomkilled"] == ["auth-service-6b7c9d8f5-k4j2w/auth-service (5 restarts)"]
    assert exhaustion["memory_near_limit"] == ["auth-service-6b7c9d8f5-k4j2w/auth-service 96%"]
    assert findings["recent-change"]["data"]["holds"] is False  # revision 1, thirty days old
    assert "FATAL ERROR: Reached heap limit" in findings["error-signatures"]["data"]["signatures"][0]["signature"]
    assert findings["traffic-anomaly"]["data"]["holds"] is None  # no job="auth-service" series
    assert findings["service-metrics"]["summary"] == "Prometheus has no error rate for auth-service"


def test_a_request_surge_is_a_traffic_anomaly(run_runbook, prod, prom):
    outcome = investigate(
        run_runbook, prod, "api-gateway", "-p", "prometheus_url", prom["surge"], "-p", "since_minutes", "10"
    )
    traffic = outcome.findings()["traffic-anomaly"]
    assert traffic["data"]["holds"] is True and traffic["data"]["ratio"] == pytest.approx(3.5, abs=0.05)
    assert traffic["summary"].startswith("a surge: 350.0 requests/s against 100.0 1w earlier")


def test_without_prometheus_the_metrics_checks_say_so(run_runbook, prod):
    outcome = investigate(run_runbook, prod, "api-gateway")
    findings = outcome.findings()
    assert findings["service-metrics"]["summary"] == "No metrics for api-gateway: no prometheus_url given"
    assert findings["traffic-anomaly"]["data"]["holds"] is None


def test_a_service_that_is_no_deployment_name_is_refused(run_runbook, prod):
    outcome = run_runbook(RUNBOOK, *prod.runbook_args(NS), "-p", "service", 'api"gateway')
    assert outcome.exit_code == 1 and "service must be a deployment name" in outcome.stderr


# --- the parts


def test_what_a_revision_changed_names_variables_but_never_shows_their_values():
    def template(image, env, memory, annotations=None, volumes=()):
        return {
            "metadata": {"annotations": annotations or {}},
            "spec": {
                "containers": [
                    {"name": "app", "image": image, "env": env, "resources": {"limits": {"memory": memory}}}
                ],
                "volumes": list(volumes),
            },
        }

    before = template(
        "app:1",
        [
            {"name": "DB_PASSWORD", "value": "hunter2-old"},
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "JWT", "valueFrom": {"secretKeyRef": {"name": "jwt-v1", "key": "JWT"}}},
        ],
        "256Mi",
        volumes=[{"name": "config", "configMap": {"name": "app-config-v1"}}],
    )
    after = template(
        "app:2",
        [
            {"name": "DB_PASSWORD", "value": "hunter2-new"},
            {"name": "JWT", "valueFrom": {"secretKeyRef": {"name": "jwt-v2", "key": "JWT"}}},
            {"name": "FEATURE_X", "value": "on"},
        ],
        "512Mi",
        annotations={"kubectl.kubernetes.io/restartedAt": "2026-11-30T10:00:00Z"},
        volumes=[{"name": "config", "configMap": {"name": "app-config-v2"}}],
    )
    changes = revisions.compare(before, after)
    rows = {(r.change, r.name): (r.before, r.after) for r in changes.itertuples()}
    assert rows == {
        ("image", "image"): ("app:1", "app:2"),
        ("env value changed", "DB_PASSWORD"): (None, None),
        ("env removed", "LOG_LEVEL"): (None, None),
        ("env source changed", "JWT"): ("secret jwt-v1/JWT", "secret jwt-v2/JWT"),
        ("env added", "FEATURE_X"): (None, None),
        ("resources", "limits.memory"): ("256Mi", "512Mi"),
        ("volume", "config"): ("configmap app-config-v1", "configmap app-config-v2"),
        ("annotation", "kubectl.kubernetes.io/restartedAt"): (None, "2026-11-30T10:00:00Z"),
    }
    assert "hunter2" not in changes.to_json()


@pytest.mark.parametrize(
    "line, hosts",
    [
        ('level=error status=503 upstream=auth-service error="no healthy upstream"', ["auth-service"]),
        ("GET https://api.taxrates.example/v2/rates timed out after 5000ms", ["api.taxrates.example"]),
        ("dial tcp db.autolytiq.internal:5432: connect: connection refused", ["db.autolytiq.internal"]),
        ("upstream=- status=200", []),
    ],
)
def test_the_dependencies_a_line_names(line, hosts):
    assert diagnosis.dependency_hosts(line) == hosts


def test_lines_that_differ_only_in_numbers_and_ids_share_a_signature():
    a = diagnosis.signature("2026-11-30T10:00:01Z request 7f3a9c2e11d4 failed after 3001 ms (attempt 2)")
    b = diagnosis.signature("2026-11-30T10:05:09Z request 0b1c2d3e4f5a failed after 12 ms (attempt 3)")
    assert a == b == "request <hex> failed after N ms (attempt N)"


def test_the_chart_frame_counts_the_commonest_signatures_per_minute():
    minute = pd.Timestamp("2026-11-30T10:00:00Z")
    per_minute = pd.DataFrame(
        [(minute, "a", 2), (minute + pd.Timedelta(minutes=2), "a", 1), (minute, "b", 5)],
        columns=["minute", "signature", "count"],
    )
    table = pd.DataFrame({"signature": ["b", "a"], "count": [5, 3]})
    signatures = diagnosis.Signatures(table, per_minute, 10, 8, None, pd.DataFrame(), 0)
    frame = signatures.chart_frame()
    assert list(frame.columns) == ["#1", "#2"] and len(frame) == 3  # the quiet minute between is there, as 0
    assert list(frame["#2"]) == [2, 0, 1] and list(frame["#1"]) == [5, 0, 0]

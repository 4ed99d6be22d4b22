"""`runbook run api-gateway-high-error-rate` against the test API server, and its diagnosis.

autolytiq-prod as it is gives memory exhaustion (auth-service is OOMKilled). Three overlays on it give the
other causes, each with another upstream in the gateway's logs: deal-service down, inventory-service rolled
out just before the 5xx began (logging JSON), billing-service unable to reach its database.
"""

import json

import jsonschema
import pytest

from runbooks import gateway_log, kube
from runbooks.diagnoses import api_gateway_high_error_rate as gateway
from runbooks.evidence import schema

RUNBOOK = "api-gateway-high-error-rate"
NS = "autolytiq-prod"
GATEWAY_PODS = ("api-gateway-7d9f8b6c5d-x2k9p", "api-gateway-7d9f8b6c5d-q7m4z")
COMPLETED_POD = "api-gateway-5c8d7f9b4-h8t2n"
PLANTED_SECRETS = ("jwt-signing-key-7f3a9c2e-never-print-me", "pg-pass-4b1d")
REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"


# --- scenario overlays


def workload(name, pod_statuses, versions=(("1.0.0", "20d"),), ready=None):
    """A Deployment with one ReplicaSet per (version, age) (the last is live), its pods and a Service."""
    labels = {"app": name}
    objects = []
    for revision, (version, ago) in enumerate(versions, 1):
        template_hash = f"{revision}b{len(name)}c7d"
        rs_labels = {**labels, "pod-template-hash": template_hash}
        live = revision == len(versions)
        objects.append(
            {
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{name}-{template_hash}",
                    "labels": rs_labels,
                    "creationTimestamp": {"ago": ago},
                    "annotations": {REVISION: str(revision), CHANGE_CAUSE: f"deploy {name} {version}"},
                    "ownerReferences": [{"kind": "Deployment", "name": name}],
                },
                "spec": {
                    "replicas": len(pod_statuses) if live else 0,
                    "selector": {"matchLabels": rs_labels},
                    "template": {
                        "metadata": {"labels": rs_labels},
                        "spec": {"containers": [_container(name, version)]},
                    },
                },
            }
        )
    deployment = {
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": labels,
            "creationTimestamp": {"ago": versions[0][1]},
            "annotations": {REVISION: str(len(versions)), CHANGE_CAUSE: f"deploy {name} {versions[-1][0]}"},
        },
        "spec": {
            "replicas": len(pod_statuses),
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [_container(name, versions[-1][0])]}},
        },
    }
    if ready is not None:
        deployment["status"] = {"replicas": len(pod_statuses), "readyReplicas": ready, "availableReplicas": ready}
    objects.append(deployment)
    live_rs = objects[-2]["metadata"]
    for index, status in enumerate(pod_statuses):
        objects.append(
            {
                "kind": "Pod",
                "metadata": {
                    "name": f"{live_rs['name']}-p{index}",
                    "labels": live_rs["labels"],
                    "creationTimestamp": {"ago": "1h"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": live_rs["name"]}],
                },
                "spec": {"nodeName": "worker-1", "containers": [_container(name, versions[-1][0])]},
                "status": status,
            }
        )
    objects.append(
        {
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080}]},
        }
    )
    return objects


def _container(name, version):
    return {
        "name": name,
        "image": f"registry.autolytiq.io/{name}:{version}",
        "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    }


def gateway_logs(*lines):
    """Both live gateway pods' logs replaced: `lines` on the first, a start-up line on the second."""
    return [
        {
            "pod": GATEWAY_PODS[0],
            "container": "gateway",
            "current": [{"ago": "19m", "line": 'level=info msg="listening on :8080"'}, *lines],
        },
        {
            "pod": GATEWAY_PODS[1],
            "container": "gateway",
            "current": [{"ago": "18m", "line": 'level=info msg="listening on :8080"'}],
        },
    ]


HEALTHY = {}
CRASHLOOP = {
    "containerStatuses": [
        {
            "name": "deal-service",
            "restartCount": 4,
            "ready": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
        }
    ]
}
NOT_READY = {
    "containerStatuses": [{"name": "deal-service", "ready": False, "state": {"running": {"startedAt": {"ago": "1h"}}}}]
}

UPSTREAM_DOWN = {
    "namespace": NS,
    "objects": workload("deal-service", [CRASHLOOP, NOT_READY], ready=0),
    "logs": gateway_logs(
        {
            "ago": "5m",
            "line": "level=info method=GET path=/api/v1/deals status=200 upstream=deal-service latency_ms=30",
        },
        {
            "ago": "4m",
            "line": "level=error method=GET path=/api/v1/deals status=503 upstream=deal-service "
            'error="no healthy upstream"',
            "repeat": 8,
            "every": 20,
        },
        {"ago": "2m", "line": "level=error method=POST path=/api/v1/auth/token status=502 upstream=auth-service"},
    ),
}

BAD_ROLLOUT = {
    "namespace": NS,
    "objects": workload("inventory-service", [HEALTHY, HEALTHY], versions=(("3.1.0", "20d"), ("3.2.0", "12m"))),
    "logs": gateway_logs(
        {
            "ago": "11m",
            "line": json.dumps(
                {"level": "info", "status": 200, "upstream": "inventory-service", "path": "/api/v1/vehicles"}
            ),
        },
        {
            "ago": "10m",
            "line": json.dumps(
                {
                    "level": "error",
                    "status": 500,
                    "upstream": "inventory-service",
                    "path": "/api/v1/vehicles",
                    "error": "template: missing key dealer_id",
                }
            ),
            "repeat": 12,
            "every": 30,
        },
    ),
}

DATABASE = {
    "namespace": NS,
    "objects": workload("billing-service", [HEALTHY, HEALTHY], versions=(("2.0.1", "9d"),)),
    "logs": [
        *gateway_logs(
            {
                "ago": "6m",
                "line": "level=error method=POST path=/api/v1/invoices status=502 upstream=billing-service",
                "repeat": 5,
                "every": 30,
            }
        ),
        {
            "pod": "billing-service-1b15c7d-p0",
            "current": [
                {
                    "ago": "7m",
                    "line": "FATAL: remaining connection slots are reserved for non-replication superuser connections",
                    "repeat": 3,
                },
                {
                    "ago": "6m",
                    "line": "could not connect to server: Connection refused. Is the server running on port 5432? "
                    "dsn=postgres://autolytiq:pg-pass-4b1d@db.autolytiq.internal:5432/autolytiq",
                },
            ],
        },
    ],
}


# --- running it


def run(run_runbook, kube_api, *args):
    outcome = run_runbook(RUNBOOK, *kube_api.runbook_args(NS), *args)
    assert outcome.exit_code == 0, outcome.stderr
    jsonschema.validate(outcome.evidence, schema())
    return outcome


def deployments(kube_api):
    return {d["metadata"]["name"]: d for d in kube_api.list("deployments", NS, group="apps")}


def nothing_changed(kube_api, before):
    assert all(r.method == "GET" or r.query.get("dryRun") == "All" for r in kube_api.requests)
    assert deployments(kube_api) == before


def no_secret_written(outcome):
    for path in outcome.evidence_path.parent.iterdir():
        text = path.read_text()
        for secret in PLANTED_SECRETS:
            assert secret not in text, path.name


def test_autolytiq_prod_memory_exhaustion_of_auth_service_dry_run(prod, run_runbook):
    before = deployments(prod)
    outcome = run(run_runbook, prod)

    findings = outcome.findings()
    counts = findings["error-counts"]["data"]
    assert counts["by_status"] == {"502": 2, "503": 3, "504": 1}
    assert counts["by_upstream"] == {"auth-service": 6}
    cause = findings["likely-cause"]["data"]
    assert (cause["cause"], cause["deployment"], cause["upstream"]) == (
        "memory-exhaustion",
        "auth-service",
        "auth-service",
    )
    assert cause["evidence"]["oomkilled"] == ["auth-service-6b7c9d8f5-k4j2w/auth-service"]
    # The gateway's rollout 20 min ago also precedes the 5xx; memory comes first in the rule order.
    assert [r["rule"] for r in cause["rules"] if r["holds"]] == [
        "memory-exhaustion",
        "configuration-error-after-rollout",
    ]
    assert COMPLETED_POD not in json.dumps(findings)
    assert [(a["id"], a["mode"], a["target"]) for a in outcome.evidence["actions"]] == [
        ("rollout-restart", "dry-run", f"deployment/auth-service in {NS}")
    ]
    nothing_changed(prod, before)
    no_secret_written(outcome)


def test_upstream_down_names_deal_service(prod, run_runbook):
    prod.load(UPSTREAM_DOWN)
    before = deployments(prod)
    outcome = run(run_runbook, prod)

    cause = outcome.findings()["likely-cause"]["data"]
    assert (cause["cause"], cause["deployment"], cause["upstream"]) == ("upstream-down", "deal-service", "deal-service")
    assert cause["evidence"]["not_ready"] == ["deal-service-1b12c7d-p0", "deal-service-1b12c7d-p1"]
    assert outcome.findings()["error-counts"]["data"]["by_upstream"] == {"deal-service": 8, "auth-service": 1}
    assert [a["target"] for a in outcome.evidence["actions"]] == [f"deployment/deal-service in {NS}"]
    nothing_changed(prod, before)


def test_bad_rollout_of_inventory_service_is_rolled_back_and_nothing_else(prod, run_runbook):
    prod.load(BAD_ROLLOUT)
    before = deployments(prod)
    outcome = run(run_runbook, prod, "-p", "resolution", "rollback", "-p", "apply", "true")

    findings = outcome.findings()
    assert findings["error-counts"]["data"]["by_status"] == {"500": 12}  # JSON log lines
    cause = findings["likely-cause"]["data"]
    assert (cause["cause"], cause["deployment"], cause["upstream"]) == (
        "configuration-error-after-rollout",
        "inventory-service",
        "inventory-service",
    )
    assert {r["deployment"] for r in cause["evidence"]["rollouts"]} == {"inventory-service", "api-gateway"}
    assert [(a["id"], a["mode"]) for a in outcome.evidence["actions"]] == [("rollback", "applied")]

    after = deployments(prod)
    image = after["inventory-service"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.autolytiq.io/inventory-service:3.1.0"
    assert {n: d for n, d in after.items() if n != "inventory-service"} == {
        n: d for n, d in before.items() if n != "inventory-service"
    }
    assert {r.path for r in prod.requests if r.method != "GET"} == {
        f"/apis/apps/v1/namespaces/{NS}/deployments/inventory-service"
    }


def test_database_errors_name_billing_service_and_the_password_is_not_written(prod, run_runbook):
    prod.load(DATABASE)
    before = deployments(prod)
    # The last 15 minutes: the gateway's rollout 20 minutes ago is outside the window.
    outcome = run(run_runbook, prod, "-p", "since_minutes", "15")

    cause = outcome.findings()["likely-cause"]["data"]
    assert (cause["cause"], cause["deployment"], cause["upstream"]) == (
        "database-connection-issues",
        "billing-service",
        "billing-service",
    )
    assert cause["evidence"]["by_pattern"] == {
        "remaining connection slots": 3,
        "could not connect to server": 1,
        "connection refused (5432)": 1,
    }
    assert cause["evidence"]["pods"] == ["billing-service-1b15c7d-p0"]
    nothing_changed(prod, before)
    no_secret_written(outcome)
    assert (
        "postgres://autolytiq:[REDACTED]@db.autolytiq.internal"
        in outcome.evidence_path.with_suffix("").with_suffix(".ipynb").read_text()
    )


# --- the lib, through the official client


def test_log_lines_in_text_and_json():
    parse = gateway_log.parse_line
    assert parse('level=error status=502 upstream=auth-service error="reset"') == gateway_log.LogLine(
        502, "auth-service", True
    )
    assert parse("level=info status=200 upstream=- latency_ms=0") == gateway_log.LogLine(200, None, False)
    assert parse('upstream_status=503 status=200 upstream="deal-service"') == gateway_log.LogLine(
        200, "deal-service", False
    )
    assert parse('{"level":"error","status":"504","upstream":"tax-service"}') == gateway_log.LogLine(
        504, "tax-service", True
    )
    assert parse('{"status": 500}') == gateway_log.LogLine(500, None, False)
    assert parse("[error] [output:forward] connection reset") == gateway_log.LogLine(None, None, True)
    assert parse("{not json status=503") == gateway_log.LogLine(503, None, False)


def test_upstream_names_lead_to_deployments(prod, cluster):
    prod.load(
        {
            "namespace": NS,
            "objects": [
                {
                    "kind": "Service",
                    "metadata": {"name": "auth"},
                    "spec": {"selector": {"app": "auth-service"}, "ports": [{"port": 80}]},
                }
            ],
        }
    )
    names = [
        "auth-service",
        "auth-service:8080",
        "http://auth-service.autolytiq-prod.svc.cluster.local:8080/v1",
        "auth",
        "inventory-service",
        "",
        None,
    ]
    assert [gateway.upstream_deployment(cluster, n) for n in names] == ["auth-service"] * 4 + [None, None, None]


def test_pods_that_completed_after_a_rolling_deploy_are_not_down(cluster):
    containers = kube.pods.containers(cluster)
    assert kube.pods.not_running(containers).empty


def test_resolution_follows_the_upstream_override_and_refuses_unknown_values(prod, cluster):
    diagnosis = gateway.Diagnosis(None, None, None, None, {}, [])
    [change] = gateway.resolve(cluster, diagnosis, "restart", "", apply=False)
    assert "not done" in change.action.result
    [change] = gateway.resolve(cluster, diagnosis, "restart", "auth-service:8080", apply=False)
    assert change.action.target == f"deployment/auth-service in {NS}" and change.action.mode == "dry-run"
    assert all(r.method == "GET" or r.query.get("dryRun") == "All" for r in prod.requests)
    with pytest.raises(ValueError, match="restart, rollback"):
        gateway.check_resolution("scale")


def test_without_gateway_pods_nothing_is_blamed_and_nothing_is_changed(kube_api):
    kube_api.load(
        {"namespace": "quiet", "objects": [{"kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {}}]}
    )
    quiet = kube_api.connect("quiet")
    try:
        log = gateway.scan_gateway_logs(quiet, "app=api-gateway", 30, 500)
        containers = kube.pods.containers(quiet)
        health = gateway.deployment_health(quiet, containers, gateway.suspect_upstream(log), "app=api-gateway")
        diagnosis = gateway.diagnose(
            log, health, kube.rollouts.recent(quiet, 30), gateway.database_errors(quiet, containers, 30, 500)
        )
        findings = {f.id: f for f in gateway.assess(log, diagnosis)}
        [change] = gateway.resolve(quiet, diagnosis, "rollback", "", apply=True)
    finally:
        quiet.api.close()
    assert findings["error-counts"].severity == "info" and findings["error-counts"].data["five_xx"] == 0
    assert findings["likely-cause"].data["cause"] is None and findings["likely-cause"].data["deployment"] is None
    assert gateway.by_upstream(log).empty and gateway.errors_per_minute(log).empty and health.empty
    assert "not done" in change.action.result
    assert all(r.method == "GET" for r in kube_api.requests)

"""`runbook run api-gateway-high-error-rate` against the test API server, and its diagnosis.

autolytiq-prod as it is gives memory exhaustion (auth-service is OOMKilled). Three overlays on it give the
other causes, each with another upstream in the gateway's logs: deal-service down, inventory-service rolled
out just before the 5xx began (logging JSON), billing-service unable to reach its database.
"""

import json
from datetime import datetime, timezone

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


# --- gateways that are not ours: ingress-nginx in its own namespace, a busy log, a rollback, an old OOMKill

INGRESS = ["-p", "gateway_namespace", "ingress-nginx", "-p", "gateway_selector", "app.kubernetes.io/name=ingress-nginx"]


@pytest.fixture
def ingress(kube_api):
    kube_api.load("ingress-nginx-5xx")
    return kube_api


def minutes_ago(text):
    when = gateway_log_time(text)
    return (datetime.now(timezone.utc) - when).total_seconds() / 60


def gateway_log_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_ingress_nginx_logs_traced_to_the_database_not_to_an_old_oomkill_or_a_later_rollback(ingress, run_runbook):
    outcome = run(run_runbook, ingress, *INGRESS)
    findings = outcome.findings()
    counts = findings["error-counts"]["data"]
    assert counts["by_upstream"] == {"payments": counts["five_xx"]} and counts["five_xx"] > 200  # default format
    assert counts["unparsed"] == 0 and counts["truncated"] == ["ingress-nginx-controller-6b9d7c5f4-x8k2p/controller"]
    # The tail of 500 lines reaches back ~12 minutes; the 5xx began 25 minutes ago.
    assert 24 < minutes_ago(counts["first_5xx"]) < 26 and "read again from the start" in counts["onset"]

    cause = findings["likely-cause"]["data"]
    assert (cause["cause"], cause["deployment"], cause["kind"], cause["upstream"]) == (
        "database-connection-issues",
        "payments",
        "Deployment",
        "payments",
    )
    rules = {r["rule"]: r for r in cause["rules"]}
    memory = rules["memory-exhaustion"]
    assert not memory["holds"] and "supports, does not decide" in memory["note"]
    assert "ingress-nginx-controller-6b9d7c5f4-x8k2p/controller" in memory["note"]  # OOMKilled 3 days ago, 92 %
    rollback = rules["configuration-error-after-rollout"]
    assert not rollback["holds"] and rollback["note"].startswith("rolled out after the 5xx began")
    assert "payments" in rollback["note"] and "ScalingReplicaSet" in rollback["note"]
    assert [a["target"] for a in outcome.evidence["actions"]] == [f"deployment/payments in {NS}"]
    assert all(r.method == "GET" or r.dry_run for r in ingress.requests)


def test_reading_the_whole_window_finds_the_onset_and_addresses_of_gone_pods(ingress, kube_api):
    cluster = kube_api.connect(NS)
    try:
        whole = gateway.scan_gateway_logs(
            cluster, "app.kubernetes.io/name=ingress-nginx", 30, 0, gateway_namespace="ingress-nginx"
        )
        tail = gateway.scan_gateway_logs(
            cluster, "app.kubernetes.io/name=ingress-nginx", 30, 100, "ingress-nginx", "ingress-nginx"
        )
    finally:
        cluster.api.close()
    assert whole.truncated == () and whole.onset_known and whole.lines_read == 599 + 500  # the window: 30 min
    assert whole.unmapped == ("10.244.2.99:8080",)  # a pod of revision 4: in no EndpointSlice any more
    # The gone pod's lines still count for payments: ingress-nginx logged the upstream's name too.
    assert gateway.by_upstream(whole)[["upstream", "5xx"]].to_dict(orient="records") == [
        {"upstream": "payments", "5xx": 500},
        {"upstream": "catalog", "5xx": 0},
    ]
    assert tail.first_5xx == whole.first_5xx  # read again from the window's start up to the first 5xx


def test_a_rollback_re_using_an_old_replicaset_is_a_recent_rollout(ingress, kube_api):
    cluster = kube_api.connect(NS)
    try:
        recent = kube.rollouts.recent(cluster, 30).set_index("deployment")
        for event in kube_api.list("events", NS):  # kept about an hour: without them the Progressing condition tells
            if event["reason"] == "ScalingReplicaSet":
                kube_api.remove("events", event["metadata"]["name"], NS)
        without_events = kube.rollouts.latest(cluster, ["payments"]).set_index("deployment")
    finally:
        cluster.api.close()
    payments = recent.loc["payments"]
    assert payments["reused"] and payments["revision"] == 5 and payments["replicaset"] == "payments-6d8f7c9b5"
    assert (datetime.now(timezone.utc) - payments["created"]).days == 6  # the ReplicaSet's creation says nothing
    assert 14 < (datetime.now(timezone.utc) - payments["rolled_out_at"]).total_seconds() / 60 < 16
    assert payments["known_from"].startswith("ScalingReplicaSet event")
    assert "catalog" not in recent.index
    fallback = without_events.loc["payments"]
    assert fallback["known_from"].startswith("Progressing condition (NewReplicaSetAvailable)")
    assert 12 < (datetime.now(timezone.utc) - fallback["rolled_out_at"]).total_seconds() / 60 < 14


HAPROXY = (
    "haproxy[27]: 10.0.0.1:51234 [26/Nov/2026:03:14:07.123] fe_https be_payments/srv1 0/0/1/2/3 502 150 - - ---- "
    '1/1/0/0/0 0/0 "POST /api/v1/payments HTTP/1.1"'
)


def test_lines_in_no_known_format_are_said_so_and_a_pattern_reads_them(prod, kube_api):
    prod.load({"namespace": NS, "logs": gateway_logs({"ago": "3m", "line": HAPROXY, "repeat": 4, "every": 10})})
    cluster = kube_api.connect(NS)
    try:
        unknown = gateway.scan_gateway_logs(cluster, "app=api-gateway", 30, 500)
        pattern = r"\] \S+ (?P<upstream>be_\w+)/\S+ \S+ (?P<status>\d{3}) "
        read = gateway.scan_gateway_logs(cluster, "app=api-gateway", 30, 500, pattern)
    finally:
        cluster.api.close()
    finding = gateway.assess(unknown, gateway.Diagnosis(None, None, None, None, {}, []))[0]
    assert finding.severity == "warning" and "none with an HTTP status" in finding.summary
    assert unknown.unparsed == unknown.lines_read
    assert gateway.by_status(read).to_dict(orient="records") == [{"status": 502, "upstream": "be_payments", "count": 4}]
    with pytest.raises(ValueError, match="named group"):
        gateway.check_parameters("restart", r"\d{3}")
    with pytest.raises(ValueError, match="regex"):
        gateway.check_parameters("restart", "(unclosed")


@pytest.mark.parametrize(
    "line, status, upstream, address",
    [
        (  # ingress-nginx, its default upstreaminfo format
            '192.168.1.10 - - [26/Nov/2026:03:14:07 +0000] "POST /api/v1/payments HTTP/1.1" 502 150 "-" '
            '"Mozilla/5.0" 512 0.003 [autolytiq-prod-payments-8080] [] 10.244.2.17:8080 0 0.002 502 2c3f8a1b',
            502,
            "autolytiq-prod-payments-8080",
            "10.244.2.17:8080",
        ),
        (  # ingress-nginx retried on another pod: the last address answered
            '192.168.1.10 - jane [26/Nov/2026:03:14:07 +0000] "GET /v HTTP/2.0" 200 15 "-" "curl/8.5.0" 80 0.009 '
            "[autolytiq-prod-payments-8080] [] 10.244.2.17:8080, 10.244.1.21:8080 0, 15 0.004, 0.005 502, 200 9f8e7d",
            200,
            "autolytiq-prod-payments-8080",
            "10.244.1.21:8080",
        ),
        (  # Envoy's default format
            '[2026-11-26T03:14:07.123Z] "GET /api HTTP/1.1" 503 UF 0 91 3 - "-" "curl/8" "4c1d-9e2f" '
            '"payments:8080" "10.244.2.17:8080"',
            503,
            None,
            "10.244.2.17:8080",
        ),
        (  # Istio's text format (istio-proxy)
            '[2026-11-26T03:14:07.409Z] "GET /status/418 HTTP/1.1" 503 UF upstream_reset_before_response_started'
            '{connection_failure} - "-" 0 91 4 - "-" "curl/7.73.0" "84961386-6d84" "payments:8080" '
            '"10.244.2.17:8080" outbound|8080||payments.autolytiq-prod.svc.cluster.local 10.244.1.23:37652 '
            "10.96.45.184:8080 10.244.1.23:46520 - default",
            503,
            "payments.autolytiq-prod.svc.cluster.local",
            "10.244.2.17:8080",
        ),
        (  # Istio's JSON encoding
            '{"response_code": 504, "response_flags": "UT", "upstream_cluster": '
            '"outbound|8080||payments.autolytiq-prod.svc.cluster.local", "upstream_host": "10.244.2.17:8080"}',
            504,
            "outbound|8080||payments.autolytiq-prod.svc.cluster.local",
            "10.244.2.17:8080",
        ),
        (  # Envoy: response code 0, no response was sent
            '[2026-11-26T03:14:07.123Z] "GET /api HTTP/1.1" 0 DC 0 0 3 - "-" "curl/8" "4c1d" "payments:8080" "-"',
            None,
            None,
            None,
        ),
        (  # Traefik's Common Log Format: a router's name, then the server URL
            '10.0.0.1 - - [26/Nov/2026:03:14:07 +0000] "GET /api HTTP/1.1" 502 21 "-" "curl/8.5.0" 1542 '
            '"autolytiq-prod-api-payments@kubernetes" "http://10.244.2.17:8080" 3ms',
            502,
            None,
            "10.244.2.17:8080",
        ),
        (  # Traefik's JSON
            '{"DownstreamStatus": 502, "OriginStatus": 0, "ServiceName": "autolytiq-prod-payments-8080@kubernetes", '
            '"ServiceAddr": "10.244.2.17:8080", "ServiceURL": "http://10.244.2.17:8080", '
            '"RouterName": "api@kubernetes"}',
            502,
            "autolytiq-prod-payments-8080@kubernetes",
            "10.244.2.17:8080",
        ),
    ],
)
def test_gateway_log_formats(line, status, upstream, address):
    parsed = gateway_log.parse_line(line)
    assert (parsed.status, parsed.upstream, parsed.address) == (status, upstream, address)
    name = parsed.upstream or ""
    if name:
        assert gateway_log.upstream_service(name, NS) == "payments"


def test_a_statefulset_upstream_down_is_restarted_not_rolled_back(kube_api):
    """A database StatefulSet behind a Service is an upstream like a Deployment."""
    kube_api.load("memory-on-real-clusters")
    data = kube_api.connect("autolytiq-data")
    try:
        containers = kube.pods.containers(data)
        health = gateway.deployment_health(data, containers, "ledger-db", "app=none", since_minutes=30)
        empty = gateway.scan_gateway_logs(data, "app=none", 30, 500)
        diagnosis = gateway.diagnose(
            empty, health, kube.rollouts.recent(data, 30), gateway.database_errors(data, containers, 30, 500)
        )
        [restart] = gateway.resolve(data, diagnosis, "restart", "", apply=False)
        [rollback] = gateway.resolve(data, diagnosis, "rollback", "", apply=False)
    finally:
        data.api.close()
    [row] = health.to_dict(orient="records")
    assert (row["deployment"], row["kind"], row["desired"], row["ready"]) == ("ledger-db", "StatefulSet", 1, 0)
    assert row["oomkilled"] == ["ledger-db-0/postgres"]
    assert (diagnosis.cause, diagnosis.deployment, diagnosis.kind) == ("memory-exhaustion", "ledger-db", "StatefulSet")
    assert restart.action.target == "statefulset/ledger-db in autolytiq-data"
    assert restart.action.result.startswith("accepted by server-side dry run")
    assert rollback.action.result.startswith("not done: rollback is done here for Deployments only")

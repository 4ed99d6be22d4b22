"""The Kubernetes access layer, through the official client over HTTP to the test API server."""

import datetime as dt

import pytest

from runbooks import kube
from runbooks.errors import ClusterUnreachable
from runbooks_sandbox.kubeapi.kubeconfig import write_kubeconfig
from runbooks_sandbox.kubeapi.scenario import rfc3339nano, utcnow

NS = "autolytiq-prod"
OOM_POD = "auth-service-6b7c9d8f5-k4j2w"


def test_namespace_comes_from_the_context_when_not_given(kube_api, tmp_path):
    path = write_kubeconfig(tmp_path / "kc", kube_api.url, context="prod", namespace=NS)
    assert kube.connect(str(path)).namespace == NS
    assert kube.connect(str(path), namespace="other").namespace == "other"


def test_kubeconfig_from_the_environment(kube_api, tmp_path, monkeypatch):
    path = write_kubeconfig(tmp_path / "kc", kube_api.url, context="prod", namespace=NS)
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert kube.connect().namespace == NS


def test_unreachable_api_server_is_one_clear_error(tmp_path):
    path = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:1", context="dead")
    with pytest.raises(ClusterUnreachable, match=r"127\.0\.0\.1:1 does not answer"):
        kube.connect(str(path))


def test_missing_kubeconfig_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterUnreachable, match="no kubeconfig"):
        kube.connect(str(tmp_path / "absent"))


def test_not_running_leaves_out_the_completed_pod_of_a_rolling_deploy(cluster):
    frame = kube.pods.containers(cluster)
    completed = frame[frame["pod"] == "api-gateway-5c8d7f9b4-h8t2n"]
    assert list(completed["reason"]) == ["Completed"] and list(completed["phase"]) == ["Succeeded"]
    assert kube.pods.not_running(frame).empty


def test_containers_carry_last_termination_and_limits(cluster):
    frame = kube.pods.containers(cluster, "app=auth-service").set_index("pod")
    assert frame.loc[OOM_POD, "last_termination_reason"] == "OOMKilled"
    assert frame.loc[OOM_POD, "last_exit_code"] == 137
    assert frame.loc[OOM_POD, "restarts"] == 5
    assert frame.loc[OOM_POD, "memory_limit"] == 256 * 2**20
    assert frame.loc[OOM_POD, "cpu_limit"] == 500


def test_events_of_one_pod(cluster):
    frame = kube.events.for_object(cluster, "Pod", OOM_POD)
    assert set(frame["reason"]) == {"BackOff", "Pulled"}
    assert frame.loc[frame["reason"] == "BackOff", "count"].item() == 7


def test_rollout_history_by_revision(cluster):
    frame = kube.rollouts.history(cluster, "api-gateway")
    assert list(frame["revision"]) == [3, 2, 1]
    assert list(frame["current"]) == [True, False, False]
    assert frame.loc[0, "change_cause"] == "deploy api-gateway 1.14.2"
    recent = kube.rollouts.recent(cluster, within_minutes=60)
    assert list(recent["deployment"]) == ["api-gateway"]


def test_metrics_next_to_limits(cluster):
    frame = kube.usage.pod_usage(cluster, "app=auth-service").set_index("pod")
    assert frame.loc[OOM_POD, "memory_usage"] == 247 * 2**20
    assert round(frame.loc[OOM_POD, "memory_pct_of_limit"]) == 96


def test_log_scan_counts_patterns_streamed_and_reads_the_previous_container(cluster):
    gateway = kube.logs.scan(cluster, "app=api-gateway", {"5xx": r"status=5\d\d"}, since_minutes=30)
    per_pod = gateway.totals("pod").set_index("pod")["count"].to_dict()
    assert per_pod == {"api-gateway-7d9f8b6c5d-x2k9p": 5, "api-gateway-7d9f8b6c5d-q7m4z": 1}
    assert "status=502" in gateway.examples["5xx"][0]
    recent = kube.logs.scan(cluster, "app=api-gateway", {"5xx": r"status=5\d\d"}, since_minutes=2.5)
    assert recent.totals().loc[0, "count"] == 2  # the 504 at -60 s and the last 503 repeat at -140 s
    auth = kube.logs.scan(cluster, "app=auth-service", {"oom": "heap out of memory"})
    assert auth.counts[["pod", "instance"]].values.tolist() == [[OOM_POD, "previous"]]


def test_log_scan_of_a_log_larger_than_a_block_counts_every_line_once_per_minute(kube_api, cluster, tmp_path):
    """A log streamed from a file by the test API server (set_log_file), read in blocks of a few lines: lines cut
    at a block's end, a minute spread over blocks, and the lines older than `since` (skipped by the server)."""
    now = utcnow().replace(second=30, microsecond=0)
    lines = [(now - dt.timedelta(minutes=90), "level=error too old: connection refused")]
    lines += [(now - dt.timedelta(minutes=m, seconds=s), f"req={m}.{s} status=200") for m in (3, 2) for s in range(9)]
    lines += [(now - dt.timedelta(minutes=2, seconds=s), "level=error Connection refused") for s in range(4)]
    path = tmp_path / "gateway.log"
    path.write_text("".join(f"{rfc3339nano(when)} {text}\n" for when, text in sorted(lines)))
    kube_api.server.set_log_file(NS, "api-gateway-7d9f8b6c5d-x2k9p", "gateway", path)
    kube.logs.CHUNK, chunk = 100, kube.logs.CHUNK  # a few lines per block
    try:
        scan = kube.logs.scan(
            cluster, "app=api-gateway", {"refused": "connection refused", "ok": "status=200"}, since_minutes=30
        )
    finally:
        kube.logs.CHUNK = chunk
    mine = scan.counts[scan.counts["pod"] == "api-gateway-7d9f8b6c5d-x2k9p"]
    per_minute = {(r.pattern, r.minute.to_pydatetime()): r.count for r in mine.itertuples()}
    minute = now.replace(second=0)
    assert per_minute == {
        ("ok", minute - dt.timedelta(minutes=3)): 9,
        ("ok", minute - dt.timedelta(minutes=2)): 9,
        ("refused", minute - dt.timedelta(minutes=2)): 4,
    }
    assert scan.examples["refused"] == ["level=error Connection refused"] * 3


def test_log_scan_tail_lines(cluster):
    scan = kube.logs.scan(cluster, "app=api-gateway", {"any": "."}, tail_lines=2)
    # two lines from each container that logged: 3 gateways and 1 of the 2 log-shippers
    assert scan.lines_read == 2 * 4


def test_mitigations_dry_run_change_nothing(kube_api, cluster):
    before = kube_api.get("deployments", "auth-service", NS, group="apps")
    changes = [
        kube.mitigate.restart(cluster, "auth-service", apply=False),
        kube.mitigate.scale(cluster, "auth-service", 5, apply=False),
        kube.mitigate.set_memory(cluster, "auth-service", {"auth-service": ("512Mi", "1024Mi")}, apply=False),
        kube.mitigate.rollback(cluster, "api-gateway", apply=False),
    ]
    assert [c.action.mode for c in changes] == ["dry-run"] * 4
    assert all(not c.diff.empty for c in changes)
    assert "spec.replicas: 2 -> 5" in changes[1].action.result
    assert kube_api.get("deployments", "auth-service", NS, group="apps") == before
    assert (
        kube_api.get("deployments", "api-gateway", NS, group="apps")["metadata"]["annotations"][
            "deployment.kubernetes.io/revision"
        ]
        == "3"
    )
    writes = [r for r in kube_api.requests if r.method != "GET"]
    assert writes and all(r.dry_run for r in writes)


def test_mitigations_applied_change_the_target(kube_api, cluster):
    kube.mitigate.set_memory(cluster, "auth-service", {"auth-service": ("512Mi", "1024Mi")}, apply=True)
    kube.mitigate.scale(cluster, "auth-service", 3, apply=True)
    change = kube.mitigate.rollback(cluster, "api-gateway", apply=True)
    auth = kube_api.get("deployments", "auth-service", NS, group="apps")
    assert auth["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1024Mi"
    assert auth["spec"]["replicas"] == 3
    gateway = kube_api.get("deployments", "api-gateway", NS, group="apps")
    assert gateway["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.14.1")
    assert change.action.mode == "applied" and "to revision 2" in change.action.target


def test_mitigation_refused_by_the_server_is_a_failed_action(cluster):
    change = kube.mitigate.scale(cluster, "no-such-deployment", 2, apply=False)
    assert change.action.result.startswith("dry run refused: HTTP 404")


def test_a_literal_secret_env_value_never_shows_in_a_change(kube_api, cluster):
    kube_api.add(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "billing", "namespace": NS, "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "billing"}},
                "template": {
                    "metadata": {"labels": {"app": "billing"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "billing",
                                "image": "billing:1",
                                "env": [
                                    {"name": "STRIPE_API_KEY", "value": "sk_live_planted"},
                                    {"name": "DATABASE_URL", "value": "postgres://app:pg-old@db/app"},
                                ],
                            }
                        ]
                    },
                },
            },
        }
    )
    body = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "billing",
                            "env": [
                                {"name": "STRIPE_API_KEY", "value": "sk_live_rotated"},
                                {"name": "DATABASE_URL", "value": "postgres://app:pg-new@db/app"},
                            ],
                        }
                    ]
                }
            }
        }
    }
    change = kube.mitigate._patch(cluster, "test", "billing", body, apply=False)
    env = "spec.template.spec.containers[billing].env"
    assert list(change.diff["field"]) == [f"{env}[DATABASE_URL].value", f"{env}[STRIPE_API_KEY].value"]
    assert list(change.diff["after"]) == ["postgres://app:[REDACTED]@db/app", "[REDACTED]"]
    shown = change.action.result + change.diff.to_string()
    assert "sk_live" not in shown and "pg-new" not in shown and "pg-old" not in shown


def test_owning_deployments_follow_the_replica_set(cluster):
    owners = kube.pods.owning_deployments(cluster, kube.pods.list_pods(cluster))
    assert owners[OOM_POD] == "auth-service"
    assert owners["api-gateway-5c8d7f9b4-h8t2n"] == "api-gateway"  # an old revision's pod: still the gateway's


def test_upstream_addresses_map_to_services_through_endpointslices_else_endpoints(kube_api):
    """EndpointSlices first; where they may not be read, the core/v1 Endpoints (deprecated, still served)."""
    kube_api.load("ingress-nginx-5xx")
    kube_api.load(
        {
            "namespace": NS,
            "objects": [
                {
                    "kind": "Endpoints",
                    "metadata": {"name": "payments"},
                    "subsets": [
                        {
                            "addresses": [{"ip": "10.244.2.17", "targetRef": {"kind": "Pod", "name": "payments-a"}}],
                            "notReadyAddresses": [{"ip": "10.244.1.21"}],
                            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                        }
                    ],
                }
            ],
        }
    )
    cluster = kube_api.connect(NS)
    try:
        slices = kube.services.addresses(cluster)
        kube_api.server.forbid("endpointslices", group="discovery.k8s.io", verb="list")
        endpoints = kube.services.addresses(cluster)
        behind = kube.services.workload_behind(cluster, "payments")
    finally:
        cluster.api.close()
    assert kube.services.service_of(slices, "10.244.2.17:8080") == "payments"
    assert kube.services.service_of(slices, "10.244.1.9") == "catalog"
    assert kube.services.service_of(slices, "10.244.2.99:8080") is None  # a pod gone: in no slice
    assert kube.services.service_of(endpoints, "10.244.1.21:8080") == "payments"
    assert endpoints.set_index("address").loc["10.244.1.21", "ready"] == False  # noqa: E712
    assert behind == ("Deployment", "payments")

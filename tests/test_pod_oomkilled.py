"""`runbook run pod-oomkilled` against the test API server (autolytiq-prod), and runbooks.diagnoses.pod_oomkilled."""

import jsonschema
import pytest

from runbooks import kube
from runbooks.diagnoses import pod_oomkilled as oomkilled
from runbooks.evidence import schema

RUNBOOK = "pod-oomkilled"
NS = "autolytiq-prod"
OOM_POD = "auth-service-6b7c9d8f5-k4j2w"
COMPLETED_POD = "api-gateway-5c8d7f9b4-h8t2n"  # old gateway pod: Succeeded, container Completed
PLANTED_SECRETS = ("jwt-signing-key-7f3a9c2e-never-print-me", "pg-pass-4b1d")  # in Secret autolytiq-secrets
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def run(run_runbook, kube_api, *args):
    return run_runbook(RUNBOOK, *kube_api.runbook_args(NS), *args)


def deployments(kube_api):
    return {d["metadata"]["name"]: d for d in kube_api.list("deployments", NS, group="apps")}


def written_text(outcome):
    return {path.name: path.read_text() for path in outcome.evidence_path.parent.iterdir()}


# --- the runbook, end to end


def test_dry_run_names_the_oomkilled_container_and_changes_nothing(prod, run_runbook):
    before = deployments(prod)
    outcome = run(run_runbook, prod)

    assert outcome.exit_code == 0, outcome.stderr
    record = outcome.evidence
    jsonschema.validate(record, schema())
    assert record["status"] == "completed"
    findings = outcome.findings()
    killed = findings["oomkilled-containers"]
    assert killed["severity"] == "critical"
    assert [
        {k: d[k] for k in ("pod", "container", "deployment", "workload", "restarts", "limit", "recent")}
        for d in killed["data"]
    ] == [
        {
            "pod": OOM_POD,
            "container": "auth-service",
            "deployment": "auth-service",
            "workload": "deployment/auth-service",
            "restarts": 5,
            "limit": "256Mi",
            "recent": True,
        }
    ]
    assert COMPLETED_POD not in str(findings)  # Completed after a rolling deploy is no OOMKill
    assert [(d["pod"], d["pct_of_limit"]) for d in findings["memory-pressure"]["data"]] == [(OOM_POD, 96.5)]
    rollout = findings["coinciding-rollout"]
    assert rollout["data"]["deployments"] == ["auth-service"] and rollout["data"]["rollouts"] == []
    assert "does not rule out a change" in rollout["summary"]  # no record is not proof of no release
    assert findings["node-memory-pressure"]["severity"] == "info"

    # Memory and restart in one patch: the pods roll once.
    assert [(a["id"], a["mode"], a["target"]) for a in record["actions"]] == [
        ("set-memory", "dry-run", f"deployment/auth-service in {NS}")
    ]
    result = record["actions"][0]["result"]
    assert "256Mi -> 1024Mi" in result and "128Mi -> 512Mi" in result and RESTARTED_AT in result
    assert all(r.method == "GET" or r.query.get("dryRun") == "All" for r in prod.requests)
    assert any(r.method == "PATCH" for r in prod.requests)  # the dry runs were sent
    assert deployments(prod) == before
    for name, text in written_text(outcome).items():
        for secret in PLANTED_SECRETS:
            assert secret not in text, name


def test_apply_sets_memory_and_restarts_exactly_the_owning_deployment(prod, run_runbook):
    before = deployments(prod)
    outcome = run(
        run_runbook, prod, "-p", "apply", "true", "-p", "memory_request", "384Mi", "-p", "memory_limit", "768Mi"
    )

    assert outcome.exit_code == 0, outcome.stderr
    assert [(a["id"], a["mode"]) for a in outcome.evidence["actions"]] == [("set-memory", "applied")]
    after = deployments(prod)
    template = after["auth-service"]["spec"]["template"]
    assert template["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "384Mi"},
        "limits": {"cpu": "500m", "memory": "768Mi"},
    }
    assert RESTARTED_AT in template["metadata"]["annotations"]
    assert RESTARTED_AT not in (before["auth-service"]["spec"]["template"]["metadata"].get("annotations") or {})
    assert {name: d for name, d in after.items() if name != "auth-service"} == {
        name: d for name, d in before.items() if name != "auth-service"
    }
    changed = [r.path for r in prod.requests if r.method != "GET"]
    assert changed == [f"/apis/apps/v1/namespaces/{NS}/deployments/auth-service"]  # one patch, one rollout


# --- the lib, through the official client

NO_METRICS_SCENARIO = {
    "namespace": NS,
    "objects": [
        {
            "kind": "Deployment",
            "metadata": {"name": "worker"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "worker"}},
                "template": {
                    "metadata": {"labels": {"app": "worker"}},
                    "spec": {
                        "containers": [
                            {"name": "worker", "image": "worker:1", "resources": {"limits": {"memory": "2Gi"}}}
                        ]
                    },
                },
            },
        },
        {
            "kind": "ReplicaSet",
            "metadata": {
                "name": "worker-7f6d",
                "labels": {"app": "worker"},
                "ownerReferences": [{"kind": "Deployment", "name": "worker"}],
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "worker"}},
                "template": {
                    "metadata": {"labels": {"app": "worker"}},
                    "spec": {"containers": [{"name": "worker", "image": "worker:1"}]},
                },
            },
        },
        # Last terminated with Error exit 1: restarting, but not for memory.
        {
            "kind": "Pod",
            "metadata": {
                "name": "worker-7f6d-err01",
                "labels": {"app": "worker"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "worker-7f6d"}],
            },
            "spec": {
                "containers": [{"name": "worker", "image": "worker:1", "resources": {"limits": {"memory": "2Gi"}}}]
            },
            "status": {
                "containerStatuses": [
                    {
                        "name": "worker",
                        "restartCount": 3,
                        "ready": False,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                    }
                ]
            },
        },
        # Terminated now, by the OOM killer (the current state is the last termination).
        {
            "kind": "Pod",
            "metadata": {
                "name": "worker-7f6d-oom02",
                "labels": {"app": "worker"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "worker-7f6d"}],
            },
            "spec": {
                "containers": [{"name": "worker", "image": "worker:1", "resources": {"limits": {"memory": "2Gi"}}}]
            },
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {"name": "worker", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
                ],
            },
        },
        # OOMKilled before, but its last termination was Completed: not OOMKilled now.
        {
            "kind": "Pod",
            "metadata": {
                "name": "worker-7f6d-done03",
                "labels": {"app": "worker"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "worker-7f6d"}],
            },
            "spec": {"containers": [{"name": "worker", "image": "worker:1"}]},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "worker",
                        "restartCount": 1,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                ],
            },
        },
        {
            "kind": "Pod",
            "metadata": {"name": "debug-shell", "labels": {"app": "debug"}},
            "spec": {"containers": [{"name": "shell", "image": "busybox"}]},
            "status": {
                "containerStatuses": [
                    {
                        "name": "shell",
                        "restartCount": 1,
                        "state": {"running": {"startedAt": {"ago": "1m"}}},
                        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                ]
            },
        },
    ],
}


@pytest.fixture
def workers(kube_api):
    kube_api.load(NO_METRICS_SCENARIO)
    connected = kube_api.connect(NS)
    yield connected
    connected.api.close()


def test_only_a_last_termination_by_the_oom_killer_counts(workers):
    frame = kube.pods.containers(workers)
    oom = kube.pods.oomkilled(frame)
    assert list(zip(oom["pod"], oom["deployment"], strict=True)) == [
        ("debug-shell", None),
        ("worker-7f6d-oom02", "worker"),
    ]
    assert list(oom["workload_kind"]) == [None, "Deployment"]
    assert dict(zip(frame["pod"], frame["last_termination"], strict=True))["worker-7f6d-err01"] == "Error"
    assert dict(zip(frame["pod"], frame["last_termination"], strict=True))["worker-7f6d-done03"] == "Completed"


def test_without_metrics_memory_pressure_says_so_and_a_higher_limit_is_kept(workers):
    kills = oomkilled.memory_kills(kube.pods.containers(workers), 60)
    usage = kube.usage.memory_usage(workers, "", kills)
    assert usage["memory_usage"].isna().all()
    pressure = oomkilled.assess(kills, usage, oomkilled.coinciding_rollouts(workers, kills, 60), 60)[2]
    assert pressure.id == "memory-pressure" and pressure.severity == "info" and "metrics" in pressure.summary
    assert "gave no usage" in pressure.summary  # served, but no PodMetrics for these pods

    changes = oomkilled.resolve(workers, kills, "512Mi", "1024Mi", apply=False)  # worker's limit is 2Gi
    assert [(c.action.id, c.action.target) for c in changes] == [
        ("rollout-restart", f"deployment/worker in {NS}"),
        ("set-memory", f"pod/debug-shell in {NS}"),  # a bare pod: nothing owns it
    ]
    assert "worker kept: its memory limit 2Gi is already at least 1024Mi" in changes[0].action.result
    assert "not done: a bare pod" in changes[1].action.result
    assert list(kube.mitigate.changes_table(changes)["field"]) == [f"spec.template.metadata.annotations.{RESTARTED_AT}"]


def test_a_rollout_of_the_owner_within_the_window_coincides(prod, cluster):
    new = prod.get("replicasets", "auth-service-6b7c9d8f5", NS, group="apps")  # revision 2 of the same template
    for server_owned in ("uid", "resourceVersion"):
        new["metadata"].pop(server_owned)
    new["metadata"].update(
        name="auth-service-59f7c6d4b",
        creationTimestamp={"ago": "15m"},
        annotations={
            "deployment.kubernetes.io/revision": "2",
            "kubernetes.io/change-cause": "deploy auth-service 2.4.0",
        },
    )
    deployment = prod.get("deployments", "auth-service", NS, group="apps")
    deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "2"
    prod.load({"namespace": NS, "objects": [new, deployment]})

    kills = oomkilled.memory_kills(kube.pods.containers(cluster), 60)
    recent = oomkilled.coinciding_rollouts(cluster, kills, 60)
    assert list(zip(recent["deployment"], recent["revision"], recent["coincides"], strict=True)) == [
        ("auth-service", 2, True)
    ]
    finding = oomkilled.assess(kills, kube.usage.memory_usage(cluster, "", kills), recent, 60)[3]
    assert finding.id == "coinciding-rollout" and finding.severity == "warning"
    assert [(r["deployment"], r["revision"]) for r in finding.data["rollouts"]] == [("auth-service", 2)]
    assert not oomkilled.coinciding_rollouts(cluster, kills, 10)["coincides"].any()


def test_memory_parameters_are_checked(cluster):
    oomkilled.check_memory("512Mi", "1Gi")
    with pytest.raises(ValueError, match="above"):
        oomkilled.check_memory("2Gi", "1Gi")
    with pytest.raises(ValueError, match="quantities"):
        oomkilled.check_memory("lots", "1Gi")
    assert [kube.pods.mebibytes(v) for v in (268435456.0, 2**30, 1536 * 2**20, None)] == [
        "256Mi",
        "1Gi",
        "1536Mi",
        None,
    ]


def test_an_empty_namespace_is_data_not_an_error(kube_api):
    kube_api.load(
        {"namespace": "quiet", "objects": [{"kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {}}]}
    )
    quiet = kube_api.connect("quiet")
    try:
        kills = oomkilled.memory_kills(kube.pods.containers(quiet), 60)
        usage = kube.usage.memory_usage(quiet, "", kills)
        node_events = kube.events.for_nodes(quiet, oomkilled.nodes(kills))
        findings = oomkilled.assess(kills, usage, oomkilled.coinciding_rollouts(quiet, kills, 60), 60, node_events)
        assert oomkilled.affected_events(quiet, kills).empty
        assert oomkilled.resolve(quiet, kills, "512Mi", "1024Mi", apply=True) == []
    finally:
        quiet.api.close()
    assert [(f.id, f.severity) for f in findings] == [
        ("oomkilled-containers", "info"),
        ("node-memory-pressure", "info"),
        ("memory-pressure", "info"),
        ("coinciding-rollout", "info"),
    ]
    assert findings[0].data == [] and findings[3].data["rollouts"] == []
    assert all(r.method == "GET" for r in kube_api.requests)


# --- memory on a production cluster: StatefulSets, CronJobs, Argo Rollouts, sidecars, evictions, old OOMKills

DATA = "autolytiq-data"


@pytest.fixture
def data(kube_api):
    kube_api.load("memory-on-real-clusters")
    return kube_api


def workload(kube_api, plural, name):
    return kube_api.get(plural, name, DATA, group="apps")


def test_kills_get_their_scope_and_only_recent_ones_count(data, run_runbook):
    before = {name: workload(data, "deployments", name) for name in ("checkout", "search-api", "billing-api")}
    outcome = run_runbook(RUNBOOK, *data.runbook_args(DATA))
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()

    killed = findings["oomkilled-containers"]
    recent = {(d["pod"], d["container"], d["container_type"], d["workload"]) for d in killed["data"] if d["recent"]}
    assert recent == {
        ("ledger-db-0", "postgres", "container", "statefulset/ledger-db"),
        ("checkout-5b8d6c7f9-j7q4p", "istio-proxy", "sidecar", "deployment/checkout"),
        ("search-api-6f7c8d9b5-m2n8k", "log-shipper", "sidecar", "deployment/search-api"),
        ("nightly-export-29412000-q8w2e", "export", "container", "cronjob/nightly-export"),
        ("pricing-6c7d8e9f4-r2t5y", "pricing", "container", "rollout/pricing"),
    }
    [stale] = [d for d in killed["data"] if not d["recent"]]  # three days old: not this incident
    assert stale["pod"] == "billing-api-7c5d9f8b6-w8x2c" and "3 days ago" in killed["summary"]

    node = findings["node-memory-pressure"]
    assert node["severity"] == "critical"
    assert [e["pod"] for e in node["data"]["evicted"]] == ["report-worker-8d9c7b6f5-t5v9r"]
    assert {(e["node"], e["reason"]) for e in node["data"]["node_events"]} == {
        ("worker-3", "SystemOOM"),
        ("worker-3", "EvictionThresholdMet"),
    }
    assert node["data"]["sigkilled"] == ["search-indexer-5c6d7e8f9-b4h7s/indexer"]
    pressure = findings["memory-pressure"]  # the JVM at 95 %: supports, decides nothing
    assert [d["pod"] for d in pressure["data"]] == ["billing-api-7c5d9f8b6-w8x2c"] and "supports" in pressure["summary"]

    actions = {a["target"]: a for a in outcome.evidence["actions"]}
    assert set(actions) == {
        f"statefulset/ledger-db in {DATA}",
        f"deployment/checkout in {DATA}",
        f"deployment/search-api in {DATA}",
        f"cronjob/nightly-export in {DATA}",
        f"rollout/pricing in {DATA}",
    }  # billing-api, killed three days ago, is left alone
    ledger = actions[f"statefulset/ledger-db in {DATA}"]["result"]
    assert ledger.startswith("accepted by server-side dry run") and "containers[postgres]" in ledger
    assert (
        "initContainers[log-shipper].resources.limits.memory: 64Mi -> 1024Mi"
        in (actions[f"deployment/search-api in {DATA}"]["result"])
    )
    istio = actions[f"deployment/checkout in {DATA}"]["result"]
    assert istio.startswith("not done") and "sidecar.istio.io/proxyMemoryLimit" in istio
    assert "jobTemplate" in actions[f"cronjob/nightly-export in {DATA}"]["result"]
    assert "Argo Rollout" in actions[f"rollout/pricing in {DATA}"]["result"]
    assert all(r.method == "GET" or r.dry_run for r in data.requests)
    assert {name: workload(data, "deployments", name) for name in before} == before


def test_apply_changes_the_statefulset_and_the_sidecar_in_its_template_only(data, run_runbook):
    checkout = workload(data, "deployments", "checkout")
    outcome = run_runbook(RUNBOOK, *data.runbook_args(DATA), "-p", "apply", "true")
    assert outcome.exit_code == 0, outcome.stderr
    ledger = workload(data, "statefulsets", "ledger-db")["spec"]["template"]
    assert ledger["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1024Mi"
    assert RESTARTED_AT in ledger["metadata"]["annotations"]
    search = workload(data, "deployments", "search-api")["spec"]["template"]["spec"]
    assert search["initContainers"][0]["resources"]["limits"]["memory"] == "1024Mi"
    assert search["containers"][0]["resources"]["limits"]["memory"] == "2Gi"
    assert workload(data, "deployments", "checkout") == checkout  # the injected sidecar: annotations, by hand
    patched = sorted(
        r.path.rsplit("/", 2)[-2] + "/" + r.path.rsplit("/", 1)[-1] for r in data.requests if r.method == "PATCH"
    )
    assert patched == ["deployments/search-api", "statefulsets/ledger-db"]


QUOTA = {
    "namespace": NS,
    "objects": [
        {
            "kind": "ResourceQuota",
            "metadata": {"name": "compute"},
            "spec": {"hard": {"limits.memory": "2Gi", "requests.memory": "1Gi"}},
            "status": {"used": {"limits.memory": "1536Mi", "requests.memory": "640Mi"}},
        },
        {
            "kind": "LimitRange",
            "metadata": {"name": "container-limits"},
            "spec": {"limits": [{"type": "Container", "max": {"memory": "768Mi"}}]},
        },
    ],
}


def test_a_change_quota_or_limitrange_would_refuse_is_said_and_not_applied(prod, run_runbook):
    """The API server accepts the Deployment patch; admission refuses the pods it would create."""
    prod.load(QUOTA)
    before = deployments(prod)
    dry = run(run_runbook, prod)
    [action] = dry.evidence["actions"]
    assert action["result"].startswith("accepted by server-side dry run")
    assert "LimitRange container-limits: container auth-service limit 1Gi above max 768Mi" in action["result"]
    assert "ResourceQuota compute: limits.memory used 1536Mi of 2Gi; the first new pod" in action["result"]

    applied = run(run_runbook, prod, "-p", "apply", "true")
    [action] = applied.evidence["actions"]
    assert action["mode"] == "applied" and action["result"].startswith("not done: new pods would be refused")
    assert deployments(prod) == before
    assert not [r for r in prod.requests if r.method != "GET" and not r.dry_run]

    fits = run(run_runbook, prod, "-p", "memory_request", "160Mi", "-p", "memory_limit", "320Mi")
    [action] = fits.evidence["actions"]
    assert "refused" not in action["result"] and "256Mi -> 320Mi" in action["result"]


def test_series_events_read_their_count_and_last_time_from_the_series(data, kube_api):
    """events.k8s.io events (the scheduler's) leave count and lastTimestamp null in core/v1."""
    cluster = kube_api.connect(DATA)
    try:
        raw = cluster.core.list_namespaced_event(DATA, field_selector="reason=FailedScheduling").items[0]
        table = kube.events.for_object(cluster, "Pod", "report-worker-8d9c7b6f5-z3c6d")
    finally:
        cluster.api.close()
    assert (raw.count, raw.last_timestamp, raw.first_timestamp) == (None, None, None)
    assert raw.series.count == 14 and raw.event_time is not None
    [row] = table.itertuples()
    assert row.count == 14 and row.source == "default-scheduler"
    assert (raw.series.last_observed_time - row.last_seen).total_seconds() == 0
    assert row.first_seen == raw.event_time


@pytest.mark.parametrize(
    "fault, why",
    [
        ("unavailable", "503 service unavailable (metrics-server down or not ready)"),
        ("forbidden", "not allowed to read the metrics API (RBAC"),
    ],
)
def test_metrics_api_down_or_forbidden_degrades(prod, run_runbook, fault, why):
    if fault == "unavailable":
        prod.server.make_unavailable("metrics.k8s.io")
    else:
        prod.server.forbid("pods", group="metrics.k8s.io", verb="list", namespace=NS)
    outcome = run(run_runbook, prod)
    pressure = outcome.findings()["memory-pressure"]
    assert pressure["severity"] == "info" and why in pressure["summary"]
    assert outcome.findings()["oomkilled-containers"]["severity"] == "critical"  # the rest still runs


def test_node_events_not_readable_are_said_so(data, kube_api):
    data.server.forbid("events", verb="list", namespace="default")
    cluster = kube_api.connect(DATA)
    try:
        node_events = kube.events.for_nodes(cluster, {"worker-3"})
        kills = oomkilled.memory_kills(kube.pods.containers(cluster), 60)
        usage = kube.usage.memory_usage(cluster, "", kills)
        finding = oomkilled.assess(kills, usage, oomkilled.coinciding_rollouts(cluster, kills, 60), 60, node_events)[1]
    finally:
        cluster.api.close()
    assert node_events.frame.empty and "not allowed" in node_events.note
    assert finding.data["node_events"] == [] and "not visible here" in finding.summary
    assert finding.data["evicted"]  # what the namespace shows is still reported

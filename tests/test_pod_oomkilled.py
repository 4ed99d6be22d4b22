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
    assert [{k: d[k] for k in ("pod", "container", "deployment", "restarts", "limit")} for d in killed["data"]] == [
        {"pod": OOM_POD, "container": "auth-service", "deployment": "auth-service", "restarts": 5, "limit": "256Mi"}
    ]
    assert COMPLETED_POD not in str(findings)  # Completed after a rolling deploy is no OOMKill
    assert [(d["pod"], d["pct_of_limit"]) for d in findings["memory-pressure"]["data"]] == [(OOM_POD, 96.5)]
    rollout = findings["coinciding-rollout"]
    assert rollout["data"]["deployments"] == ["auth-service"] and rollout["data"]["rollouts"] == []

    assert [(a["id"], a["mode"], a["target"]) for a in record["actions"]] == [
        ("set-memory", "dry-run", f"deployment/auth-service in {NS}"),
        ("rollout-restart", "dry-run", f"deployment/auth-service in {NS}"),
    ]
    assert "256Mi -> 1024Mi" in record["actions"][0]["result"] and "128Mi -> 512Mi" in record["actions"][0]["result"]
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
    assert {(a["id"], a["mode"]) for a in outcome.evidence["actions"]} == {
        ("set-memory", "applied"),
        ("rollout-restart", "applied"),
    }
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
    changed = {r.path for r in prod.requests if r.method != "GET"}
    assert changed == {f"/apis/apps/v1/namespaces/{NS}/deployments/auth-service"}


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
    assert dict(zip(frame["pod"], frame["last_termination"], strict=True))["worker-7f6d-err01"] == "Error"
    assert dict(zip(frame["pod"], frame["last_termination"], strict=True))["worker-7f6d-done03"] == "Completed"


def test_without_metrics_memory_pressure_says_so_and_a_higher_limit_is_kept(workers):
    oom = kube.pods.oomkilled(kube.pods.containers(workers))
    usage = kube.usage.memory_usage(workers, "", oom)
    assert usage["memory_usage"].isna().all()
    pressure = oomkilled.assess(oom, usage, oomkilled.coinciding_rollouts(workers, oom, 60), 60)[1]
    assert pressure.id == "memory-pressure" and pressure.severity == "info" and "metrics" in pressure.summary

    changes = oomkilled.resolve(workers, oom, "512Mi", "1024Mi", apply=False)  # worker's limit is 2Gi
    assert [(c.action.id, c.action.target) for c in changes] == [
        ("set-memory", f"deployment/worker in {NS}"),
        ("rollout-restart", f"deployment/worker in {NS}"),
    ]
    assert "not changed" in changes[0].action.result and changes[0].diff.empty
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

    oom = kube.pods.oomkilled(kube.pods.containers(cluster))
    recent = oomkilled.coinciding_rollouts(cluster, oom, 60)
    assert list(zip(recent["deployment"], recent["revision"], recent["coincides"], strict=True)) == [
        ("auth-service", 2, True)
    ]
    finding = oomkilled.assess(oom, kube.usage.memory_usage(cluster, "", oom), recent, 60)[2]
    assert finding.id == "coinciding-rollout" and finding.severity == "warning"
    assert [(r["deployment"], r["revision"]) for r in finding.data["rollouts"]] == [("auth-service", 2)]
    assert not oomkilled.coinciding_rollouts(cluster, oom, 10)["coincides"].any()


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
        oom = kube.pods.oomkilled(kube.pods.containers(quiet))
        usage = kube.usage.memory_usage(quiet, "", oom)
        findings = oomkilled.assess(oom, usage, oomkilled.coinciding_rollouts(quiet, oom, 60), 60)
        assert oomkilled.affected_events(quiet, oom).empty
        assert oomkilled.resolve(quiet, oom, "512Mi", "1024Mi", apply=True) == []
    finally:
        quiet.api.close()
    assert [(f.id, f.severity, f.data or None) for f in findings] == [
        ("oomkilled-containers", "info", None),
        ("memory-pressure", "info", None),
        ("coinciding-rollout", "info", {"window_minutes": 60, "deployments": [], "rollouts": []}),
    ]
    assert all(r.method == "GET" for r in kube_api.requests)

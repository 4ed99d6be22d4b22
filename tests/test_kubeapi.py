"""The test API server, driven only through the official kubernetes client and kubectl."""

import base64
import json
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

NS = "autolytiq-prod"
GATEWAY_POD = "api-gateway-7d9f8b6c5d-x2k9p"
OOM_POD = "auth-service-6b7c9d8f5-k4j2w"
COMPLETED_POD = "api-gateway-5c8d7f9b4-h8t2n"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


@pytest.fixture
def cluster(kube_api):
    kube_api.load("autolytiq-prod")
    return kube_api


@pytest.fixture
def api(cluster):
    api_client = cluster.client()
    yield api_client
    api_client.close()


@pytest.fixture
def core(api):
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api):
    return client.AppsV1Api(api)


@pytest.fixture
def custom(api):
    return client.CustomObjectsApi(api)


def names(items):
    return sorted(item.metadata.name for item in items)


def error_of(call, *args, **kwargs):
    with pytest.raises(ApiException) as raised:
        call(*args, **kwargs)
    return raised.value.status, json.loads(raised.value.body)


# --- kubeconfig and discovery


def test_the_client_is_configured_from_the_written_kubeconfig(cluster, api):
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == cluster.url
    assert api.configuration.host == cluster.url
    assert client.VersionApi(api).get_code().git_version == "v1.32.0"


def test_discovery_lists_core_and_named_groups(api):
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name: g.preferred_version.group_version for g in client.ApisApi(api).get_api_versions().groups}
    assert groups == {
        "apps": "apps/v1",
        "batch": "batch/v1",
        "discovery.k8s.io": "discovery.k8s.io/v1",
        "metrics.k8s.io": "metrics.k8s.io/v1beta1",
        "cert-manager.io": "cert-manager.io/v1",
    }
    core_resources = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert core_resources["pods"].kind == "Pod" and "pods/log" in core_resources
    assert core_resources["nodes"].namespaced is False
    assert client.CoreV1Api(api).get_api_resources().group_version == "v1"


def test_every_scenario_object_deserialises_into_the_client_models(core, apps):
    assert len(core.list_pod_for_all_namespaces().items) == 5
    assert len(core.list_event_for_all_namespaces().items) == 6
    assert names(core.list_namespace().items) == ["autolytiq-prod", "default"]
    assert names(core.list_node().items) == ["worker-1", "worker-2"]
    assert names(core.list_namespaced_service(NS).items) == ["api-gateway", "auth-service"]
    assert names(core.list_namespaced_config_map(NS).items) == ["api-gateway-config"]
    assert names(core.list_namespaced_secret(NS).items) == ["autolytiq-secrets"]
    assert names(apps.list_namespaced_deployment(NS).items) == ["api-gateway", "auth-service"]
    assert len(apps.list_replica_set_for_all_namespaces().items) == 4
    node = core.read_node("worker-2")
    assert node.status.node_info.kubelet_version == "v1.32.0"
    assert node.status.allocatable["memory"] == "16393220Ki"


# --- pods: selectors and statuses


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("app=api-gateway", [COMPLETED_POD, "api-gateway-7d9f8b6c5d-q7m4z", GATEWAY_POD]),
        ("app==api-gateway,pod-template-hash!=5c8d7f9b4", ["api-gateway-7d9f8b6c5d-q7m4z", GATEWAY_POD]),
        ("tier in (backend, batch)", [OOM_POD, "auth-service-6b7c9d8f5-p9r3v"]),
        ("app notin (api-gateway),tier", [OOM_POD, "auth-service-6b7c9d8f5-p9r3v"]),
        ("!pod-template-hash", []),
        ("app=nonexistent", []),
    ],
)
def test_list_pods_with_label_selectors(core, selector, expected):
    assert names(core.list_namespaced_pod(NS, label_selector=selector).items) == expected


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("status.phase=Running,spec.nodeName=worker-2", ["api-gateway-7d9f8b6c5d-q7m4z", OOM_POD]),
        ("status.phase!=Running", [COMPLETED_POD]),
        (f"metadata.name=={OOM_POD}", [OOM_POD]),
        ("metadata.namespace=default", []),
    ],
)
def test_list_pods_in_all_namespaces_with_field_selectors(core, selector, expected):
    assert names(core.list_pod_for_all_namespaces(field_selector=selector).items) == expected


def test_bad_selectors_are_rejected_like_the_real_server(core):
    status, body = error_of(core.list_namespaced_pod, NS, field_selector="spec.hostname=x")
    assert (status, body["reason"], body["message"]) == (400, "BadRequest", "field label not supported: spec.hostname")
    assert error_of(core.list_namespaced_pod, NS, label_selector="app in api")[0] == 400


def test_list_carries_kind_and_resource_version(cluster, api):
    data = json.loads(client.CoreV1Api(api).list_namespaced_pod(NS, _preload_content=False).data)
    assert data["kind"] == "PodList" and data["apiVersion"] == "v1"
    assert int(data["metadata"]["resourceVersion"]) > 1000


def test_container_statuses_deserialise_with_last_state(core):
    oom = core.read_namespaced_pod(OOM_POD, NS)
    status = oom.status.container_statuses[0]
    assert (status.restart_count, status.ready) == (5, True)
    assert status.last_state.terminated.reason == "OOMKilled"
    assert status.last_state.terminated.exit_code == 137
    assert status.image_id.startswith("registry.autolytiq.io/auth-service@sha256:")
    assert oom.spec.containers[0].resources.limits["memory"] == "256Mi"
    completed = core.read_namespaced_pod(COMPLETED_POD, NS)
    assert completed.status.phase == "Succeeded"
    assert completed.status.container_statuses[0].state.terminated.reason == "Completed"
    assert completed.metadata.owner_references[0].name == "api-gateway-5c8d7f9b4"


# --- logs


def test_logs_tail_lines(core):
    text = core.read_namespaced_pod_log(GATEWAY_POD, NS, container="gateway", tail_lines=2)
    assert text.splitlines() == [
        "level=error method=GET path=/api/v1/me status=504 upstream=auth-service latency_ms=10000 "
        'error="upstream request timeout"',
        "level=info method=GET path=/healthz status=200 upstream=- latency_ms=0",
    ]


def test_logs_since_seconds_keeps_only_recent_lines(core):
    lines = core.read_namespaced_pod_log(GATEWAY_POD, NS, container="gateway", since_seconds=300).splitlines()
    statuses = [re.search(r"status=(\d+)", line).group(1) for line in lines]
    assert statuses == ["502", "503", "503", "503", "200", "504", "200"]
    everything = core.read_namespaced_pod_log(GATEWAY_POD, NS, container="gateway").splitlines()
    assert len(everything) == 15


def test_logs_with_timestamps(core):
    lines = core.read_namespaced_pod_log(
        GATEWAY_POD, NS, container="gateway", tail_lines=1, timestamps=True
    ).splitlines()
    stamp, text = lines[0].split(" ", 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", stamp)
    when = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    assert timedelta(seconds=20) < datetime.now(timezone.utc) - when < timedelta(seconds=60)
    assert text.startswith("level=info method=GET path=/healthz")


def test_previous_logs_show_the_oom(core):
    previous = core.read_namespaced_pod_log(OOM_POD, NS, previous=True)
    assert previous.splitlines()[-1] == (
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"
    )
    current = core.read_namespaced_pod_log(OOM_POD, NS)
    assert "FATAL" not in current and "token cache size 41000" in current


def test_logs_need_a_valid_container_and_a_previous_instance(core):
    status, body = error_of(core.read_namespaced_pod_log, GATEWAY_POD, NS)
    assert status == 400
    assert body["message"] == (
        f"a container name must be specified for pod {GATEWAY_POD}, choose one of: [gateway log-shipper]"
    )
    assert error_of(core.read_namespaced_pod_log, GATEWAY_POD, NS, container="nginx")[0] == 400
    status, body = error_of(core.read_namespaced_pod_log, GATEWAY_POD, NS, container="gateway", previous=True)
    assert (status, body["message"]) == (
        400,
        f'previous terminated container "gateway" in pod "{GATEWAY_POD}" not found',
    )
    shipper = core.read_namespaced_pod_log(GATEWAY_POD, NS, container="log-shipper")
    assert shipper.startswith("[info] [fluent bit] version=3.1.9")


# --- events


def test_events_by_involved_object(core):
    events = core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={OOM_POD},involvedObject.kind=Pod"
    ).items
    by_reason = {e.reason: e for e in events}
    assert sorted(by_reason) == ["BackOff", "Pulled"]
    assert (by_reason["BackOff"].type, by_reason["BackOff"].count) == ("Warning", 7)
    assert by_reason["BackOff"].involved_object.uid == core.read_namespaced_pod(OOM_POD, NS).metadata.uid
    scaling = core.list_namespaced_event(NS, field_selector="involvedObject.kind=Deployment").items
    assert sorted(e.message for e in scaling) == [
        "Scaled down replica set api-gateway-5c8d7f9b4 to 0 from 1",
        "Scaled up replica set api-gateway-7d9f8b6c5d to 2 from 1",
    ]
    node_events = core.list_event_for_all_namespaces(field_selector="involvedObject.kind=Node").items
    assert [(e.reason, e.metadata.namespace) for e in node_events] == [("OOMKilling", "default")]


# --- deployments: dry run, patches, rollback, scale

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def restart_patch(when="2026-11-26T12:00:00Z"):
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: when}}}}}


def test_dry_run_patch_answers_but_changes_nothing(cluster, apps):
    before = apps.read_namespaced_deployment("api-gateway", NS)
    answer = apps.patch_namespaced_deployment("api-gateway", NS, restart_patch(), dry_run="All")
    assert answer.spec.template.metadata.annotations[RESTARTED_AT] == "2026-11-26T12:00:00Z"
    after = apps.read_namespaced_deployment("api-gateway", NS)
    assert after.spec.template.metadata.annotations is None
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.metadata.generation == before.metadata.generation == 3
    patches = [r for r in cluster.requests if r.method == "PATCH"]
    assert [(p.dry_run, p.content_type) for p in patches] == [(True, STRATEGIC)]
    assert cluster.get("deployments", "api-gateway", NS, group="apps") == json.loads(
        apps.read_namespaced_deployment("api-gateway", NS, _preload_content=False).data
    )


def test_dry_run_create_and_delete_change_nothing(core):
    config_map = {"metadata": {"name": "scratch"}, "data": {"a": "b"}}
    assert core.create_namespaced_config_map(NS, config_map, dry_run="All").metadata.name == "scratch"
    assert error_of(core.read_namespaced_config_map, "scratch", NS)[0] == 404
    core.delete_namespaced_pod(OOM_POD, NS, dry_run="All")
    core.delete_namespaced_pod(OOM_POD, NS, body=client.V1DeleteOptions(dry_run=["All"]))  # as kubectl
    assert core.read_namespaced_pod(OOM_POD, NS).metadata.name == OOM_POD
    deleted = core.delete_namespaced_pod(OOM_POD, NS)
    assert deleted.metadata.name == OOM_POD
    assert error_of(core.read_namespaced_pod, OOM_POD, NS)[0] == 404
    assert error_of(core.read_namespaced_pod_log, OOM_POD, NS)[0] == 404


def test_merge_patch_is_seen_by_a_later_read(apps):
    before = apps.read_namespaced_deployment("api-gateway", NS)
    apps.patch_namespaced_deployment("api-gateway", NS, restart_patch(), _content_type=MERGE)
    after = apps.read_namespaced_deployment("api-gateway", NS)
    assert after.spec.template.metadata.annotations == {RESTARTED_AT: "2026-11-26T12:00:00Z"}
    assert int(after.metadata.resource_version) > int(before.metadata.resource_version)
    assert after.metadata.generation == 4
    assert [c.name for c in after.spec.template.spec.containers] == ["gateway", "log-shipper"]


def test_strategic_merge_patch_merges_containers_by_name(apps):
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "gateway", "resources": {"limits": {"memory": "1Gi"}}}]}}
        }
    }
    apps.patch_namespaced_deployment("api-gateway", NS, patch)
    containers = apps.read_namespaced_deployment("api-gateway", NS).spec.template.spec.containers
    assert [c.name for c in containers] == ["gateway", "log-shipper"]
    assert containers[0].resources.limits == {"cpu": "1", "memory": "1Gi"}
    assert containers[0].image == "registry.autolytiq.io/api-gateway:1.14.2"


def test_merge_patch_replaces_lists(apps):
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "gateway", "image": "registry.autolytiq.io/api-gateway:1.14.3"}]}
            }
        }
    }
    apps.patch_namespaced_deployment("api-gateway", NS, patch, _content_type=MERGE)
    containers = apps.read_namespaced_deployment("api-gateway", NS).spec.template.spec.containers
    assert [(c.name, c.image, c.resources) for c in containers] == [
        ("gateway", "registry.autolytiq.io/api-gateway:1.14.3", None)
    ]


def test_json_patch_and_its_test_operation(apps):
    path = "/spec/template/spec/containers/0/image"
    apps.patch_namespaced_deployment(
        "api-gateway",
        NS,
        [
            {"op": "test", "path": path, "value": "registry.autolytiq.io/api-gateway:1.14.2"},
            {"op": "replace", "path": path, "value": "registry.autolytiq.io/api-gateway:1.14.3"},
        ],
    )
    image = apps.read_namespaced_deployment("api-gateway", NS).spec.template.spec.containers[0].image
    assert image == "registry.autolytiq.io/api-gateway:1.14.3"
    status, _ = error_of(
        apps.patch_namespaced_deployment,
        "api-gateway",
        NS,
        [{"op": "test", "path": path, "value": "nope"}],
        _content_type=JSON_PATCH,
    )
    assert status == 422


def test_rollback_to_the_template_of_a_previous_replicaset(apps):
    history = apps.list_namespaced_replica_set(NS, label_selector="app=api-gateway").items
    owned = [rs for rs in history if rs.metadata.owner_references[0].name == "api-gateway"]
    by_revision = {rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs for rs in owned}
    assert sorted(by_revision) == ["1", "2", "3"]
    assert by_revision["2"].metadata.annotations["kubernetes.io/change-cause"] == "deploy api-gateway 1.14.1"
    template = api_dict(apps, by_revision["2"].spec.template)
    del template["metadata"]["labels"]["pod-template-hash"]
    apps.patch_namespaced_deployment(
        "api-gateway", NS, [{"op": "replace", "path": "/spec/template", "value": template}]
    )
    rolled = apps.read_namespaced_deployment("api-gateway", NS)
    assert rolled.spec.template.spec.containers[0].image == "registry.autolytiq.io/api-gateway:1.14.1"


def api_dict(apps, model):
    return apps.api_client.sanitize_for_serialization(model)


def test_scale_read_patch_and_dry_run(apps):
    scale = apps.read_namespaced_deployment_scale("auth-service", NS)
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=auth-service")
    answer = apps.patch_namespaced_deployment_scale("auth-service", NS, {"spec": {"replicas": 5}}, dry_run="All")
    assert answer.spec.replicas == 5
    assert apps.read_namespaced_deployment("auth-service", NS).spec.replicas == 2
    apps.patch_namespaced_deployment_scale("auth-service", NS, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("auth-service", NS).spec.replicas == 3
    assert apps.read_namespaced_deployment_scale("auth-service", NS).spec.replicas == 3
    status, body = error_of(apps.patch_namespaced_deployment_scale, "auth-service", NS, {"spec": {"replicas": -1}})
    assert (status, body["reason"]) == (422, "Invalid")


def test_replace_with_a_stale_resource_version_conflicts(apps):
    deployment = apps.read_namespaced_deployment("auth-service", NS)
    apps.patch_namespaced_deployment("auth-service", NS, {"metadata": {"labels": {"touched": "yes"}}})
    deployment.spec.replicas = 4
    status, body = error_of(apps.replace_namespaced_deployment, "auth-service", NS, deployment)
    assert (status, body["reason"]) == (409, "Conflict")
    fresh = apps.read_namespaced_deployment("auth-service", NS)
    fresh.spec.replicas = 4
    assert apps.replace_namespaced_deployment("auth-service", NS, fresh).spec.replicas == 4


# --- secrets, metrics, certificates, errors


def test_secret_data_is_served_base64_encoded(core):
    secret = core.read_namespaced_secret("autolytiq-secrets", NS)
    assert sorted(secret.data) == ["DATABASE_URL", "JWT_SECRET"]
    assert base64.b64decode(secret.data["JWT_SECRET"]).decode() == "jwt-signing-key-7f3a9c2e-never-print-me"


def test_pod_and_node_metrics_through_custom_objects(custom):
    pods = custom.list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", NS, "pods", label_selector="app=auth-service"
    )
    assert pods["kind"] == "PodMetricsList"
    usage = {p["metadata"]["name"]: p["containers"][0]["usage"] for p in pods["items"]}
    assert usage == {
        OOM_POD: {"cpu": "93m", "memory": "247Mi"},
        "auth-service-6b7c9d8f5-p9r3v": {"cpu": "41m", "memory": "118Mi"},
    }
    node = custom.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", "worker-2")
    assert node["usage"] == {"cpu": "1655m", "memory": "7012Mi"}
    status, _ = error_of(custom.delete_cluster_custom_object, "metrics.k8s.io", "v1beta1", "nodes", "worker-2")
    assert status == 405


def test_certificates_and_their_status_subresource(custom):
    args = ("cert-manager.io", "v1", NS, "certificates")
    listed = custom.list_namespaced_custom_object(*args)
    assert [c["metadata"]["name"] for c in listed["items"]] == ["api-gateway-tls"]
    certificate = listed["items"][0]
    assert certificate["kind"] == "Certificate" and certificate["spec"]["dnsNames"] == ["api.autolytiq.io"]
    not_after = datetime.strptime(certificate["status"]["notAfter"], "%Y-%m-%dT%H:%M:%SZ")
    left = not_after.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)
    assert timedelta(days=4) < left < timedelta(days=5, minutes=1)

    failing = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Failed"}]}}
    custom.patch_namespaced_custom_object(*args, "api-gateway-tls", failing)  # status is ignored here
    assert custom.get_namespaced_custom_object(*args, "api-gateway-tls")["status"]["conditions"][0]["status"] == "True"
    custom.patch_namespaced_custom_object_status(*args, "api-gateway-tls", failing)
    status = custom.get_namespaced_custom_object_status(*args, "api-gateway-tls")["status"]
    assert status["conditions"] == [{"type": "Ready", "status": "False", "reason": "Failed"}]
    assert "notAfter" in status
    code, _ = error_of(
        custom.patch_namespaced_custom_object,
        *args,
        "api-gateway-tls",
        {"spec": {"duration": "2160h"}},
        _content_type=STRATEGIC,
    )
    assert code == 415


def test_errors_are_status_objects(core, apps):
    status, body = error_of(core.read_namespaced_pod, "no-such-pod", NS)
    assert (status, body["kind"], body["reason"], body["message"]) == (
        404,
        "Status",
        "NotFound",
        'pods "no-such-pod" not found',
    )
    status, body = error_of(apps.read_namespaced_deployment, "api-gateway", "default")
    assert (status, body["message"]) == (404, 'deployments.apps "api-gateway" not found')
    status, body = error_of(core.create_namespaced_secret, NS, {"metadata": {"name": "autolytiq-secrets"}})
    assert (status, body["reason"]) == (409, "AlreadyExists")
    status, body = error_of(
        core.create_namespaced_pod, NS, {"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "c"}]}}
    )
    assert (status, body["reason"]) == (422, "Invalid")


def test_requests_are_recorded(cluster, core):
    core.list_namespaced_pod(NS, label_selector="app=api-gateway")
    core.read_namespaced_pod_log(OOM_POD, NS, tail_lines=3)
    assert [(r.method, r.path, r.query) for r in cluster.requests] == [
        ("GET", f"/api/v1/namespaces/{NS}/pods", {"labelSelector": "app=api-gateway"}),
        ("GET", f"/api/v1/namespaces/{NS}/pods/{OOM_POD}/log", {"tailLines": "3"}),
    ]
    cluster.reset()
    assert cluster.requests == [] and error_of(core.read_namespaced_pod, OOM_POD, NS)[0] == 404


# --- kubectl


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_get_top_and_logs(cluster, tmp_path):
    def kubectl(*args):
        command = [
            "kubectl",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-n",
            NS,
            *args,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert kubectl("get", "pods", "-l", "app=auth-service", "-o", "name").split() == [
        f"pod/{OOM_POD}",
        "pod/auth-service-6b7c9d8f5-p9r3v",
    ]
    table = {line.split()[0]: line.split()[1:4] for line in kubectl("get", "pods").splitlines()[1:]}
    assert table[OOM_POD] == ["1/1", "Running", "5"]
    assert table[COMPLETED_POD] == ["0/1", "Completed", "0"]
    top = {line.split()[0]: line.split()[1:] for line in kubectl("top", "pods").splitlines()[1:]}
    assert top[OOM_POD] == ["93m", "247Mi"]
    assert kubectl("get", "certificates", "-o", "name") == "certificate.cert-manager.io/api-gateway-tls\n"
    assert kubectl("logs", OOM_POD, "--previous", "--tail", "1").startswith("FATAL ERROR")
    kubectl("delete", "pod", OOM_POD, "--dry-run=server")
    assert cluster.get("pods", OOM_POD, NS)["metadata"]["name"] == OOM_POD
    assert "deploy api-gateway 1.14.1" in kubectl("rollout", "history", "deployment/api-gateway")


# --- scenarios given as data in the test

CRASHING = {
    "namespace": "payments",
    "objects": [
        {
            "kind": "Pod",
            "metadata": {"name": "ledger-0", "labels": {"app": "ledger"}},
            "spec": {"nodeName": "worker-9", "containers": [{"name": "ledger", "image": "ledger:4.2"}]},
            "status": {
                "containerStatuses": [
                    {
                        "name": "ledger",
                        "restartCount": 12,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"reason": "Error", "finishedAt": {"ago": "45s"}}},
                    }
                ]
            },
        },
        {
            "kind": "Pod",
            "metadata": {"name": "ledger-1", "labels": {"app": "ledger"}},
            "spec": {"nodeName": "worker-9", "containers": [{"name": "ledger", "image": "ledger:4.2"}]},
            "status": {"phase": "Pending"},
        },
    ],
    "logs": [{"pod": "ledger-0", "previous": [{"ago": 50, "line": "panic: ledger locked"}]}],
}


def test_a_scenario_given_as_a_dict_is_completed_into_real_looking_pods(kube_api):
    kube_api.load(CRASHING)
    with kube_api.client() as api:
        check_crashing_pods(kube_api, client.CoreV1Api(api))


def check_crashing_pods(kube_api, core):
    crashing, pending = core.list_namespaced_pod("payments", label_selector="app=ledger").items
    status = crashing.status.container_statuses[0]
    assert (status.state.waiting.reason, status.ready, status.restart_count) == ("CrashLoopBackOff", False, 12)
    assert status.last_state.terminated.exit_code == 1
    assert [c.status for c in crashing.status.conditions if c.type == "Ready"] == ["False"]
    assert pending.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    assert core.read_namespaced_pod_log("ledger-0", "payments", previous=True) == "panic: ledger locked\n"
    status, body = error_of(core.read_namespaced_pod_log, "ledger-1", "payments")
    assert body["message"] == 'container "ledger" in pod "ledger-1" is waiting to start: ContainerCreating'
    assert kube_api.get("namespaces", "payments")["status"]["phase"] == "Active"

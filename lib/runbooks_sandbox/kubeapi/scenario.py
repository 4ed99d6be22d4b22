"""Scenarios: YAML files of Kubernetes objects and pod logs, completed with what a real server adds.

A scenario file (scenarios/NAME.yaml beside this module):

    namespace: autolytiq-prod          # for objects that name none
    objects:                           # apiVersion may be left out: it follows from kind
      - kind: Pod
        metadata: {name: web-1, labels: {app: web}, creationTimestamp: {ago: 2h}}
        spec: {containers: [{name: web, image: "nginx:1.27"}]}
    logs:
      - pod: web-1
        container: web                 # may be left out when the pod has one container
        current:
          - {ago: 300, line: "GET / 200"}   # ago: seconds, or 90s / 5m / 2h / 3d
          - "GET / 200"                     # without ago: the time of the line above (or now)
          - {ago: 60, line: "GET / 502", repeat: 5, every: 10}
        previous: ["OOM"]

Anywhere in an object, a mapping {ago: D} or {in: D} stands for the timestamp D before or after
load time. complete() fills the fields a real server would show (uids, timestamps, container
statuses with imageID/containerID, conditions, node info...), so files can stay short. What it
fills follows the API server and the kubelet, not the runbooks:
- a Pod's initContainers get initContainerStatuses: a native sidecar (restartPolicy: Always) runs
  beside the containers, a plain init container has finished (Completed, ready);
- a Pod evicted by the kubelet (status.reason: Evicted) has phase Failed, a DisruptionTarget
  condition (TerminationByKubelet) and containers terminated ContainerStatusUnknown, exit code 137,
  without times;
- an Event given an eventTime is one recorded through events.k8s.io (scheduler, controllers): in
  core/v1 its firstTimestamp, lastTimestamp and count stay null, repeats are in `series`;
- StatefulSets, DaemonSets, Jobs and CronJobs get the defaults and status fields of apps/v1 and
  batch/v1; EndpointSlices their conditions, owner Service and labels; ResourceQuotas status.hard.

Besides objects and logs, a scenario may say `unavailable: [metrics.k8s.io]` (an aggregated API whose
backend is down answers 503 "service unavailable", as kube-aggregator does) and
`forbidden: [{resource: pods, group: metrics.k8s.io, verb: list, namespace: NS}]` (RBAC answers 403;
namespace "" means only the cluster-wide request, none every request).
"""

import base64
import copy
import functools
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from . import resources

SCENARIOS = Path(__file__).parent / "scenarios"


@dataclass
class Scenario:
    objects: list = field(default_factory=list)  # complete API objects
    logs: list = field(default_factory=list)  # {namespace, pod, container, current, previous}
    namespace: str | None = None  # the scenario's default namespace
    unavailable: list = field(default_factory=list)  # API groups answering 503
    forbidden: list = field(default_factory=list)  # {resource, group, verb, namespace}: answered 403


# --- time


def utcnow():
    return datetime.now(timezone.utc)


def rfc3339(when):
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339nano(when):
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond * 1000:09d}Z"


def parse_time(text):
    """An RFC 3339 timestamp (fractions beyond microseconds are cut) as an aware datetime."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


def seconds(duration):
    """300, '300', '90s', '5m', '2h' or '3d' -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", str(duration).strip())
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def resolve_times(data, now):
    """Replace every {ago: D} / {in: D} mapping inside data by an RFC 3339 timestamp."""
    if isinstance(data, dict):
        if len(data) == 1 and ("ago" in data or "in" in data):
            sign = -1 if "ago" in data else 1
            return rfc3339(now + sign * timedelta(seconds=seconds(next(iter(data.values())))))
        return {key: resolve_times(value, now) for key, value in data.items()}
    if isinstance(data, list):
        return [resolve_times(item, now) for item in data]
    return data


# --- loading


def load_scenario(source, now=None):
    """A Scenario from a name under scenarios/, a path to a YAML file, or a dict of the same shape."""
    if isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        path = Path(source)
        if path.suffix not in (".yaml", ".yml"):
            path = SCENARIOS / f"{source}.yaml"
        data = copy.deepcopy(_read_yaml(path.resolve(), path.stat().st_mtime))
    unknown = set(data) - {"namespace", "objects", "logs", "unavailable", "forbidden"}
    if unknown:
        raise ValueError(f"unknown scenario keys: {sorted(unknown)}")
    now = (now or utcnow()).replace(microsecond=0)
    namespace = data.get("namespace")
    objects = [complete(resolve_times(obj, now), namespace, now) for obj in data.get("objects") or []]
    logs = [_log_entry(entry, namespace, objects, now) for entry in data.get("logs") or []]
    forbidden = data.get("forbidden") or []
    for rule in forbidden:
        if "resource" not in rule or set(rule) - {"resource", "group", "verb", "namespace"}:
            raise ValueError(f"forbidden rule {rule}: needs resource, may have group, verb, namespace")
    return Scenario(objects, logs, namespace, list(data.get("unavailable") or []), forbidden)


@functools.lru_cache(maxsize=32)
def _read_yaml(path, mtime):
    """Parsed YAML, cached: each test loads its scenario anew."""
    return yaml.safe_load(path.read_text()) or {}


def _log_entry(entry, namespace, objects, now):
    unknown = set(entry) - {"pod", "container", "namespace", "current", "previous"}
    if unknown or "pod" not in entry:
        raise ValueError(
            f"log entry {entry}: needs pod, may have container, namespace, "
            f"current, previous; unknown: {sorted(unknown)}"
        )
    namespace = entry.get("namespace", namespace)
    container = entry.get("container")
    if container is None:
        pod = next(
            (
                o
                for o in objects
                if o["kind"] == "Pod"
                and o["metadata"]["name"] == entry["pod"]
                and o["metadata"]["namespace"] == namespace
            ),
            None,
        )
        containers = (pod or {}).get("spec", {}).get("containers", [])
        if len(containers) != 1:
            raise ValueError(f"logs of pod {entry['pod']}: say which container")
        container = containers[0]["name"]
    return {
        "namespace": namespace,
        "pod": entry["pod"],
        "container": container,
        "current": _log_lines(entry.get("current") or [], now),
        "previous": _log_lines(entry.get("previous") or [], now),
    }


def _log_lines(lines, now):
    """[(datetime, text)] from the scenario's lines, in time order as the kubelet keeps them; a line without ago
    takes the time of the last."""
    stamped, when = [], now
    for line in lines:
        if isinstance(line, str):
            line = {"line": line}
        if "line" not in line or set(line) - {"line", "ago", "repeat", "every"}:
            raise ValueError(f"log line {line}: needs line, may have ago, repeat, every")
        if "ago" in line:
            when = now - timedelta(seconds=seconds(line["ago"]))
        for index in range(int(line.get("repeat", 1))):
            at = when + timedelta(seconds=index * seconds(line.get("every", 1)))
            stamped.append((at, str(line["line"])))
    return sorted(stamped, key=lambda pair: pair[0])


# --- completing objects


def uid_for(kind, namespace, name):
    """A stable uid, so that owner references and involvedObject can be filled in."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubeapi-test/{kind}/{namespace or ''}/{name}"))


def _hex(*parts, length=64):
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:length]


def complete(obj, namespace=None, now=None):
    """A copy of obj with what a real API server would show filled in where missing."""
    now = now or utcnow().replace(microsecond=0)
    obj = copy.deepcopy(obj)
    resource = resources.find_kind(obj.get("apiVersion"), obj.get("kind"))
    if resource is None:
        raise ValueError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
    obj["apiVersion"] = resources.api_version(resource)
    meta = obj.setdefault("metadata", {})
    if resource["namespaced"]:
        meta.setdefault("namespace", namespace)
        if not meta["namespace"]:
            raise ValueError(f"{obj['kind']} {meta.get('name')}: no namespace")
    if obj["kind"] == "Event":
        _event(obj, now)
    meta.setdefault("uid", uid_for(obj["kind"], meta.get("namespace"), meta["name"]))
    meta.setdefault("creationTimestamp", rfc3339(now - timedelta(days=1)))
    for owner in meta.get("ownerReferences", []):
        owner_resource = resources.find_kind(owner.get("apiVersion"), owner["kind"])
        if owner_resource is None and "apiVersion" not in owner:  # e.g. an Argo Rollout: say its apiVersion
            raise ValueError(f"{obj['kind']} {meta['name']}: owner kind {owner['kind']} needs its apiVersion")
        if owner_resource is not None:
            owner.setdefault("apiVersion", resources.api_version(owner_resource))
        owner.setdefault("uid", uid_for(owner["kind"], meta.get("namespace"), owner["name"]))
        owner.setdefault("controller", True)
        owner.setdefault("blockOwnerDeletion", True)
    fill = {
        "Pod": _pod,
        "Deployment": _deployment,
        "ReplicaSet": _replicaset,
        "Secret": _secret,
        "Service": _service,
        "Node": _node,
        "Namespace": _namespace,
        "PodMetrics": _metrics,
        "NodeMetrics": _metrics,
        "Certificate": _certificate,
        "StatefulSet": _statefulset,
        "DaemonSet": _daemonset,
        "Job": _job,
        "CronJob": _cronjob,
        "EndpointSlice": _endpoint_slice,
        "ResourceQuota": _resource_quota,
    }.get(obj["kind"])
    if fill:
        fill(obj, now)
    return obj


def _image_id(image):
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repository}@sha256:{_hex(image)}"


STATUS_UNKNOWN = "ContainerStatusUnknown"  # the kubelet's reason for a container gone when its pod was terminated


def _terminated(state, started, now):
    if state.get("reason") == STATUS_UNKNOWN:  # no container left to ask: no times (kubectl shows year 1)
        state.setdefault("exitCode", 137)
        state.setdefault("message", "The container could not be located when the pod was terminated")
        return
    state.setdefault("exitCode", {"Completed": 0, "OOMKilled": 137}.get(state.get("reason"), 1))
    state.setdefault("reason", "Completed" if state["exitCode"] == 0 else "Error")
    state.setdefault("startedAt", started)
    state.setdefault("finishedAt", rfc3339(now))


def _container_defaults(container):
    container.setdefault("imagePullPolicy", "IfNotPresent")
    container.setdefault("resources", {})
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")


def _pod(pod, now):
    meta, spec = pod["metadata"], pod.setdefault("spec", {})
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        _container_defaults(container)
    for key, value in {
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
    }.items():
        spec.setdefault(key, value)
    status = pod.setdefault("status", {})
    evicted = status.get("reason") == "Evicted"
    phase = status.setdefault("phase", "Failed" if evicted else "Running")
    if phase == "Pending" and not spec.get("nodeName"):  # not scheduled: no start, no containers, one condition
        status.setdefault("qosClass", _qos_class(spec.get("containers", [])))
        scheduled = {c["type"]: c for c in status.get("conditions", [])}.setdefault(
            "PodScheduled", {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        )
        scheduled.setdefault("lastProbeTime", None)
        scheduled.setdefault("lastTransitionTime", meta["creationTimestamp"])
        status["conditions"] = [scheduled]
        return
    started = status.setdefault("startTime", meta["creationTimestamp"])
    if spec.get("nodeName"):
        status.setdefault("hostIP", "10.0.0." + str(int(_hex(spec["nodeName"], length=2), 16) % 250 + 2))
    if phase != "Pending":
        status.setdefault(
            "podIP", f"10.244.{int(_hex(meta['uid'], length=2), 16)}.{int(_hex(meta['name'], length=2), 16) % 250 + 2}"
        )
    ended = {
        "Running": {"running": {"startedAt": started}},
        "Succeeded": {"terminated": {"exitCode": 0, "reason": "Completed"}},
        "Failed": {"terminated": {"reason": STATUS_UNKNOWN} if evicted else {"exitCode": 1, "reason": "Error"}},
    }
    given = {s["name"]: s for s in status.get("containerStatuses", [])}
    statuses = [
        _container_status(pod, container, given.get(container["name"]), ended.get(phase), started, now)
        for container in spec.get("containers", [])
    ]
    status["containerStatuses"] = statuses
    given_init = {s["name"]: s for s in status.get("initContainerStatuses", [])}
    init_statuses = []
    for container in spec.get("initContainers", []):
        sidecar = container.get("restartPolicy") == "Always"  # a native sidecar runs beside the containers
        default: dict
        if phase == "Pending":
            default = {"waiting": {"reason": "PodInitializing"}}
        elif sidecar and phase == "Running":
            default = {"running": {"startedAt": started}}
        else:
            default = {
                "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}
            }
        cs = _container_status(pod, container, given_init.get(container["name"]), default, started, now)
        if not sidecar:  # a finished init container reads ready once it exited 0 (the kubelet's prober manager)
            cs["ready"] = bool((cs["state"].get("terminated") or {}).get("exitCode") == 0)
            cs["started"] = False
        init_statuses.append(cs)
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    sidecars_ready = all(
        s["ready"]
        for s, c in zip(init_statuses, spec.get("initContainers", []), strict=True)
        if c.get("restartPolicy") == "Always"
    )
    all_ready = bool(statuses) and all(s["ready"] for s in statuses) and sidecars_ready
    done = phase in ("Succeeded", "Failed")
    if "qosClass" not in status:
        status["qosClass"] = _qos_class(spec.get("containers", []))
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    if evicted:
        conditions.setdefault(
            "DisruptionTarget",
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": status.get("message", "The node was low on resource: memory. "),
            },
        )
    for kind, true in (
        ("PodReadyToStartContainers", not done),
        ("Initialized", phase != "Pending" or not spec.get("initContainers")),
        ("Ready", all_ready),
        ("ContainersReady", all_ready),
        ("PodScheduled", bool(spec.get("nodeName")) or phase != "Pending"),
    ):
        condition = conditions.setdefault(kind, {"type": kind, "status": "True" if true else "False"})
        condition.setdefault("lastProbeTime", None)
        condition.setdefault("lastTransitionTime", started)
        if done and kind in ("Ready", "ContainersReady") and condition["status"] == "False":
            condition.setdefault("reason", "PodFailed" if phase == "Failed" else "PodCompleted")
    for condition in conditions.values():
        condition.setdefault("lastProbeTime", None)
        condition.setdefault("lastTransitionTime", started)
    status["conditions"] = list(conditions.values())


def _container_status(pod, container, given, default_state, started, now):
    """A container status as the kubelet reports it: `given` (from the scenario) completed."""
    meta, phase = pod["metadata"], pod["status"]["phase"]
    cs = given or {"name": container["name"]}
    cs.setdefault("image", container.get("image", ""))
    cs.setdefault("restartCount", 0)
    state = cs.setdefault("state", copy.deepcopy(default_state or {"waiting": {"reason": "ContainerCreating"}}))
    container_id = "containerd://" + _hex(meta["uid"], container["name"], cs["restartCount"])
    if "terminated" in state:
        _terminated(state["terminated"], started, now)
        if state["terminated"].get("reason") != STATUS_UNKNOWN:
            state["terminated"].setdefault("containerID", container_id)
    if (cs.get("lastState") or {}).get("terminated"):
        last = cs["lastState"]["terminated"]
        _terminated(last, started, now)
        if last.get("reason") != STATUS_UNKNOWN:
            last.setdefault(
                "containerID", "containerd://" + _hex(meta["uid"], container["name"], cs["restartCount"] - 1)
            )
    cs.setdefault("lastState", {})
    waiting_first = "waiting" in state and cs["restartCount"] == 0
    cs.setdefault("imageID", "" if waiting_first else _image_id(cs["image"]))
    if not waiting_first:
        cs.setdefault("containerID", container_id)
    cs.setdefault("started", "running" in state)
    cs.setdefault("ready", "running" in state and phase == "Running")
    return cs


def _qos_class(containers):
    requests = [c.get("resources", {}).get("requests") or {} for c in containers]
    limits = [c.get("resources", {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    if all(
        limit.get("cpu") and limit.get("memory") and (not request or request == {k: limit[k] for k in request})
        for request, limit in zip(requests, limits, strict=True)
    ):
        return "Guaranteed"
    return "Burstable"


def _workload_spec(obj, replicas=True):
    spec = obj.setdefault("spec", {})
    if replicas:
        spec.setdefault("replicas", 1)
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    spec.setdefault("selector", {"matchLabels": dict(labels)})
    pod_spec = template.setdefault("spec", {})
    for key, value in {
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
    }.items():
        pod_spec.setdefault(key, value)
    for container in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]:
        _container_defaults(container)
    return spec


def _workload_status(obj, now):
    replicas = obj["spec"]["replicas"]
    status = obj.setdefault("status", {})
    status.setdefault("observedGeneration", obj["metadata"].get("generation", 1))
    status.setdefault("replicas", replicas)
    status.setdefault("readyReplicas", status["replicas"])
    status.setdefault("availableReplicas", status["readyReplicas"])
    for key in ("replicas", "readyReplicas", "availableReplicas"):
        if status[key] == 0:  # the real server leaves zero counts out
            del status[key]
    return status


def _deployment(deployment, now):
    meta = deployment["metadata"]
    meta.setdefault("annotations", {}).setdefault("deployment.kubernetes.io/revision", "1")
    meta.setdefault("generation", 1)
    spec = _workload_spec(deployment)
    spec.setdefault(
        "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    )
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    status = _workload_status(deployment, now)
    status.setdefault("updatedReplicas", status.get("replicas", 0))
    unavailable = spec["replicas"] - status.get("availableReplicas", 0)
    if unavailable > 0:
        status.setdefault("unavailableReplicas", unavailable)
    available = unavailable <= 0
    status.setdefault(
        "conditions",
        [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
                "lastUpdateTime": meta["creationTimestamp"],
                "lastTransitionTime": meta["creationTimestamp"],
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{meta["name"]}" has successfully progressed.',
                "lastUpdateTime": meta["creationTimestamp"],
                "lastTransitionTime": meta["creationTimestamp"],
            },
        ],
    )


def _replicaset(replicaset, now):
    meta = replicaset["metadata"]
    spec = _workload_spec(replicaset)
    annotations = meta.setdefault("annotations", {})
    annotations.setdefault("deployment.kubernetes.io/revision", "1")
    annotations.setdefault("deployment.kubernetes.io/desired-replicas", str(spec["replicas"]))
    meta.setdefault("generation", 1)
    status = _workload_status(replicaset, now)
    status.setdefault("fullyLabeledReplicas", status.get("replicas", 0))
    if status["fullyLabeledReplicas"] == 0:
        del status["fullyLabeledReplicas"]
    status.setdefault("replicas", 0)  # ReplicaSetStatus.replicas is required


def _statefulset(statefulset, now):
    meta = statefulset["metadata"]
    meta.setdefault("generation", 1)
    spec = _workload_spec(statefulset)
    spec.setdefault("serviceName", meta["name"])
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    status = _workload_status(statefulset, now)
    status.setdefault("replicas", 0)  # StatefulSetStatus.replicas is required
    revision = f"{meta['name']}-{_hex(meta['name'], meta['generation'], length=10)}"
    status.setdefault("currentReplicas", status["replicas"])
    status.setdefault("updatedReplicas", status["replicas"])
    status.setdefault("currentRevision", revision)
    status.setdefault("updateRevision", revision)
    status.setdefault("collisionCount", 0)


def _daemonset(daemonset, now):
    meta = daemonset["metadata"]
    meta.setdefault("generation", 1)
    spec = _workload_spec(daemonset, replicas=False)
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    spec.setdefault("revisionHistoryLimit", 10)
    status = daemonset.setdefault("status", {})
    desired = status.setdefault("desiredNumberScheduled", 1)
    status.setdefault("currentNumberScheduled", desired)
    status.setdefault("numberMisscheduled", 0)
    status.setdefault("numberReady", desired)
    status.setdefault("numberAvailable", status["numberReady"])
    status.setdefault("updatedNumberScheduled", desired)
    status.setdefault("observedGeneration", meta["generation"])
    if desired - status["numberAvailable"] > 0:
        status.setdefault("numberUnavailable", desired - status["numberAvailable"])
    if not status["numberAvailable"]:
        del status["numberAvailable"]


def _job_spec(spec, uid, name):
    """A Job's spec as the server defaults it: its selector on the controller-uid label it adds to the template."""
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    if uid:
        labels.setdefault("batch.kubernetes.io/controller-uid", uid)
        labels.setdefault("controller-uid", uid)
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        spec.setdefault("manualSelector", False)
    labels.setdefault("batch.kubernetes.io/job-name", name)
    labels.setdefault("job-name", name)
    pod_spec = template.setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Never")
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    for container in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]:
        _container_defaults(container)


def _job(job, now):
    meta = job["metadata"]
    meta.setdefault("generation", 1)
    _job_spec(job.setdefault("spec", {}), meta["uid"], meta["name"])
    status = job.setdefault("status", {})
    status.setdefault("startTime", meta["creationTimestamp"])
    status.setdefault("uncountedTerminatedPods", {})
    status.setdefault("ready", 0)
    status.setdefault("terminating", 0)


def _cronjob(cronjob, now):
    meta = cronjob["metadata"]
    meta.setdefault("generation", 1)
    spec = cronjob.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_template = spec.setdefault("jobTemplate", {})
    job_template.setdefault("metadata", {})
    _job_spec(job_template.setdefault("spec", {}), None, meta["name"])
    job_template["spec"]["template"]["metadata"]["labels"].pop("batch.kubernetes.io/job-name", None)
    job_template["spec"]["template"]["metadata"]["labels"].pop("job-name", None)
    cronjob.setdefault("status", {})


def _endpoint_slice(endpoint_slice, now):
    meta = endpoint_slice["metadata"]
    service = (meta.get("labels") or {}).get("kubernetes.io/service-name")
    labels = meta.setdefault("labels", {})
    labels.setdefault("endpointslice.kubernetes.io/managed-by", "endpointslice-controller.k8s.io")
    if service:
        meta.setdefault("generateName", f"{service}-")
        meta.setdefault(
            "ownerReferences",
            [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": service,
                    "uid": uid_for("Service", meta["namespace"], service),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        )
    endpoint_slice.setdefault("addressType", "IPv4")
    endpoint_slice.setdefault("endpoints", [])
    for endpoint in endpoint_slice["endpoints"]:
        conditions = endpoint.setdefault("conditions", {})
        conditions.setdefault("ready", True)
        conditions.setdefault("serving", conditions["ready"])
        conditions.setdefault("terminating", False)
        target = endpoint.get("targetRef")
        if target:
            target.setdefault("namespace", meta["namespace"])
            target.setdefault("uid", uid_for(target.get("kind", "Pod"), target["namespace"], target["name"]))
    for port in endpoint_slice.get("ports") or []:
        port.setdefault("protocol", "TCP")


def _resource_quota(quota, now):
    spec = quota.setdefault("spec", {})
    hard = spec.setdefault("hard", {})
    status = quota.setdefault("status", {})
    status.setdefault("hard", dict(hard))
    used = status.setdefault("used", {})
    for key in hard:
        used.setdefault(key, "0")


def _event(event, now):
    involved = event.setdefault("involvedObject", {})
    namespace = event["metadata"]["namespace"]
    involved.setdefault("namespace", namespace)
    kind_resource = resources.find_kind(involved.get("apiVersion"), involved.get("kind"))
    if kind_resource:
        involved.setdefault("apiVersion", resources.api_version(kind_resource))
    involved.setdefault("uid", uid_for(involved.get("kind"), involved["namespace"], involved.get("name")))
    event["metadata"].setdefault(
        "name", f"{involved.get('name')}.{_hex(event.get('reason'), event.get('message'), length=16)}"
    )
    event.setdefault("type", "Normal")
    if event.get("eventTime"):  # recorded through events.k8s.io: the core/v1 view has no first/last/count
        event["eventTime"] = _micro_time(event["eventTime"])
        if event.get("series"):
            event["series"]["lastObservedTime"] = _micro_time(
                event["series"].get("lastObservedTime", event["eventTime"])
            )
            event["series"].setdefault("count", 2)
        event.setdefault("firstTimestamp", None)
        event.setdefault("lastTimestamp", None)
        event["metadata"].setdefault("creationTimestamp", event["eventTime"][:19] + "Z")
        event.setdefault("source", {})
        event.setdefault("reportingComponent", event.get("reportingController", ""))
        event.setdefault("reportingInstance", "")
        return
    first = event.setdefault("firstTimestamp", event.get("lastTimestamp") or rfc3339(now))
    event.setdefault("lastTimestamp", first)
    event["metadata"].setdefault("creationTimestamp", first)
    event.setdefault("count", 1)
    component = {
        "Pod": "kubelet",
        "Deployment": "deployment-controller",
        "ReplicaSet": "replicaset-controller",
        "Node": "kubelet",
        "Certificate": "cert-manager-certificates-trigger",
    }.get(involved.get("kind"), "")
    event.setdefault("source", {"component": component})
    event.setdefault("reportingComponent", event["source"].get("component", ""))
    event.setdefault("reportingInstance", "")
    event.setdefault("eventTime", None)


def _micro_time(text):
    """An RFC 3339 time as a MicroTime (six fraction digits), as events.k8s.io writes eventTime."""
    return parse_time(text).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _secret(secret, now):
    secret.setdefault("type", "Opaque")
    data = secret.setdefault("data", {})
    for key, value in (secret.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()


def _service(service, now):
    spec = service.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    name = service["metadata"]["name"]
    spec.setdefault("clusterIP", f"10.96.{int(_hex(name, length=2), 16)}.{int(_hex(name, 1, length=2), 16) % 250 + 2}")
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    service.setdefault("status", {"loadBalancer": {}})


def _node(node, now):
    meta, name = node["metadata"], node["metadata"]["name"]
    labels = meta.setdefault("labels", {})
    for key, value in {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }.items():
        labels.setdefault(key, value)
    node.setdefault("spec", {})
    status = node.setdefault("status", {})
    capacity = status.setdefault(
        "capacity", {"cpu": "4", "memory": "16393220Ki", "pods": "110", "ephemeral-storage": "101445540Ki"}
    )
    status.setdefault("allocatable", dict(capacity))
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    for kind, value, reason in (
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ):
        condition = conditions.setdefault(kind, {"type": kind, "status": value, "reason": reason})
        condition.setdefault("lastHeartbeatTime", rfc3339(now))
        condition.setdefault("lastTransitionTime", meta["creationTimestamp"])
    status["conditions"] = list(conditions.values())
    address = "10.0.0." + str(int(_hex(name, length=2), 16) % 250 + 2)
    status.setdefault("addresses", [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}])
    info = status.setdefault("nodeInfo", {})
    for key, value in {
        "architecture": "amd64",
        "bootID": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
        "containerRuntimeVersion": "containerd://1.7.24",
        "kernelVersion": "6.1.0-28-cloud-amd64",
        "kubeProxyVersion": "v1.32.0",
        "kubeletVersion": "v1.32.0",
        "machineID": _hex(name, length=32),
        "operatingSystem": "linux",
        "osImage": "Debian GNU/Linux 12 (bookworm)",
        "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_OID, name)),
    }.items():
        info.setdefault(key, value)


def _namespace(namespace, now):
    namespace.setdefault("spec", {"finalizers": ["kubernetes"]})
    namespace.setdefault("status", {"phase": "Active"})


def _metrics(metrics, now):
    metrics["metadata"]["creationTimestamp"] = rfc3339(now)
    metrics.setdefault("timestamp", rfc3339(now - timedelta(seconds=10)))
    metrics.setdefault("window", "20.05s")


def _certificate(certificate, now):
    meta = certificate["metadata"]
    meta.setdefault("generation", 1)
    for condition in (certificate.get("status") or {}).get("conditions", []):
        condition.setdefault("lastTransitionTime", meta["creationTimestamp"])
        condition.setdefault("observedGeneration", meta["generation"])

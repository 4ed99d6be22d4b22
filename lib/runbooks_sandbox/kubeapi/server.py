"""A small, stateful Kubernetes API server for tests: in memory, plain HTTP, a thread per request.

Serves discovery, CRUD, LIST with label and field selectors, three kinds of PATCH, server-side
dry run, and the pods/log, */scale and */status subresources of the resources in resources.py.
There are no controllers: writing a Deployment creates no ReplicaSet and no Pod.
"""

import copy
import json
import secrets
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from . import resources, tables
from .patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from .scenario import Scenario, load_scenario, parse_time, rfc3339, rfc3339nano, utcnow
from .selectors import SelectorError, fields_match, labels_match, parse_field_selector, parse_label_selector

JSON = "application/json"
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict  # parameter -> last value given
    body: object  # decoded JSON, the raw text if it was not JSON, or None
    content_type: str | None = None
    accept: str | None = None

    @property
    def dry_run(self):
        """?dryRun=All, or (as kubectl sends it on DELETE) dryRun: [All] in the DeleteOptions body."""
        in_body = isinstance(self.body, dict) and "All" in (self.body.get("dryRun") or [])
        return self.query.get("dryRun") == "All" or in_body


class ApiError(Exception):
    """An error the server answers with a Status object."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def _qualified(resource):
    """'pods', 'deployments.apps': how the real server names a resource in messages."""
    return f"{resource['plural']}.{resource['group']}" if resource["group"] else resource["plural"]


def _details(resource, name):
    details = {"name": name, "kind": resource["plural"]}
    if resource["group"]:
        details["group"] = resource["group"]
    return details


def not_found(resource, name):
    return ApiError(404, "NotFound", f'{_qualified(resource)} "{name}" not found', _details(resource, name))


def invalid(resource, name, field, message):
    kind = f"{resource['kind']}.{resource['group']}" if resource["group"] else resource["kind"]
    details = dict(
        _details(resource, name),
        kind=resource["kind"],
        causes=[{"reason": "FieldValueInvalid", "message": message, "field": field}],
    )
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {field}: {message}', details)


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def method_not_allowed():
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


class KubeApiServer:
    """In-memory API server. Use as a context manager, or call start() and stop()."""

    def __init__(self, host="127.0.0.1", port=0):
        self._address = (host, port)
        self._lock = threading.RLock()
        self._objects = {}  # (group, version, plural, namespace or "", name) -> object
        self._logs = {}  # (namespace, pod, container) -> {"current": [(datetime, line)], "previous": [...]}
        self._resource_version = 1000
        self._unavailable = set()  # API groups whose (aggregated) backend is down: 503
        self._forbidden = []  # (group, plural, verb, namespace or None for any, "" for cluster-wide only): 403
        self.requests = []  # RecordedRequest, in arrival order
        self._httpd = None
        self._thread = None

    # --- lifecycle

    @property
    def url(self):
        assert self._httpd is not None, "started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._httpd = _HTTPServer(self._address, _Handler)
        self._httpd.api = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="kubeapi-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- state, for tests (not recorded as requests)

    def reset(self):
        """Forget every object, log, fault and recorded request."""
        with self._lock:
            self._objects.clear()
            self._logs.clear()
            self._unavailable.clear()
            self._forbidden.clear()
            self.requests.clear()

    def make_unavailable(self, group):
        """Every request under /apis/<group> answers 503 "service unavailable" (text/plain), as kube-aggregator
        does for an APIService whose backend (e.g. metrics-server) is down."""
        with self._lock:
            self._unavailable.add(group)

    def forbid(self, plural, group="", verb="list", namespace=None):
        """RBAC says no: `verb` on `plural` answers 403 Forbidden, in `namespace` (None: everywhere; "": only
        the cluster-wide request, e.g. a list across all namespaces)."""
        with self._lock:
            self._forbidden.append((group, plural, verb, namespace))

    def load(self, scenario):
        """Add the objects and logs of a scenario: a name under scenarios/, a path, a dict or a Scenario."""
        if not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        with self._lock:
            for group in scenario.unavailable:
                self.make_unavailable(group)
            for rule in scenario.forbidden:
                self.forbid(rule["resource"], rule.get("group", ""), rule.get("verb", "list"), rule.get("namespace"))
            for obj in scenario.objects:
                self.add(obj)
            for log in scenario.logs:
                self.set_logs(
                    log["namespace"], log["pod"], log["container"], log.get("current", []), log.get("previous", [])
                )
        return scenario

    def add(self, obj):
        """Store an object as given (replacing one of the same name), filling server-owned metadata."""
        resource = resources.find_kind(obj.get("apiVersion"), obj.get("kind"))
        if resource is None:
            raise ValueError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = resources.api_version(resource)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace") if resource["namespaced"] else None
        if resource["namespaced"] and not namespace:
            raise ValueError(f"{resource['kind']} {meta.get('name')} needs metadata.namespace")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", rfc3339(utcnow()))
        if "spec" in obj:
            meta.setdefault("generation", 1)
        with self._lock:
            self._validate(resource, obj)
            self._resource_version += 1
            meta["resourceVersion"] = str(self._resource_version)
            self._objects[self._key(resource, namespace, meta["name"])] = obj
            if namespace:
                self._ensure_namespace(namespace)
        return copy.deepcopy(obj)

    def get(self, plural, name, namespace=None, group=""):
        """A copy of a stored object, or None."""
        resource = self._find_plural(plural, group)
        with self._lock:
            obj = self._objects.get(self._key(resource, namespace, name))
            return copy.deepcopy(obj)

    def remove(self, plural, name, namespace=None, group=""):
        """Forget a stored object (as the API server does with an event past its TTL); not recorded as a request."""
        resource = self._find_plural(plural, group)
        with self._lock:
            self._objects.pop(self._key(resource, namespace, name), None)

    def list(self, plural, namespace=None, group=""):
        """Copies of the stored objects of a resource, in one namespace or in all."""
        resource = self._find_plural(plural, group)
        with self._lock:
            return [
                copy.deepcopy(obj)
                for key, obj in sorted(self._objects.items())
                if key[:3] == self._key(resource, None, "")[:3] and namespace in (None, key[3])
            ]

    def set_logs(self, namespace, pod, container, current=(), previous=()):
        """Log lines of a container: each a string or a (datetime, string) pair."""

        def stamped(lines):
            now = utcnow()
            return [line if isinstance(line, tuple) else (now, line) for line in lines]

        with self._lock:
            self._logs[(namespace, pod, container)] = {"current": stamped(current), "previous": stamped(previous)}

    def set_log_file(self, namespace, pod, container, path):
        """A container's current log served from a file, streamed: lines `<RFC 3339 UTC time> <text>` in time order,
        as large as the disk allows (the scale benchmarks' gigabyte of logs)."""
        with self._lock:
            self._logs[(namespace, pod, container)] = {"current": Path(path), "previous": []}

    def _find_plural(self, plural, group):
        for resource in resources.RESOURCES:
            if (resource["plural"], resource["group"]) == (plural, group):
                return resource
        raise ValueError(f"unknown resource {plural!r} in group {group!r}")

    def _key(self, resource, namespace, name):
        namespace = namespace if resource["namespaced"] else None
        return (resource["group"], resource["version"], resource["plural"], namespace or "", name)

    def _ensure_namespace(self, namespace):
        if ("", "v1", "namespaces", "", namespace) not in self._objects:
            self.add(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }
            )

    # --- HTTP

    def handle(self, method, target, headers, raw_body):
        """Answer one request: returns (HTTP code, content type, body text)."""
        url = urlsplit(target)
        path = "/" + url.path.strip("/")
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip() or None
        body, decode_error = None, None
        if raw_body:
            text = raw_body.decode("utf-8", errors="replace")
            try:
                body = json.loads(text)
            except ValueError as error:
                body, decode_error = text, error
        request = RecordedRequest(method, path, query, body, content_type, headers.get("Accept"))
        with self._lock:
            self.requests.append(request)
        try:
            if decode_error:
                raise bad_request(f"the request body is not JSON: {decode_error}")
            with self._lock:
                code, content_type, payload = self._dispatch(request)
        except ApiError as error:
            code, content_type, payload = error.code, JSON, error.status()
        if content_type == JSON:
            payload = json.dumps(payload)
        return code, content_type, payload

    def _dispatch(self, request):
        method, path, query = request.method, request.path, request.query
        content_type, body = request.content_type, request.body
        segments = path.strip("/").split("/")
        if segments[0] == "apis" and len(segments) > 1 and segments[1] in self._unavailable:
            return 503, "text/plain; charset=utf-8", "service unavailable\n"
        document = self._discovery(path)
        if document is not None:
            if method != "GET":
                raise method_not_allowed()
            return 200, JSON, document
        resource, namespace, name, sub = self._route(path)
        if query.get("watch") in ("true", "1"):
            raise bad_request("watch is not supported by the test server")
        dry_run = request.dry_run
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method)
        if verb not in resource["verbs"] or (sub == "log" and method != "GET"):
            raise method_not_allowed()
        self._authorize(resource, verb, namespace, sub)
        if name is None:
            if verb == "list":
                listed = self._list(resource, namespace, query)
                if tables.wants_table(request.accept):
                    return 200, JSON, tables.table(resource, listed["items"], listed["metadata"]["resourceVersion"])
                return 200, JSON, listed
            if verb == "create" and (namespace or not resource["namespaced"]):
                return 201, JSON, self._create(resource, namespace, body, dry_run)
            raise method_not_allowed()
        if sub == "log":
            return 200, "text/plain", self._read_log(namespace, name, query)
        current = self._objects.get(self._key(resource, namespace, name))
        if current is None:
            raise not_found(resource, name)
        if sub == "scale":
            return 200, JSON, self._scale(resource, namespace, name, current, method, content_type, body, dry_run)
        if verb == "get" and not sub and tables.wants_table(request.accept):
            return 200, JSON, tables.table(resource, [copy.deepcopy(current)], current["metadata"]["resourceVersion"])
        if verb == "get":
            return 200, JSON, copy.deepcopy(current)
        if verb == "update":
            return 200, JSON, self._commit(resource, namespace, name, self._body(body), current, dry_run, sub)
        if verb == "patch":
            patched = self._patch(resource, current, content_type, body)
            return 200, JSON, self._commit(resource, namespace, name, patched, current, dry_run, sub)
        if verb == "delete" and not sub:
            return 200, JSON, self._delete(resource, namespace, name, current, dry_run)
        raise method_not_allowed()

    def _authorize(self, resource, verb, namespace, sub):
        for group, plural, denied, where in self._forbidden:
            if (group, plural, denied) != (resource["group"], resource["plural"], verb) or sub:
                continue
            if where is None or where == (namespace or ""):
                scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
                details = {"kind": resource["plural"]}
                if resource["group"]:
                    details["group"] = resource["group"]
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{_qualified(resource)} is forbidden: User "system:serviceaccount:monitoring:runbooks" cannot '
                    f'{verb} resource "{resource["plural"]}" in API group "{resource["group"]}" {scope}',
                    details,
                )

    def _discovery(self, path):
        if path == "/version":
            return resources.SERVER_VERSION
        if path == "/api":
            return resources.api_versions_doc(self.url.split("//", 1)[1])
        if path == "/apis":
            return resources.api_group_list_doc()
        segments = path.strip("/").split("/")
        if path == "/api/v1":
            return resources.api_resource_list_doc("", "v1")
        if segments[0] == "apis" and len(segments) == 2:
            known = [group for group, _ in resources.group_versions()]
            return resources.api_group(segments[1]) if segments[1] in known else None
        if segments[0] == "apis" and len(segments) == 3:
            return resources.api_resource_list_doc(segments[1], segments[2])
        return None

    def _route(self, path):
        """'/apis/apps/v1/namespaces/ns/deployments/web/scale' -> (resource, 'ns', 'web', 'scale')."""
        segments = path.strip("/").split("/")
        unknown = ApiError(404, "NotFound", "the server could not find the requested resource")
        if segments[:2] == ["api", "v1"] and len(segments) > 2:
            group, version, rest = "", "v1", segments[2:]
        elif segments[0] == "apis" and len(segments) > 3:
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise unknown
        namespace = None
        if rest[0] == "namespaces" and len(rest) > 2 and resources.find(group, version, rest[2]):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise unknown
        resource = resources.find(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if (
            resource is None
            or (sub and sub not in resource.get("subresources", []))
            or (namespace and not resource["namespaced"])
            or (name and resource["namespaced"] and not namespace)
        ):
            raise unknown
        return resource, namespace, name, sub

    # --- verbs

    def _list(self, resource, namespace, query):
        supported = ["metadata.name", "metadata.namespace", *resource.get("fields", [])]
        try:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"), supported)
        except SelectorError as error:
            raise bad_request(str(error)) from None
        items = []
        for obj in self.list(resource["plural"], namespace, resource["group"]):
            if labels_match(labels, obj["metadata"].get("labels")) and fields_match(fields, obj):
                if not resource.get("custom"):  # the real server leaves these out of built-in lists
                    obj.pop("kind", None)
                    obj.pop("apiVersion", None)
                items.append(obj)
        return {
            "kind": resource["kind"] + "List",
            "apiVersion": resources.api_version(resource),
            "metadata": {"resourceVersion": str(self._resource_version)},
            "items": items,
        }

    def _create(self, resource, namespace, body, dry_run):
        obj = self._body(body)
        obj["kind"], obj["apiVersion"] = resource["kind"], resources.api_version(resource)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if not meta.get("name"):
            raise invalid(resource, "", "metadata.name", "Required value: name or generateName is required")
        if resource["namespaced"]:
            if meta.setdefault("namespace", namespace) != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if ("", "v1", "namespaces", "", namespace) not in self._objects:
                raise not_found(resources.find("", "v1", "namespaces"), namespace)
        if self._key(resource, namespace, meta["name"]) in self._objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{_qualified(resource)} "{meta["name"]}" already exists',
                _details(resource, meta["name"]),
            )
        self._validate(resource, obj)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=rfc3339(utcnow()))
        meta.pop("resourceVersion", None)
        if "spec" in obj:
            meta["generation"] = 1
        if dry_run:
            return obj
        return self.add(obj)

    def _commit(self, resource, namespace, name, new, current, dry_run, sub=None):
        """Validate and store (unless dry run) a new version of an existing object; return it."""
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if resource["namespaced"] and meta.get("namespace", namespace) != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        old_meta = current["metadata"]
        if meta.get("resourceVersion") not in (None, "", old_meta["resourceVersion"]):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {_qualified(resource)} "{name}": '
                "the object has been modified; please apply your changes to the "
                "latest version and try again",
                _details(resource, name),
            )
        if sub == "status":  # a status write changes only the status...
            new = dict(copy.deepcopy(current), status=new.get("status"))
            meta = new["metadata"]
        elif "status" in resource.get("subresources", []):  # ...and other writes leave it alone
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        if new.get("status") is None:
            new.pop("status", None)
        new["kind"], new["apiVersion"] = resource["kind"], resources.api_version(resource)
        for key in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            if key in old_meta:
                meta[key] = old_meta[key]
        self._validate(resource, new)
        if _body(new) != _body(current) and "generation" in meta:
            meta["generation"] += 1
        if dry_run:
            return new
        self._resource_version += 1
        meta["resourceVersion"] = str(self._resource_version)
        self._objects[self._key(resource, namespace, name)] = new
        return copy.deepcopy(new)

    def _patch(self, resource, current, content_type, body):
        try:
            if content_type == "application/json-patch+json":
                if not isinstance(body, list):
                    raise bad_request("a JSON patch must be a list of operations")
                return json_patch(current, body)
            if not isinstance(body, dict):
                raise bad_request("a merge patch must be a JSON object")
            if content_type == "application/merge-patch+json":
                return merge_patch(current, body)
            if content_type == "application/strategic-merge-patch+json" and not resource.get("custom"):
                return strategic_merge_patch(current, body)
        except PatchError as error:
            raise ApiError(422, "Invalid", str(error)) from None
        accepted = PATCH_TYPES[:2] if resource.get("custom") else PATCH_TYPES
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}",
        )

    def _delete(self, resource, namespace, name, current, dry_run):
        if not dry_run:
            del self._objects[self._key(resource, namespace, name)]
            self._resource_version += 1
            if resource["plural"] == "pods" and not resource["group"]:
                for key in [key for key in self._logs if key[:2] == (namespace, name)]:
                    del self._logs[key]
        if resource["plural"] == "pods":  # pods answer with the object, most others with a Status
            return copy.deepcopy(current)
        details = dict(_details(resource, name), uid=current["metadata"]["uid"])
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _scale(self, resource, namespace, name, current, method, content_type, body, dry_run):
        scale = _scale_of(current)
        if method == "GET":
            return scale
        if method == "PUT":
            wanted = self._body(body)
        elif method == "PATCH":
            wanted = self._patch(resource, scale, content_type, body)
        else:
            raise method_not_allowed()
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(
                resource, name, "spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0"
            )
        new = copy.deepcopy(current)
        new["spec"]["replicas"] = replicas
        return _scale_of(self._commit(resource, namespace, name, new, current, dry_run))

    def _read_log(self, namespace, name, query):
        pods = resources.find("", "v1", "pods")
        pod = self._objects.get(self._key(pods, namespace, name))
        if pod is None:
            raise not_found(pods, name)
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        init_names = [c["name"] for c in pod["spec"].get("initContainers", [])]
        if not pod["spec"].get("nodeName"):
            raise bad_request(f"pod {name} does not have a host assigned")
        container = query.get("container")
        if not container:
            if len(names) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                )
            container = names[0]
        elif container not in names + init_names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        status = pod.get("status") or {}
        statuses = status.get("containerStatuses", []) + status.get("initContainerStatuses", [])
        container_status: dict = next((s for s in statuses if s["name"] == container), {})
        stored = self._logs.get((namespace, name, container), {})
        if query.get("previous") == "true":
            lines = stored.get("previous", [])
            if not lines and not (container_status.get("lastState") or {}).get("terminated"):
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        else:
            lines = stored.get("current", [])
            waiting = (container_status.get("state") or {}).get("waiting")
            if waiting and not lines and not container_status.get("restartCount"):
                raise bad_request(
                    f'container "{container}" in pod "{name}" is waiting to start: '
                    f"{waiting.get('reason', 'ContainerCreating')}"
                )
        cutoff = None
        since_seconds = _int_param(query, "sinceSeconds")
        if since_seconds is not None:
            cutoff = utcnow() - timedelta(seconds=since_seconds)
        elif query.get("sinceTime"):
            cutoff = parse_time(query["sinceTime"])
        tail = _int_param(query, "tailLines")
        if isinstance(lines, Path):
            if tail is not None or query.get("limitBytes") or query.get("timestamps") != "true":
                raise bad_request("a log served from a file is read whole or since a time, with timestamps")
            return _file_log(lines, cutoff)
        if cutoff is not None:
            lines = [line for line in lines if line[0] >= cutoff]
        if tail is not None:
            lines = lines[len(lines) - tail :] if 0 <= tail < len(lines) else lines
        if query.get("timestamps") == "true":
            text = "".join(f"{rfc3339nano(when)} {line}\n" for when, line in lines)
        else:
            text = "".join(f"{line}\n" for _, line in lines)
        limit = _int_param(query, "limitBytes")
        if limit is not None:
            text = text.encode()[:limit].decode(errors="ignore")
        return text

    # --- checks

    def _body(self, body):
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        return copy.deepcopy(body)

    def _validate(self, resource, obj):
        """The few checks the real server makes that runbooks are likely to trip over."""
        meta = obj.get("metadata") or {}
        name = meta.get("name") or ""
        for field in ("labels", "annotations"):
            for key, value in (meta.get(field) or {}).items():
                if not isinstance(value, str):
                    raise bad_request(f"metadata.{field}[{key}]: expected a string, got {value!r}")
        spec = obj.get("spec") or {}
        pod_spec, at = spec, "spec"
        if resource["kind"] == "Job":
            pod_spec, at = (spec.get("template") or {}).get("spec") or {}, "spec.template.spec"
        elif resource["kind"] == "CronJob":
            job = (spec.get("jobTemplate") or {}).get("spec") or {}
            pod_spec, at = (job.get("template") or {}).get("spec") or {}, "spec.jobTemplate.spec.template.spec"
        elif resource["kind"] in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
            replicas = spec.get("replicas", 1)
            if not isinstance(replicas, int) or replicas < 0:
                raise invalid(
                    resource, name, "spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0"
                )
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not selector or any(template_labels.get(k) != v for k, v in selector.items()):
                raise invalid(
                    resource,
                    name,
                    "spec.template.metadata.labels",
                    "Invalid value: selector does not match template labels",
                )
            pod_spec, at = (spec.get("template") or {}).get("spec") or {}, "spec.template.spec"
        elif resource["kind"] != "Pod":
            return
        containers = pod_spec.get("containers") or []
        if not containers:
            raise invalid(resource, name, f"{at}.containers", "Required value")
        for field, listed in (("initContainers", pod_spec.get("initContainers") or []), ("containers", containers)):
            for index, container in enumerate(listed):
                for key in ("name", "image"):
                    if not container.get(key):
                        raise invalid(resource, name, f"{at}.{field}[{index}].{key}", "Required value")


def _scale_of(obj):
    """The autoscaling/v1 Scale view of a Deployment or ReplicaSet."""
    match_labels = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
    meta = {
        k: v
        for k, v in obj["metadata"].items()
        if k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
    }
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": obj["spec"].get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(match_labels.items())),
        },
    }


def _int_param(query, name):
    if name not in query:
        return None
    try:
        return int(query[name])
    except ValueError:
        raise bad_request(f"{name}: invalid integer {query[name]!r}") from None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    api: KubeApiServer

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients that hang up are normal
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        assert isinstance(self.server, _HTTPServer)
        code, content_type, text = self.server.api.handle(self.command, self.path, self.headers, raw_body)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if isinstance(text, str):
            data = text.encode()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")  # a log streamed from a file
        self.end_headers()
        for chunk in filter(None, text):  # an empty chunk would end the answer
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format, *args):
        pass


def _file_log(path, cutoff, chunk=1 << 20):
    """The lines of a log file from `cutoff` on (all without one), as chunks of bytes: older lines are skipped one by
    one, the rest is sent as it is on disk."""
    with open(path, "rb") as log:
        first = log.readline()
        while first and cutoff is not None and parse_time(first.split(b" ", 1)[0].decode()) < cutoff:
            first = log.readline()
        yield first
        while block := log.read(chunk):
            yield block


def _body(obj: dict) -> dict:
    """An object without its metadata and status: what a change of `generation` is about."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}

"""JWT validation failures: why tokens are refused, which pods run with an old secret, clock skew.

Runbook section: Authentication Issues / JWT Validation Failures. The incident-response runbook greps the auth service's
logs and decodes the JWT secret (`kubectl get secret ... | base64 -d`). Here the log lines are
counted by failure reason, and the secret is never shown: its value is read, hashed and dropped
inside `_fingerprint_of`; what leaves this module is a fingerprint, `sha256:` and the first
12 hex digits of the SHA-256 of the value, enough to tell two values apart and nothing more.

A secret's "last changed" time is the latest `metadata.managedFields[].time` (the last write of
any field by any field manager, e.g. kubectl, Helm, external-secrets), else its
creationTimestamp. It is an upper bound for the data change: a later label edit moves it too, so
it can call a pod stale that is not, never the reverse while managedFields are kept.

Tokens signed with a shared secret (HS256) fail with a bad signature when the secret was rotated but not
everywhere. Tokens signed with a private key (RS256, ES256) are checked against the issuer's published key set
(JWKS): a rotation there shows as a key id (`kid`) the validator cannot find, or, with some libraries, as a bad
signature; the cause is a stale JWKS cache or a key not published yet, not a secret. With `jwks_url` the key
ids named in the failures are compared with what the key set publishes now. Consumers are any workload whose
pod template reads the secret: Deployments, StatefulSets, DaemonSets and CronJobs.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import re
from dataclasses import dataclass

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import jwks, units
from ..evidence import Finding
from ..kube import logs, mitigate, pods, workloads
from ..kube.cluster import REQUEST_TIMEOUT, Cluster
from ..redact import fingerprint

# --- Step 1: failure reasons in the auth service's logs

# The wordings of jsonwebtoken and jwks-rsa (Node), jose, PyJWT, golang-jwt (v4, v5) and keyfunc, Spring/Nimbus, per
# reason.
REASONS = {
    "unknown-kid": r"unable to find a signing key that matches|SigningKeyNotFoundError|no applicable key found"
    r"|JWKSNoMatchingKey|no matching key\(s\) found|key ID .{0,20}not found|kid .{0,40}not found|unknown kid",
    "expired": r"jwt expired|signature has expired|token (?:is|has) expired|TokenExpiredError|ExpiredSignatureError",
    "bad-signature": r"invalid signature|signature verification failed|signature is invalid|InvalidSignatureError",
    "not-yet-valid": r"jwt not active|token is not yet valid|token is not valid yet|token used before issued"
    r"|NotBeforeError|ImmatureSignatureError",
    "malformed": r"jwt malformed|not enough segments|too many segments|invalid number of segments"
    r"|token is malformed|invalid header padding|invalid payload padding",
}
# Any other authentication failure: a failure word after jwt/token/auth/bearer, or a 401.
_AUTH_FAILURE = (
    r"unauthori[sz]ed|(?:status|code)\W{0,3}401\b"
    r"|(?:jwt|token|auth\w*|bearer|credentials?)\b.{0,60}?"
    r"\b(?:fail\w*|invalid|denied|reject\w*|missing|(?:not|must be) provided|required|error)"
)
OTHER = "other"
PATTERNS = {**REASONS, OTHER: rf"^(?!.*(?:{'|'.join(REASONS.values())})).*?(?:{_AUTH_FAILURE})"}

POINTS_TO = {
    "unknown-kid": "RS256/JWKS: the token's key id is not in the validator's key set: the issuer rotated its signing "
    "key and the validator's JWKS cache is stale, or the new key is not published yet",
    "expired": "clients send expired tokens: token refresh, or a validator whose clock runs ahead",
    "bad-signature": "the token was signed with another key: with a shared secret (HS256) it was rotated but not "
    "everywhere; with RS256/JWKS the validator's cached key set is stale",
    "not-yet-valid": "nbf/iat in the future: the issuer's clock runs ahead of the validator's (clock skew)",
    "malformed": "the client or a proxy sends something that is not a JWT: not the secret",
    OTHER: "missing token, wrong audience or issuer, or an unclassified auth error",
}


KID = re.compile(r"""(?:kid\W{0,3}|matches\W{1,3})([A-Za-z0-9_.:-]{4,128})""", re.IGNORECASE)


def scan_failures(cluster: Cluster, selector: str, since_minutes: float, tail_lines: int) -> logs.LogScan:
    """The auth service's log lines counted per failure reason (current and previous containers)."""
    return logs.scan(cluster, selector, PATTERNS, since_minutes=since_minutes, tail_lines=tail_lines)


def reason_counts(scan: logs.LogScan) -> pd.DataFrame:
    """One row per reason (zeros included): count, and what the reason points to."""
    totals = scan.totals("pattern").set_index("pattern")["count"]
    return pd.DataFrame(
        [{"reason": reason, "count": int(totals.get(reason, 0)), "points_to": POINTS_TO[reason]} for reason in PATTERNS]
    )


# What redact_line lets through and auth logs carry: JSON-quoted credential keys, Basic credentials.
def examples(scan: logs.LogScan) -> pd.DataFrame:
    """A few lines per reason, already through redact_line (in logs.scan)."""
    return pd.DataFrame(
        [{"reason": reason, "line": line} for reason, lines in scan.examples.items() for line in lines],
        columns=["reason", "line"],
    )


# --- Steps 2 and 3: the secret, who consumes it, and which pods started before it changed


@dataclass(frozen=True)
class SecretState:
    """What can be said about one key of one secret without showing it."""

    namespace: str
    name: str
    key: str
    status: str  # ok | secret not found | key missing | forbidden | HTTP <code>
    changed_at: dt.datetime | None = None
    changed_from: str | None = None  # managedFields | creationTimestamp
    fingerprint: str | None = None

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "namespace": self.namespace,
                    "secret": self.name,
                    "key": self.key,
                    "status": self.status,
                    "changed_at": self.changed_at,
                    "changed_from": self.changed_from,
                    "fingerprint": self.fingerprint,
                }
            ]
        )


def secret_state(cluster: Cluster, secret_name: str, secret_key: str, namespace: str = "") -> SecretState:
    """The key's fingerprint and the secret's last change, in `namespace` (default: the runbook's)."""
    namespace = namespace or cluster.namespace
    try:
        secret = cluster.core.read_namespaced_secret(secret_name, namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        status = {404: "secret not found", 403: "forbidden"}.get(e.status, f"HTTP {e.status}")
        return SecretState(namespace, secret_name, secret_key, status)
    changed_at, changed_from = last_changed(secret.metadata)
    value_print = _fingerprint_of(secret, secret_key)
    return SecretState(
        namespace,
        secret_name,
        secret_key,
        "ok" if value_print else "key missing",
        changed_at,
        changed_from,
        value_print,
    )


def last_changed(metadata) -> tuple[dt.datetime | None, str]:
    """The latest managedFields time, else the creation time (see the module's docstring)."""
    times = [entry.time for entry in metadata.managed_fields or [] if entry.time]
    if times:
        return max(times), "managedFields"
    return metadata.creation_timestamp, "creationTimestamp"


def _fingerprint_of(secret, key: str) -> str | None:
    encoded = (secret.data or {}).get(key)
    return None if encoded is None else fingerprint(base64.b64decode(encoded))


CONSUMER_COLUMNS = ["workload", "kind", "container", "via"]


def consumers(cluster: Cluster, secret_name: str, secret_key: str) -> pd.DataFrame:
    """Workloads (Deployments, StatefulSets, DaemonSets, CronJobs) whose containers get the key: env secretKeyRef,
    envFrom secretRef, or a secret volume."""
    rows = []
    for kind, workload in workloads.list_all(cluster, workloads.WITH_TEMPLATES):
        spec, name = workloads.pod_spec(kind, workload), workload.metadata.name
        volumes = _secret_volumes(spec.volumes or [], secret_name, secret_key)
        for container in [*(spec.init_containers or []), *spec.containers]:
            for via in _ways_in(container, volumes, secret_name, secret_key):
                rows.append({"workload": name, "kind": kind, "container": container.name, "via": via})
    return pd.DataFrame(rows, columns=CONSUMER_COLUMNS)


def _secret_volumes(volumes: list, secret_name: str, secret_key: str) -> set[str]:
    """Names of the pod's volumes that hold the key (a secret volume, or a projected one)."""
    names = set()
    for volume in volumes:
        sources = []  # (secret name, items)
        if volume.secret:
            sources.append((volume.secret.secret_name, volume.secret.items))
        if volume.projected:
            sources += [(p.secret.name, p.secret.items) for p in volume.projected.sources or [] if p.secret]
        for name, items in sources:
            if name == secret_name and (not items or any(item.key == secret_key for item in items)):
                names.add(volume.name)
    return names


def _ways_in(container, volumes: set[str], secret_name: str, secret_key: str) -> list[str]:
    ways = []
    for env in container.env or []:
        ref = env.value_from.secret_key_ref if env.value_from else None
        if ref and ref.name == secret_name and ref.key == secret_key:
            ways.append(f"env {env.name}")
    for source in container.env_from or []:
        if source.secret_ref and source.secret_ref.name == secret_name:
            ways.append("envFrom")
    for mount in container.volume_mounts or []:
        if mount.name in volumes:
            ways.append(f"volume {mount.name} (subPath)" if mount.sub_path else f"volume {mount.name}")
    return ways


SYNC_COLUMNS = ["workload", "kind", "pod", "node", "started", "secret_changed", "stale", "via"]


def secret_sync(cluster: Cluster, secret: SecretState, consuming: pd.DataFrame) -> pd.DataFrame:
    """Each running pod of each consuming deployment: did its containers start before the secret changed?

    `started` is the earliest start of the pod's consuming containers (a restarted container reads
    env anew). Env and subPath mounts keep the value they started with; a plain secret volume is
    rewritten in place by the kubelet within a minute or so, but a process that read it at start-up
    keeps the old key, so it counts as stale too.
    """
    if consuming.empty:
        return pd.DataFrame(columns=SYNC_COLUMNS)
    pod_list = pods.list_pods(cluster)
    owners = pods.owning_workloads(cluster, pod_list)
    rows = []
    for pod in pod_list:
        if pod.status.phase in ("Succeeded", "Failed"):
            continue
        kind, name = owners[pod.metadata.name] or (None, None)
        mine = consuming[(consuming["kind"] == kind) & (consuming["workload"] == name)]
        if mine.empty:
            continue
        started = _started(pod, set(mine["container"]))
        rows.append(
            {
                "workload": name,
                "kind": kind,
                "pod": pod.metadata.name,
                "node": pod.spec.node_name,
                "started": started,
                "secret_changed": secret.changed_at,
                "stale": bool(started and secret.changed_at and started < secret.changed_at),
                "via": ", ".join(dict.fromkeys(mine["via"])),
            }
        )
    frame = pd.DataFrame(rows, columns=SYNC_COLUMNS)
    return frame.sort_values(["workload", "pod"], ignore_index=True)


def _started(pod, containers: set[str]) -> dt.datetime | None:
    """Earliest start among the consuming containers that run; the pod's start if none reports one."""
    starts = [
        s.state.running.started_at
        for s in [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
        if s.name in containers and s.state and s.state.running and s.state.running.started_at
    ]
    return min(starts) if starts else pod.status.start_time


# --- Step 4: the secret across namespaces, by fingerprint


def fingerprints(cluster: Cluster, secret_name: str, secret_key: str, compare_namespaces: list) -> pd.DataFrame:
    """The key's fingerprint in the runbook's namespace (first: the reference) and in each other one."""
    namespaces = list(dict.fromkeys([cluster.namespace, *compare_namespaces]))
    states = [secret_state(cluster, secret_name, secret_key, ns) for ns in namespaces]
    frame = pd.concat([s.frame() for s in states], ignore_index=True)
    reference = states[0].fingerprint
    frame["matches_reference"] = [
        None if not (reference and s.fingerprint) else s.fingerprint == reference for s in states
    ]
    return frame


# --- Step 5: node clocks against the API server's

LEASE_NAMESPACE = "kube-node-lease"
# How old a node's stamp may be, in seconds, with the node's clock right: the kubelet renews its
# Lease every 10 s, but posts node status (the Ready condition's heartbeat) only on a change or
# every 5 minutes (nodeStatusReportFrequency) when node leases are on, as since Kubernetes 1.17.
MAX_AGE = {"lease": 10.0, "heartbeat": 300.0}
RESOLUTION = 2.0  # the Date header has whole seconds, plus the request's round trip
CLOCK_COLUMNS = [
    "node",
    "ready",
    "source",
    "stamped_at",
    "api_time",
    "offset_seconds",
    "skew_min_seconds",
    "skew_max_seconds",
    "verdict",
]


def clock_skew(cluster: Cluster) -> pd.DataFrame:
    """Each node's last kubelet stamp (its Lease's renewTime, else the Ready heartbeat) against the API server's clock.

    A stamp S made by the node at real time t, with the node's clock off by d, is S = t + d; t lies
    between (API time - MAX_AGE) and the API time, so d lies in [offset, offset + MAX_AGE] where
    offset = S - API time. A node ahead shows as an offset above zero: detectable from ~2 s. A node
    behind by less than MAX_AGE looks the same as a node whose stamp is simply old: not detectable;
    beyond it, it is either behind or its kubelet has stopped reporting.
    """
    try:
        nodes, _, headers = cluster.core.list_node_with_http_info(_request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        if e.status not in (401, 403):
            raise
        return pd.DataFrame(columns=CLOCK_COLUMNS)
    heartbeat_time = _date(headers)
    leases, lease_time = _lease_renewals(cluster)
    rows = []
    for node in nodes.items:
        ready = next((c for c in node.status.conditions or [] if c.type == "Ready"), None)
        name = node.metadata.name
        stamped: dt.datetime | None
        if name in leases:
            source, stamped, api_time = "lease", leases[name], lease_time
        else:
            source, stamped, api_time = "heartbeat", ready.last_heartbeat_time if ready else None, heartbeat_time
        rows.append(
            {
                "node": name,
                "ready": ready.status if ready else None,
                "source": source,
                "stamped_at": stamped,
                "api_time": api_time,
                **_skew(stamped, api_time, MAX_AGE[source]),
            }
        )
    return pd.DataFrame(rows, columns=CLOCK_COLUMNS)


def _lease_renewals(cluster: Cluster) -> tuple[dict[str, dt.datetime], dt.datetime | None]:
    """Node name -> its Lease's renewTime, and the API time of that answer; empty where leases can't be read."""
    try:
        leases, _, headers = client.CoordinationV1Api(cluster.api).list_namespaced_lease_with_http_info(
            LEASE_NAMESPACE, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as e:
        if e.status not in (401, 403, 404):
            raise
        return {}, None
    renewals = {
        lease.metadata.name: lease.spec.renew_time for lease in leases.items if lease.spec and lease.spec.renew_time
    }
    return renewals, _date(headers)


def _date(headers) -> dt.datetime | None:
    value = headers.get("Date") if headers else None
    return email.utils.parsedate_to_datetime(value) if value else None


def _skew(stamped: dt.datetime | None, api_time: dt.datetime | None, max_age: float) -> dict:
    if stamped is None or api_time is None:
        return {"offset_seconds": None, "skew_min_seconds": None, "skew_max_seconds": None, "verdict": "not measurable"}
    offset = (stamped - api_time).total_seconds()
    if offset > RESOLUTION:
        verdict = "ahead"
    elif offset + max_age < -RESOLUTION:
        verdict = "behind, or its kubelet stopped reporting"
    else:
        verdict = "no skew detectable"
    return {
        "offset_seconds": round(offset, 1),
        "skew_min_seconds": round(offset - RESOLUTION, 1),
        "skew_max_seconds": round(offset + max_age + RESOLUTION, 1),
        "verdict": verdict,
    }


# --- Findings


def assess(
    scan: logs.LogScan,
    sync: pd.DataFrame,
    prints: pd.DataFrame,
    clocks: pd.DataFrame,
    keys: KeyCheck | None = None,
) -> list[Finding]:
    findings = [_failure_reasons(scan), _stale_pods(sync), _secret_mismatch(prints), _clock_skew(clocks)]
    return findings + ([_key_set(keys)] if keys is not None else [])


def _failure_reasons(scan: logs.LogScan) -> Finding:
    counts = {r.reason: int(r.count) for r in reason_counts(scan).itertuples()}
    total = sum(counts.values())
    data = {"counts": counts, "total": total, "top_reason": None, "lines_read": scan.lines_read}
    if not scan.lines_read:
        return Finding(
            "failure-reasons", "no auth service log lines read: does the selector match its pods?", "warning", data
        )
    if not total:
        return Finding(
            "failure-reasons", f"no JWT or auth failures in {scan.lines_read} auth service log lines", "info", data
        )
    top = max(counts, key=lambda name: counts[name])
    data["top_reason"] = top
    spread = ", ".join(f"{n} {reason}" for reason, n in counts.items() if n)
    return Finding(
        "failure-reasons", f"{total} auth failures ({spread}); most are {top}: {POINTS_TO[top]}", "warning", data
    )


def _stale_pods(sync: pd.DataFrame) -> Finding:
    stale = sync[sync["stale"]] if not sync.empty else sync
    deployments = sorted(set(stale["workload"]))
    workloads = sorted({f"{k.lower()}/{w}" for k, w in zip(stale["kind"], stale["workload"], strict=True)})
    changed = sync["secret_changed"].iloc[0] if not sync.empty else None
    data = {"deployments": deployments, "workloads": workloads, "pods": sorted(stale["pod"]), "secret_changed": changed}
    if stale.empty:
        checked = f"{len(sync)} pods consuming the secret" if len(sync) else "no running pod consumes the secret"
        return Finding("stale-pods", f"{checked}; none started before it last changed", "info", data)
    return Finding(
        "stale-pods",
        f"{len(stale)} pods of {', '.join(workloads)} started before the secret last "
        f"changed ({units.when(changed, seconds=True)}): they run with the old value",
        "warning",
        data,
    )


def _secret_mismatch(prints: pd.DataFrame) -> Finding:
    reference = prints.iloc[0]
    others = prints.iloc[1:]
    differing = others[others["matches_reference"] == False]  # noqa: E712 (None: not comparable)
    missing = others[others["fingerprint"].isna()]
    data = {
        "reference": {"namespace": reference["namespace"], "fingerprint": reference["fingerprint"]},
        "namespaces": list(differing["namespace"]),
        "fingerprints": dict(zip(prints["namespace"], prints["fingerprint"], strict=True)),
        "unreadable": {r.namespace: r.status for r in missing.itertuples()},
    }
    if reference["fingerprint"] is None:
        return Finding(
            "secret-mismatch",
            f"{reference['secret']}/{reference['key']} in {reference['namespace']}: "
            f"{reference['status']}; nothing to compare against",
            "warning",
            data,
        )
    if others.empty:
        return Finding(
            "secret-mismatch",
            f"{reference['secret']}/{reference['key']} is {reference['fingerprint']} "
            f"in {reference['namespace']}; no other namespace to compare (compare_namespaces)",
            "info",
            data,
        )
    if differing.empty:
        unread = f"; not readable in {', '.join(data['unreadable'])}" if data["unreadable"] else ""
        return Finding(
            "secret-mismatch",
            f"same {reference['fingerprint']} in every namespace compared{unread}",
            "warning" if unread else "info",
            data,
        )
    listed = ", ".join(f"{r.namespace} ({r.fingerprint})" for r in differing.itertuples())
    return Finding(
        "secret-mismatch",
        f"{reference['key']} differs from {reference['namespace']}'s "
        f"({reference['fingerprint']}) in {listed}: tokens signed on one side fail on the other",
        "critical",
        data,
    )


def _clock_skew(clocks: pd.DataFrame) -> Finding:
    skewed = clocks[clocks["verdict"].isin(["ahead", "behind, or its kubelet stopped reporting"])]
    unmeasured = clocks[clocks["verdict"] == "not measurable"]
    data = {
        "nodes": list(skewed["node"]),
        "offsets": dict(zip(clocks["node"], clocks["offset_seconds"], strict=True)),
        "verdicts": dict(zip(clocks["node"], clocks["verdict"], strict=True)),
        "not_measurable": list(unmeasured["node"]),
    }
    if clocks.empty:
        return Finding("clock-skew", "nodes not readable: clock skew not measurable", None, data)
    if skewed.empty:
        tail = f" ({', '.join(unmeasured['node'])} not measurable)" if len(unmeasured) else ""
        return Finding("clock-skew", f"no node clock measurably off the API server's{tail}", "info", data)
    listed = ", ".join(f"{r.node} {r.verdict} (stamp {r.offset_seconds:+.0f} s)" for r in skewed.itertuples())
    return Finding(
        "clock-skew",
        f"{listed}: between the node that issues a token and the one that checks it, "
        "skew shows as 'not yet valid' or early 'expired'; check NTP on those nodes",
        "warning",
        data,
    )


# --- Step 6: the issuer's key set (RS256/JWKS)


@dataclass(frozen=True)
class KeyCheck:
    """The key ids failures name, against the key set the issuer publishes now."""

    keys: jwks.KeySet
    failing_kids: tuple[str, ...]  # key ids named in failure lines
    unknown_kid_lines: int  # failures saying the key id was not found

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"kid": kid, "in_key_set": kid in self.keys.kids, "algorithm": self.keys.algorithms.get(kid)}
                for kid in dict.fromkeys([*self.failing_kids, *self.keys.kids])
            ],
            columns=["kid", "in_key_set", "algorithm"],
        )


def key_check(scan: logs.LogScan, jwks_url: str, timeout: float = 5) -> KeyCheck | None:
    """The key set at `jwks_url` (None when not given) and the key ids the failure examples name."""
    if not jwks_url:
        return None
    kids = [m.group(1) for lines in scan.examples.values() for line in lines for m in KID.finditer(line)]
    unknown = int(scan.totals("pattern").set_index("pattern")["count"].get("unknown-kid", 0))
    return KeyCheck(jwks.fetch(jwks_url, timeout), tuple(dict.fromkeys(kids)), unknown)


def _key_set(check: KeyCheck) -> Finding:
    keys = check.keys
    data = {
        "jwks_url": keys.url,
        "published_kids": list(keys.kids),
        "failing_kids": list(check.failing_kids),
        "missing": [k for k in check.failing_kids if k not in keys.kids],
        "error": keys.error,
    }
    if keys.error:
        return Finding("jwks", f"key set at {keys.url} not read: {keys.error}", "warning", data)
    if data["missing"]:
        return Finding(
            "jwks",
            f"failures name key ids not published at {keys.url}: {', '.join(data['missing'])} (published: "
            f"{', '.join(keys.kids) or 'none'}): the issuer signs with a key it does not publish yet; publish it, "
            "or sign with a published key",
            "critical",
            data,
        )
    if check.failing_kids or check.unknown_kid_lines:
        named = ", ".join(check.failing_kids) or "the failing key ids"
        return Finding(
            "jwks",
            f"{named} published at {keys.url}, yet validators fail to find them ({check.unknown_kid_lines} lines): "
            "their cached key set is stale; restart them (or wait for the cache to expire) to fetch it anew",
            "warning",
            data,
        )
    return Finding("jwks", f"{len(keys.kids)} keys published at {keys.url}; no failure names a key id", "info", data)


# --- Resolution


def restart_stale(cluster: Cluster, sync: pd.DataFrame, apply: bool) -> list[mitigate.Change]:
    """`kubectl rollout restart` of each Deployment, StatefulSet or DaemonSet with a pod started before the secret
    changed; a CronJob's next Job reads the new value by itself (a running one keeps the old)."""
    if sync.empty:
        return []
    stale = sorted(
        {(k, w) for k, w in zip(sync.loc[sync["stale"], "kind"], sync.loc[sync["stale"], "workload"], strict=True)},
        key=lambda kw: (kw[1], kw[0]),
    )
    changes = []
    for kind, name in stale:
        if kind in mitigate.KINDS:
            changes.append(mitigate.restart(cluster, name, apply, kind=kind))
        else:
            why = (
                "a CronJob's next Job reads the new secret; a Job running now keeps the old one (delete it to rerun)"
                if kind == "CronJob"
                else f"{kind} is not a kind this runbook restarts"
            )
            changes.append(mitigate.not_handled(cluster, "rollout-restart", kind, name, apply, why))
    return changes

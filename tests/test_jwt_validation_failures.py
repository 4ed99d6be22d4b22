"""`runbook run jwt-validation-failures` against a rotated JWT secret, and its lib through the official client."""

import base64
import hashlib
import re

import pytest
import yaml

from runbooks import redact
from runbooks.diagnoses import jwt_validation_failures as jwt_validation
from runbooks.kube.mitigate import RESTARTED_AT

RUNBOOK = "jwt-validation-failures"
NS = "autolytiq-prod"
SCENARIO = "jwt-secret-rotated"
NEW_KEY = "jwt-rotated-2f9c41d7e0b3-never-print"  # autolytiq-prod and autolytiq-edge
OLD_KEY = "jwt-old-8a71c5e2d94f-never-print"  # autolytiq-batch, and logged by a stale pod
TOKEN_PARTS = ["eyJzdWIiOiJ1c2VyLTQ3MTEiLCJleHAiOjE3NjcyMjU2MDB9", "c2lnbmF0dXJlLW9sZA", "c2lnbmF0dXJlLW5ldw"]
NEVER_SHOWN = [NEW_KEY, OLD_KEY, *(base64.b64encode(k.encode()).decode() for k in (NEW_KEY, OLD_KEY)), *TOKEN_PARTS]


def sha(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


@pytest.fixture
def rotated(kube_api):
    kube_api.load(SCENARIO)
    return kube_api


@pytest.fixture
def cluster(rotated):
    cluster = rotated.connect(NS)
    yield cluster
    cluster.api.close()


def run(run_runbook, kube_api, tmp_path, *args):
    params = tmp_path / "compare.yaml"
    params.write_text(yaml.safe_dump({"compare_namespaces": ["autolytiq-batch", "autolytiq-edge"]}))
    return run_runbook(RUNBOOK, *kube_api.runbook_args(NS), "-f", str(params), *args)


def deployments(kube_api) -> dict:
    return {d["metadata"]["name"]: d for d in kube_api.list("deployments", NS, group="apps")}


def restarted(deployment: dict) -> bool:
    return RESTARTED_AT in (deployment["spec"]["template"]["metadata"].get("annotations") or {})


# --- the runbook, headless


def test_dry_run_names_reasons_stale_deployments_mismatch_and_skew_and_changes_nothing(rotated, run_runbook, tmp_path):
    before = deployments(rotated)
    outcome = run(run_runbook, rotated, tmp_path)
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()

    reasons = findings["failure-reasons"]["data"]
    assert reasons["counts"] == {
        "unknown-kid": 0,
        "expired": 6,
        "bad-signature": 15,
        "not-yet-valid": 4,
        "malformed": 3,
        "other": 3,
    }
    assert reasons["top_reason"] == "bad-signature"

    stale = findings["stale-pods"]["data"]
    assert stale["deployments"] == ["auth-service", "notification-service"]
    assert stale["pods"] == ["auth-service-6b7c9d8f5-a8k2m", "notification-service-5f6d7c8b9-r4t6v"]

    mismatch = findings["secret-mismatch"]["data"]
    assert mismatch["namespaces"] == ["autolytiq-batch"]
    assert mismatch["reference"] == {"namespace": NS, "fingerprint": sha(NEW_KEY)}
    assert mismatch["fingerprints"] == {
        NS: sha(NEW_KEY),
        "autolytiq-batch": sha(OLD_KEY),
        "autolytiq-edge": sha(NEW_KEY),
    }
    assert findings["secret-mismatch"]["severity"] == "critical"

    skew = findings["clock-skew"]["data"]
    assert skew["nodes"] == ["worker-2"] and skew["not_measurable"] == ["worker-3"]
    assert skew["verdicts"]["worker-1"] == "no skew detectable"

    actions = outcome.evidence["actions"]
    assert [(a["id"], a["mode"], a["target"]) for a in actions] == [
        ("rollout-restart", "dry-run", f"deployment/auth-service in {NS}"),
        ("rollout-restart", "dry-run", f"deployment/notification-service in {NS}"),
    ]
    assert all(r.method == "GET" or r.dry_run for r in rotated.requests)
    assert any(r.dry_run for r in rotated.requests)
    assert deployments(rotated) == before


def test_apply_restarts_exactly_the_stale_deployments(rotated, run_runbook, tmp_path):
    before = deployments(rotated)
    outcome = run(run_runbook, rotated, tmp_path, "-p", "apply", "true")
    assert outcome.exit_code == 0, outcome.stderr
    assert {a["mode"] for a in outcome.evidence["actions"]} == {"applied"}
    after = deployments(rotated)
    assert {name for name, d in after.items() if restarted(d)} == {"auth-service", "notification-service"}
    assert after["api-gateway"] == before["api-gateway"]
    assert after["inventory-service"] == before["inventory-service"]
    writes = {(r.method, r.path) for r in rotated.requests if r.method != "GET"}
    assert writes == {
        ("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")
        for name in ("auth-service", "notification-service")
    }


def test_no_secret_value_or_token_reaches_any_output(rotated, run_runbook, tmp_path):
    outcome = run(run_runbook, rotated, tmp_path)
    assert outcome.exit_code == 0, outcome.stderr
    files = sorted(outcome.evidence_path.parent.iterdir())
    assert {f.suffix for f in files} == {".ipynb", ".html", ".json"}
    texts = {f.name: f.read_text() for f in files} | {"stdout": outcome.stdout, "stderr": outcome.stderr}
    for name, text in texts.items():
        leaked = [value for value in NEVER_SHOWN if value in text]
        assert not leaked, f"{name} shows {leaked}"
    # The line that logged the old key is quoted, with the key replaced.
    notebook = texts[next(f.name for f in files if f.suffix == ".ipynb")]
    assert re.search(r"jwt_secret\W.{0,16}?\[REDACTED\]", notebook)  # quotes: HTML-escaped


def test_against_the_autolytiq_prod_scenario_with_default_parameters(kube_api, run_runbook):
    kube_api.load("autolytiq-prod")
    outcome = run_runbook(RUNBOOK, *kube_api.runbook_args(NS))
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()
    reasons = findings["failure-reasons"]
    assert reasons["data"]["total"] == 0 and reasons["data"]["lines_read"] > 0  # "token cache size" is no failure
    assert reasons["severity"] == "info"
    # The secret has no managedFields: its creation (1 day ago) is its last change. The pod that
    # restarted 90 s ago read it anew; the one running for 3 days did not.
    assert findings["stale-pods"]["data"]["pods"] == ["auth-service-6b7c9d8f5-p9r3v"]
    assert findings["secret-mismatch"]["data"]["namespaces"] == []
    assert findings["clock-skew"]["data"]["nodes"] == []
    assert all(r.method == "GET" or r.dry_run for r in kube_api.requests)


# --- the lib, through the official client

WORDINGS = {
    "expired": [
        "TokenExpiredError: jwt expired",
        "jwt.exceptions.ExpiredSignatureError: Signature has expired",
        "token has invalid claims: token is expired",
        "Token is expired",
    ],
    "bad-signature": [
        "JsonWebTokenError: invalid signature",
        "Signature verification failed",
        "token signature is invalid: signature is invalid",
    ],
    "not-yet-valid": [
        "NotBeforeError: jwt not active",
        "The token is not yet valid (nbf)",
        "token has invalid claims: token is not valid yet",
        "Token used before issued",
    ],
    "malformed": [
        "JsonWebTokenError: jwt malformed",
        "jwt.exceptions.DecodeError: Not enough segments",
        "token is malformed: token contains an invalid number of segments",
    ],
    "other": [
        "jwt audience invalid. expected: api",
        "401 Unauthorized",
        'msg="auth failed: no token provided"',
        '{"status":401,"path":"/api/v1/me"}',
        "JsonWebTokenError: jwt must be provided",
    ],
    None: [
        "token cache size 41000 entries",
        "issued token for user-4711",
        "GET /api/v1/auth/token status=200",
        "auth-service 2.3.0 listening on :8080",
        "latency_ms=401 status=200",
    ],
}


@pytest.mark.parametrize("reason,line", [(r, line) for r, lines in WORDINGS.items() for line in lines])
def test_each_wording_counts_for_exactly_its_reason(reason, line):
    matched = [name for name, regex in jwt_validation.PATTERNS.items() if re.search(regex, line, re.IGNORECASE)]
    assert matched == ([reason] if reason else [])


def test_fingerprint_is_a_short_sha256():
    assert redact.fingerprint(b"s3cret") == "sha256:" + hashlib.sha256(b"s3cret").hexdigest()[:12]


def test_secret_state_last_change_from_managed_fields_else_creation(rotated, cluster):
    stored = rotated.get("secrets", "autolytiq-secrets", NS)
    prod = jwt_validation.secret_state(cluster, "autolytiq-secrets", "JWT_SECRET")
    assert (prod.status, prod.fingerprint, prod.changed_from) == ("ok", sha(NEW_KEY), "managedFields")
    assert prod.changed_at.strftime("%Y-%m-%dT%H:%M:%SZ") == stored["metadata"]["managedFields"][1]["time"]
    edge = jwt_validation.secret_state(cluster, "autolytiq-secrets", "JWT_SECRET", "autolytiq-edge")
    assert edge.changed_from == "creationTimestamp"
    assert (
        edge.changed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        == rotated.get("secrets", "autolytiq-secrets", "autolytiq-edge")["metadata"]["creationTimestamp"]
    )
    assert jwt_validation.secret_state(cluster, "autolytiq-secrets", "NOPE").status == "key missing"
    gone = jwt_validation.secret_state(cluster, "no-such-secret", "JWT_SECRET")
    assert (gone.status, gone.fingerprint, gone.changed_at) == ("secret not found", None, None)
    assert NEW_KEY not in repr(prod) + prod.frame().to_string()


def test_consumers_by_env_envfrom_and_volumes_holding_the_key(kube_api):
    def deployment(name, **pod_spec):
        container = {"name": name, "image": "busybox", **pod_spec.pop("container", {})}
        template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container], **pod_spec}}
        return {"kind": "Deployment", "metadata": {"name": name}, "spec": {"template": template}}

    mount = {"volumeMounts": [{"name": "keys", "mountPath": "/keys", "subPath": "JWT_SECRET"}]}
    kube_api.load(
        {
            "namespace": NS,
            "objects": [
                deployment(
                    "projected",
                    container=mount,
                    volumes=[
                        {
                            "name": "keys",
                            "projected": {
                                "sources": [
                                    {
                                        "secret": {
                                            "name": "autolytiq-secrets",
                                            "items": [{"key": "JWT_SECRET", "path": "k"}],
                                        }
                                    }
                                ]
                            },
                        }
                    ],
                ),
                deployment(
                    "other-key-only",
                    container=mount,
                    volumes=[
                        {
                            "name": "keys",
                            "secret": {
                                "secretName": "autolytiq-secrets",
                                "items": [{"key": "DATABASE_URL", "path": "db"}],
                            },
                        }
                    ],
                ),
                deployment(
                    "other-secret",
                    container={
                        "env": [
                            {
                                "name": "JWT_SECRET",
                                "valueFrom": {"secretKeyRef": {"name": "gateway-secrets", "key": "JWT_SECRET"}},
                            }
                        ]
                    },
                ),
                deployment(
                    "renamed",
                    container={
                        "env": [
                            {
                                "name": "SIGNING_KEY",
                                "valueFrom": {"secretKeyRef": {"name": "autolytiq-secrets", "key": "JWT_SECRET"}},
                            }
                        ]
                    },
                ),
            ],
        }
    )
    cluster = kube_api.connect(NS)
    frame = jwt_validation.consumers(cluster, "autolytiq-secrets", "JWT_SECRET")
    assert frame.to_dict("records") == [
        {"workload": "projected", "kind": "Deployment", "container": "projected", "via": "volume keys (subPath)"},
        {"workload": "renamed", "kind": "Deployment", "container": "renamed", "via": "env SIGNING_KEY"},
    ]


def test_clock_skew_ahead_behind_and_unmeasurable(rotated, cluster):
    rotated.load(
        {
            "objects": [
                {
                    "kind": "Node",
                    "metadata": {"name": "worker-4"},
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": {"ago": "20m"}}]
                    },
                }
            ]
        }
    )
    clocks = jwt_validation.clock_skew(cluster).set_index("node")
    assert clocks.loc["worker-2", "verdict"] == "ahead"
    assert 590 <= clocks.loc["worker-2", "skew_min_seconds"] <= 600  # at least ~10 minutes ahead
    assert clocks.loc["worker-4", "verdict"] == "behind, or its kubelet stopped reporting"
    assert clocks.loc["worker-1", "verdict"] == "no skew detectable"
    assert clocks.loc["worker-3", "verdict"] == "not measurable"
    assert set(clocks["source"]) == {"heartbeat"}  # the test server serves no Leases


def test_secret_sync_uses_the_consuming_containers_start(rotated, cluster):
    secret = jwt_validation.secret_state(cluster, "autolytiq-secrets", "JWT_SECRET")
    consuming = jwt_validation.consumers(cluster, "autolytiq-secrets", "JWT_SECRET")
    sync = jwt_validation.secret_sync(cluster, secret, consuming)
    by_pod = sync.set_index("pod")
    restarted_pod = by_pod.loc["auth-service-6b7c9d8f5-q5n7x"]
    assert not restarted_pod["stale"] and restarted_pod["started"] > secret.changed_at
    assert "inventory-service" not in set(sync["workload"])
    assert by_pod.loc["notification-service-5f6d7c8b9-r4t6v", "via"] == "volume jwt"


def test_a_selector_matching_no_pod_is_not_reported_as_no_failures(rotated, cluster):
    scan = jwt_validation.scan_failures(cluster, "app=no-such-service", 30, 200)
    secret = jwt_validation.secret_state(cluster, "autolytiq-secrets", "JWT_SECRET")
    consuming = jwt_validation.consumers(cluster, "autolytiq-secrets", "JWT_SECRET")
    sync = jwt_validation.secret_sync(cluster, secret, consuming)
    prints = jwt_validation.fingerprints(cluster, "autolytiq-secrets", "JWT_SECRET", [])
    findings = {f.id: f for f in jwt_validation.assess(scan, sync, prints, jwt_validation.clock_skew(cluster))}
    assert findings["failure-reasons"].severity == "warning"
    assert "selector" in findings["failure-reasons"].summary
    assert findings["secret-mismatch"].data["namespaces"] == [] and findings["secret-mismatch"].severity == "info"


# --- not only Deployments, not only shared secrets


CONSUMERS_OF_OTHER_KINDS = {
    "namespace": NS,
    "objects": [
        {
            "kind": "StatefulSet",
            "metadata": {"name": "session-store", "creationTimestamp": {"ago": "30d"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "session-store"}},
                "template": {
                    "metadata": {"labels": {"app": "session-store"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "store",
                                "image": "registry.autolytiq.io/session-store:1.0",
                                "envFrom": [{"secretRef": {"name": "autolytiq-secrets"}}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "kind": "Pod",
            "metadata": {
                "name": "session-store-0",
                "labels": {"app": "session-store"},
                "ownerReferences": [{"kind": "StatefulSet", "name": "session-store"}],
                "creationTimestamp": {"ago": "2h"},
            },
            "spec": {
                "nodeName": "worker-1",
                "containers": [
                    {
                        "name": "store",
                        "image": "registry.autolytiq.io/session-store:1.0",
                        "envFrom": [{"secretRef": {"name": "autolytiq-secrets"}}],
                    }
                ],
            },
        },
        {
            "kind": "CronJob",
            "metadata": {"name": "token-audit"},
            "spec": {
                "schedule": "*/15 * * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "audit",
                                        "image": "registry.autolytiq.io/token-audit:2.1",
                                        "env": [
                                            {
                                                "name": "JWT_SECRET",
                                                "valueFrom": {
                                                    "secretKeyRef": {"name": "autolytiq-secrets", "key": "JWT_SECRET"}
                                                },
                                            }
                                        ],
                                    }
                                ]
                            }
                        }
                    }
                },
            },
        },
        {
            "kind": "Job",
            "metadata": {
                "name": "token-audit-29412345",
                "ownerReferences": [{"kind": "CronJob", "name": "token-audit"}],
                "creationTimestamp": {"ago": "40m"},
            },
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "audit", "image": "registry.autolytiq.io/token-audit:2.1"}],
                    }
                }
            },
        },
        {
            "kind": "Pod",
            "metadata": {
                "name": "token-audit-29412345-x9v2b",
                "ownerReferences": [{"kind": "Job", "name": "token-audit-29412345"}],
                "creationTimestamp": {"ago": "40m"},
            },
            "spec": {
                "nodeName": "worker-2",
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "audit",
                        "image": "registry.autolytiq.io/token-audit:2.1",
                        "env": [
                            {
                                "name": "JWT_SECRET",
                                "valueFrom": {"secretKeyRef": {"name": "autolytiq-secrets", "key": "JWT_SECRET"}},
                            }
                        ],
                    }
                ],
            },
        },
    ],
}


def test_statefulsets_and_cronjobs_consuming_the_secret_are_found_and_handled(rotated, cluster):
    rotated.load(CONSUMERS_OF_OTHER_KINDS)
    secret = jwt_validation.secret_state(cluster, "autolytiq-secrets", "JWT_SECRET")
    consuming = jwt_validation.consumers(cluster, "autolytiq-secrets", "JWT_SECRET")
    assert {("session-store", "StatefulSet"), ("token-audit", "CronJob")} <= set(
        zip(consuming["workload"], consuming["kind"], strict=True)
    )
    sync = jwt_validation.secret_sync(cluster, secret, consuming).set_index("pod")
    assert sync.loc["session-store-0", "stale"] and sync.loc["token-audit-29412345-x9v2b", "kind"] == "CronJob"
    changes = {c.action.target: c.action for c in jwt_validation.restart_stale(cluster, sync.reset_index(), False)}
    assert changes[f"statefulset/session-store in {NS}"].result.startswith("accepted by server-side dry run")
    assert changes[f"cronjob/token-audit in {NS}"].result.startswith("not done: a CronJob's next Job reads")
    assert f"deployment/auth-service in {NS}" in changes
    assert all(r.method == "GET" or r.dry_run for r in rotated.requests)


JWKS_LINES = [
    {"ago": "6m", "line": "Error: Unable to find a signing key that matches 'kid-2026-11'", "repeat": 7, "every": 20},
    {
        "ago": "3m",
        "line": 'level=warn msg="token rejected" err="PyJWKClientError: Unable to find a signing key that '
        'matches: \\"kid-2026-11\\""',
    },
]


@pytest.mark.parametrize(
    "published, severity, says",
    [
        (["kid-2026-10"], "critical", "not published"),
        (["kid-2026-10", "kid-2026-11"], "warning", "cached key set is stale"),
    ],
)
def test_unknown_key_ids_point_at_the_key_set_not_the_secret(rotated, cluster, published, severity, says):
    """RS256 with a JWKS: a key id the validator cannot find is a key set question, not a shared secret's."""
    import json as _json

    from runbooks_sandbox.endpoints import serve_health

    logs = [{"pod": "auth-service-6b7c9d8f5-q5n7x", "container": "auth-service", "current": JWKS_LINES}]
    rotated.load({"namespace": NS, "logs": logs})
    scan = jwt_validation.scan_failures(cluster, "app=auth-service", 30, 200)
    counts = jwt_validation.reason_counts(scan).set_index("reason")
    assert counts.loc["unknown-kid", "count"] == 8 and "JWKS cache is stale" in counts.loc["unknown-kid", "points_to"]
    keys = {
        "keys": [
            {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": "0vx7", "e": "AQAB"} for kid in published
        ]
    }
    with serve_health(200, body=_json.dumps(keys), content_type="application/json") as server:
        check = jwt_validation.key_check(scan, server.url)
    assert check.failing_kids == ("kid-2026-11",) and check.keys.kids == tuple(published)
    finding = jwt_validation._key_set(check)
    assert finding.severity == severity and says in finding.summary
    assert list(check.frame()["kid"]) == list(dict.fromkeys(["kid-2026-11", *published]))

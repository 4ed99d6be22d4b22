"""The RBAC in deploy/kubernetes is derived, not guessed: every request each runbook that alerts start makes against
the test API server (its diagnosis, and its preview: server-side dry runs) is recorded as (verb, group, resource,
subresource), and the rules of the rendered kustomize base grant exactly those: the reads to the identity alert
runs use (`runbook-read`, bound to the service account), the dry-run patches only through `runbook-mitigate`, a
ClusterRole no binding grants by default (Kubernetes authorises a dry run like the change itself). With no
mutating verb, an alert run's preview is worked out client-side, a finding says so, and the run does not fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from runbooks import catalog
from runbooks.alerts import routing
from runbooks_sandbox.kubeapi.scenario import load_scenario, utcnow

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
MUTATING = {"create", "update", "patch", "delete", "deletecollection"}
# What each runbook that alerts start is run with here (scenarios, -f parameters): those its own tests use to make
# it diagnose and preview its fix. A request path no scenario reaches is not derived: add the scenario here.
SCENARIOS = {
    "triage": (("autolytiq-prod",), {}),
    "api-gateway-high-error-rate": (("autolytiq-prod",), {}),
    "pod-oomkilled": (("autolytiq-prod",), {}),
    "jwt-validation-failures": (("jwt-secret-rotated",), {"compare_namespaces": ["autolytiq-batch", "autolytiq-edge"]}),
    "ssl-certificate-expired": (("certificate-expired",), {}),
    "third-party-api-down": (
        ("autolytiq-prod", "third-party-api-down"),
        {"dependencies": {"tax-rates": {"match": r"taxrates\.example", "health_url": ""}}},
    ),
}
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)


def rule_of(method: str, path: str, query: dict) -> tuple[str, str, str] | None:
    """(verb, group, resource[/subresource]) of a resource request, as the API server authorises it; None for
    discovery (/api, /apis, /version: granted to every authenticated user by system:discovery)."""
    match = _PATH.match(path)
    if not match:
        return None
    group = match["group"] or ""
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    named = match["name"] is not None
    verb = {
        "GET": "get" if named else ("watch" if query.get("watch") in ("true", "1") else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }[method]
    return verb, group, resource


def granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    """Every (verb, group, resource) a list of RBAC rules grants; no `*` anywhere."""
    found = set()
    for rule in rules:
        for field in ("verbs", "apiGroups", "resources"):
            assert "*" not in rule.get(field, []), f"a wildcard in {rule}"
        found |= {(v, g, r) for v in rule["verbs"] for g in rule["apiGroups"] for r in rule["resources"]}
    return found


def alert_runbooks() -> list[str]:
    """The runbooks alerts start that talk to Kubernetes."""
    names = {route.runbook for route in routing.read_routes(routing.ROUTES).values()}
    return sorted(n for n in names if "kubeconfig" in catalog.find(n).parameters)


@pytest.fixture(scope="module")
def rendered():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to render deploy/kubernetes (kubectl kustomize)")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60, check=True)
    return list(yaml.safe_load_all(out.stdout))


def test_every_runbook_alerts_start_has_a_scenario_here():
    assert sorted(SCENARIOS) == alert_runbooks()


def recorded(kube_api, run_runbook, tmp_path, name: str, forbidden=()) -> tuple[set, set, dict]:
    """The reads and the previews (dry-run changes) of one run of `name`, and its evidence."""
    scenarios, parameters = SCENARIOS[name]
    kube_api.reset()
    for plural, group, verb in forbidden:
        kube_api.server.forbid(plural, group, verb)
    for scenario in scenarios:
        kube_api.load(load_scenario(scenario, now=utcnow()))
    params = tmp_path / f"{name}.yaml"
    params.write_text(yaml.safe_dump(parameters))
    outcome = run_runbook(name, *kube_api.runbook_args("autolytiq-prod"), "-f", str(params))
    assert outcome.evidence_path is not None, outcome.stderr
    reads, previews = set(), set()
    for request in kube_api.requests:
        rule = rule_of(request.method, request.path, request.query)
        if rule is None:
            continue
        if rule[0] in MUTATING:
            assert request.dry_run, f"{name} changed something without apply: {request.method} {request.path}"
            previews.add(rule)
        else:
            reads.add(rule)
    return reads, previews, outcome.evidence


def test_the_roles_grant_exactly_what_the_runbooks_alerts_start_ask_for(kube_api, run_runbook, rendered, tmp_path):
    reads, previews = set(), set()
    for name in alert_runbooks():
        r, p, _ = recorded(kube_api, run_runbook, tmp_path, name)
        reads |= r
        previews |= p
    print(json.dumps({"reads": sorted(reads), "previews": sorted(previews)}, indent=1))
    roles = {d["metadata"]["name"]: d for d in rendered if d["kind"] in ("ClusterRole", "Role")}
    assert granted(roles["runbook-read"]["rules"]) == reads
    assert granted(roles["runbook-mitigate"]["rules"]) == previews
    bindings = [d for d in rendered if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert {b["roleRef"]["name"] for b in bindings} == {"runbook-read"}  # mitigate: granted by no binding
    (account,) = [d for d in rendered if d["kind"] == "ServiceAccount"]
    assert all(s["name"] == account["metadata"]["name"] for b in bindings for s in b["subjects"])


def test_an_alert_run_that_may_not_patch_previews_client_side_says_so_and_does_not_fail(
    kube_api, run_runbook, tmp_path
):
    def changes(evidence):
        return {
            a["target"]: sorted(re.findall(r"(spec\.[^:;]+|metadata\.annotations\.[^:;]+):", a["result"]))
            for a in evidence["actions"]
        }

    _, previews, server_side = recorded(kube_api, run_runbook, tmp_path, "pod-oomkilled")
    assert previews == {("patch", "apps", "deployments")}
    _, _, worked_out = recorded(
        kube_api, run_runbook, tmp_path, "pod-oomkilled", forbidden=[("deployments", "apps", "patch")]
    )
    assert worked_out["status"] == "completed"
    assert [a["mode"] for a in worked_out["actions"]] == ["dry-run"] * len(worked_out["actions"])
    assert all(a["result"].startswith("not allowed to dry-run here") for a in worked_out["actions"])
    assert changes(worked_out) == changes(server_side) and any(changes(worked_out).values())
    (unchecked,) = [f for f in worked_out["findings"] if f["id"] == "preview-unchecked"]
    assert "not by the API server" in unchecked["summary"] and "runbook-mitigate" in unchecked["summary"]
    assert "preview-unchecked" not in {f["id"] for f in server_side["findings"]}  # allowed: the server checked it

"""deploy/: the image definition installs from the lock and runs as a non-root user without build tools; the
kustomize base renders (`kubectl kustomize deploy/kubernetes`) into what running `runbook serve` in a cluster
needs, with options `runbook serve` takes and secrets only from Secrets."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from runbooks import cli

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to render deploy/kubernetes (kubectl kustomize)")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True, timeout=60, check=True
    )
    return {d["kind"]: d for d in yaml.safe_load_all(out.stdout) if d["kind"] not in ("ClusterRole",)}


def stages(text: str) -> list[list[str]]:
    """The Containerfile's instructions, stage by stage (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def test_the_image_installs_from_the_lock_and_runs_as_a_non_root_user_without_build_tools():
    build, final = stages((DEPLOY / "Containerfile").read_text())
    assert any("pip install --require-hashes -r /src/requirements.lock" in i for i in build)
    assert any(i == "COPY requirements.lock /src/requirements.lock" for i in build)
    assert not any(re.search(r"\b(pip install|apt-get|gcc|build-essential)\b", i) for i in final)
    assert any(i.startswith("COPY --from=build /opt/runbook") for i in final)
    (user,) = [i for i in final if i.startswith("USER ")]
    assert re.fullmatch(r"USER [1-9][0-9]*:[1-9][0-9]*", user)  # numeric: runAsNonRoot can check it
    env = " ".join(i for i in final if i.startswith("ENV "))
    for writable in ("HOME=/tmp", "RUNBOOK_SPOOL=/var/spool/runbook", "JUPYTER_RUNTIME_DIR=/tmp"):
        assert writable in env  # a read-only root filesystem: everything written goes to a volume


def test_the_deployment_runs_two_replicas_of_serve_probed_limited_and_locked_down(rendered):
    deployment = rendered["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == rendered["ServiceAccount"]["metadata"]["name"]
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/var/spool/runbook"} <= mounted


def test_the_deployment_gives_serve_only_options_it_takes_and_secrets_only_from_secrets(rendered):
    (container,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "serve"
    options = {o for p in cli.serve.params for o in p.opts}
    given = {a.split("=", 1)[0] for a in container["args"][1:]}
    assert given <= options, given - options
    env = {e["name"]: e for e in container["env"]}
    for secret in ("RUNBOOK_WEBHOOK_TOKEN", "RUNBOOK_QUEUE", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "RUNBOOK_SEAL_KEY"):
        assert "value" not in env[secret] and env[secret]["valueFrom"]["secretKeyRef"]["name"] == "runbook-serve"
    arguments = dict(a.split("=", 1) for a in container["args"][1:])
    assert float(arguments["--lease"]) >= float(arguments["--timeout"]) + 15  # what serve checks at start


def test_the_base_has_a_service_a_disruption_budget_and_a_network_policy_for_the_pods(rendered):
    labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind, selector in (
        ("Service", rendered["Service"]["spec"]["selector"]),
        ("PodDisruptionBudget", rendered["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]),
        ("NetworkPolicy", rendered["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]),
    ):
        assert selector.items() <= labels.items(), kind
    assert rendered["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert set(rendered["NetworkPolicy"]["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_the_alertmanager_receiver_sends_the_token_through_http_config_authorization(tmp_path):
    snippet = yaml.safe_load((DEPLOY / "alertmanager-receiver.yaml").read_text())
    (receiver,) = snippet["receivers"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"].endswith("/alerts")
    assert webhook["http_config"]["authorization"]["credentials_file"]
    # Merged into a whole configuration, Alertmanager's own checker accepts it.
    token = tmp_path / "webhook-token"
    token.write_text("t0ken")
    webhook["http_config"]["authorization"]["credentials_file"] = str(token)
    config = {
        "route": {"receiver": "people", **snippet["route"]},
        "receivers": [{"name": "people"}, receiver],
    }
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    amtool = shutil.which("amtool")
    assert amtool, "amtool comes with Alertmanager (make monitoring)"
    checked = subprocess.run(
        [amtool, "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

"""`runbook sandbox` as an engineer uses it: start it, run every runbook against it, stop it with Ctrl-C.

One sandbox for the module. Each notebook in notebooks/ runs headlessly with `--env sandbox` and must
show its incident (one key finding each); the values printed for Jupyter must be the ones headless
runs get; Ctrl-C must leave no parameters file, certificates, PostgreSQL, Prometheus or listening port behind.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from psycopg.conninfo import conninfo_to_dict

from labs import code_cells, step_through
from runbooks import catalog
from test_cli import RUNBOOK

SANDBOX_YAML = catalog.PARAMETERS / "sandbox.yaml"
README = catalog.OUTPUT / "sandbox" / "README.txt"
INTEGRATIONS = catalog.OUTPUT / "sandbox" / "integrations.yaml"
NOTEBOOKS = sorted(path.stem for path in catalog.NOTEBOOKS.glob("*.ipynb"))


@dataclass
class Sandbox:
    process: subprocess.Popen
    banner: str  # what it printed up to "Ctrl-C stops everything."
    parameters: dict  # parameters/sandbox.yaml as written
    integrations: dict  # output/sandbox/integrations.yaml as written

    @property
    def runbooks(self) -> dict:
        return self.parameters["runbooks"]

    @property
    def pg_folder(self) -> str:
        return conninfo_to_dict(self.parameters["defaults"]["dsn"])["host"]

    @property
    def prometheus_url(self) -> str:
        return self.runbooks["triage"]["prometheus_url"]

    def ports(self) -> list[int]:
        """Every loopback port it serves: the Kubernetes API, the TLS endpoints, the health endpoints, both
        Prometheus, Alertmanager, the Slack/Statuspage/PagerDuty receivers."""
        kubeconfig = yaml.safe_load(Path(self.parameters["defaults"]["kubeconfig"]).read_text())
        urls = [kubeconfig["clusters"][0]["cluster"]["server"], self.prometheus_url]
        urls += [
            self.runbooks["verify-recovery"]["prometheus_url"],
            self.runbooks["oncall-handoff"]["alertmanager_url"],
        ]
        urls.append(self.integrations["pagerduty"]["url"])
        urls += [d["health_url"] for d in self.runbooks["third-party-api-down"]["dependencies"].values()]
        served = self.runbooks["ssl-certificate-expired"]["endpoints"][:2]  # the third is the closed port
        return [urlsplit(url).port for url in urls] + [int(e.split("@")[0].rsplit(":", 1)[1]) for e in served]


@pytest.fixture(scope="module")
def sandbox():
    process = subprocess.Popen([RUNBOOK, "sandbox"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in process.stdout:  # wait for it to be up
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        assert SANDBOX_YAML.is_file(), "".join(lines) + process.stderr.read()
        integrations = yaml.safe_load(INTEGRATIONS.read_text())
        yield Sandbox(process, "".join(lines), yaml.safe_load(SANDBOX_YAML.read_text()), integrations)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)


def run(name: str, tmp_path: Path, *args: str) -> dict:
    """`runbook run NAME --env sandbox ARGS...`: its evidence record."""
    result = subprocess.run(
        [RUNBOOK, "run", name, "--env", "sandbox", "--output-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(Path(result.stdout.splitlines()[-1]).read_text())
    assert record["status"] == "completed"
    return record


# --- one key finding per runbook: its incident shows


def one(record: dict, id: str) -> dict:
    """The finding of that id; there must be exactly one."""
    matching = [f for f in record["findings"] if f["id"] == id]
    assert len(matching) == 1, f"{len(matching)} findings {id!r} in {[f['id'] for f in record['findings']]}"
    return matching[0]


def gateway_errors_traced_to_auth_service(record, sandbox):
    cause = one(record, "likely-cause")["data"]
    assert (cause["cause"], cause["deployment"]) == ("memory-exhaustion", "auth-service")
    assert cause["evidence"]["oomkilled"] == ["auth-service-6b7c9d8f5-k4j2w/auth-service"]


def pool_near_exhaustion(record, sandbox):
    usage = one(record, "pool-usage")
    assert usage["severity"] in ("warning", "critical") and usage["data"]["status"] == "near exhaustion"
    assert one(record, "top-application")["data"]["application"] == "deal-service"


def lock_chain_root_blocker(record, sandbox):
    blocker = one(record, "root-blocker")
    assert blocker["severity"] == "critical" and blocker["data"]["sessions_blocked"] == 2
    assert blocker["data"]["query"].startswith("UPDATE deals") and blocker["data"]["state"] == "idle in transaction"


def stale_pods_after_rotation(record, sandbox):
    stale = one(record, "stale-pods")["data"]
    assert stale["deployments"] == [
        "auth-service",
        "notification-service",
    ]  # not the gateway: it does not read the secret
    assert stale["pods"] == [
        "auth-service-6b7c9d8f5-a8k2m",
        "auth-service-6b7c9d8f5-p9r3v",
        "notification-service-5f6d7c8b9-r4t6v",
    ]
    assert one(record, "failure-reasons")["data"]["top_reason"] == "bad-signature"
    assert one(record, "secret-mismatch")["data"]["namespaces"] == [
        "autolytiq-batch"
    ]  # compare_namespaces: sandbox.yaml


def oomkilled_auth_service(record, sandbox):
    killed = one(record, "oomkilled-containers")
    assert killed["severity"] == "critical"
    assert [(d["pod"], d["container"], d["limit"]) for d in killed["data"]] == [
        ("auth-service-6b7c9d8f5-k4j2w", "auth-service", "256Mi")
    ]
    [set_memory] = [a for a in record["actions"] if a["id"] == "set-memory"]  # the deployment's limit, raised
    assert set_memory["mode"] == "dry-run" and "256Mi -> 1024Mi" in set_memory["result"]


def expired_endpoint_and_certificate(record, sandbox):
    expired, _valid, closed = sandbox.runbooks["ssl-certificate-expired"]["endpoints"]
    assert one(record, "expired-endpoints")["data"]["endpoints"] == [expired]
    assert one(record, "untrusted-endpoints")["data"]["endpoints"] == [expired]  # the valid one verifies with ca_file
    assert one(record, "unreachable-endpoints")["data"]["endpoints"] == [closed]
    assert one(record, "certificates-not-ready")["data"]["certificates"] == ["api-gateway-tls"]


def tax_rates_down(record, sandbox):
    down = one(record, "dependency-down")  # one per dependency down: only tax-rates
    assert down["severity"] == "critical"
    assert (down["data"]["dependency"], down["data"]["basis"], down["data"]["probe_status"]) == (
        "tax-rates",
        "logs and probe",
        503,
    )
    assert (
        down["data"]["health_url"]
        == sandbox.runbooks["third-party-api-down"]["dependencies"]["tax-rates"]["health_url"]
    )
    others = one(record, "dependency-errors")["data"]["dependencies"]
    assert (others["credit-bureau"]["status"], others["credit-bureau"]["probe_status"]) == ("ok", 200)
    assert others["email"]["status"] == "recovered"


def declared_p2_by_error_rate_from_prometheus(record, sandbox):
    severity = one(record, "severity")["data"]  # the sandbox's Prometheus: 12 % 5xx and 2x latency since the rollout
    assert (severity["severity"], severity["metrics"], severity["error_rate_source"]) == (
        "P2",
        "prometheus",
        "prometheus",
    )
    assert severity["rule"].startswith("error rate >= 10 %")
    assert severity["error_rate"] == pytest.approx(0.12, abs=1e-6)
    assert severity["latency_ratio"] == pytest.approx(2.0, abs=0.01)  # against the same hour a week earlier
    assert severity["incident_start_source"].startswith("metrics: ")
    assert "metrics-unavailable" not in [f["id"] for f in record["findings"]]
    restarted = one(record, "pods-restarting")["data"]["containers"]
    assert ("auth-service-6b7c9d8f5-k4j2w", "OOMKilled") in [(c["pod"], c["last_termination"]) for c in restarted]


def gateway_failing_upstream_after_its_rollout(record, sandbox):
    cause = one(record, "suspected-cause")["data"]
    assert (cause["service"], cause["cause"], cause["also"]) == ("api-gateway", "dependency-failing", ["recent-change"])
    assert one(record, "dependency-failing")["data"]["in_logs"][0]["host"] == "auth-service"
    assert "error rate 12.00 % now" in one(record, "service-metrics")["summary"]  # the sandbox's Prometheus


def recovered_on_the_recovered_prometheus(record, sandbox):
    recovery = one(record, "recovery")["data"]  # the "recovered" variant: the errors ended 20 minutes ago
    assert recovery["status"] == "recovered" and recovery["readings"] >= 15
    assert recovery["max_error_rate"] == pytest.approx(0.002, abs=1e-6)
    assert [a["id"] for a in record["actions"]] == ["resolve-messages"]


def handoff_sees_the_alerts_and_certificates(record, sandbox):
    health = one(record, "environment-health")["data"]
    checks = {c["check"]: c for c in health["checks"]}
    assert checks["alerts firing (Alertmanager)"]["detail"] == "CriticalMemoryUsage (warning), HighErrorRate (critical)"
    assert "certificate/api-gateway-tls (expired" in checks["certificates (cert-manager)"]["detail"]
    assert checks["certificates (endpoints)"]["status"] == "attention"
    assert checks["database connection pool"]["status"] == "attention"  # near exhaustion


INCIDENTS = {
    "api-gateway-high-error-rate": gateway_errors_traced_to_auth_service,
    "db-connection-pool-exhausted": pool_near_exhaustion,
    "db-slow-queries": lock_chain_root_blocker,
    "jwt-validation-failures": stale_pods_after_rotation,
    "pod-oomkilled": oomkilled_auth_service,
    "ssl-certificate-expired": expired_endpoint_and_certificate,
    "third-party-api-down": tax_rates_down,
    "triage": declared_p2_by_error_rate_from_prometheus,
    "service-investigation": gateway_failing_upstream_after_its_rollout,
    "verify-recovery": recovered_on_the_recovered_prometheus,
    "oncall-handoff": handoff_sees_the_alerts_and_certificates,
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_runbook_shows_its_incident(sandbox, name, tmp_path):
    if name not in INCIDENTS:
        pytest.fail(f"notebooks/{name}.ipynb: the sandbox test has no check of its incident")
    INCIDENTS[name](run(name, tmp_path), sandbox)


def test_a_runbook_opened_on_the_sandbox_and_stepped_through_is_sealed_showing_its_incident(sandbox, tmp_path):
    args = ["pod-oomkilled", "--env", "sandbox", "--incident", "INC-1", "--output-dir", str(tmp_path), "--no-lab"]
    opened = subprocess.run(
        [RUNBOOK, "open", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert opened.returncode == 0, opened.stderr
    copy = Path(opened.stdout.splitlines()[-1])
    step_through(copy, code_cells(copy))
    sealed = subprocess.run([RUNBOOK, "seal", "INC-1", "--output-dir", str(tmp_path)], capture_output=True, text=True)
    record = json.loads(Path(sealed.stdout.splitlines()[-1]).read_text())
    assert (record["mode"], record["status"]) == ("interactive", "completed"), record["session"]["reason"]
    oomkilled_auth_service(record, sandbox)


def test_the_real_cluster_shapes_are_there_too(sandbox, tmp_path):
    """ingress-nginx in its own namespace, and memory trouble beyond Deployments in autolytiq-data."""
    ingress = (
        "-p",
        "gateway_namespace",
        "ingress-nginx",
        "-p",
        "gateway_selector",
        "app.kubernetes.io/name=ingress-nginx",
    )
    cause = one(run("api-gateway-high-error-rate", tmp_path, *ingress), "likely-cause")["data"]
    assert (cause["cause"], cause["deployment"], cause["upstream"]) == (
        "database-connection-issues",
        "payments",
        "payments",
    )
    record = run("pod-oomkilled", tmp_path, "-p", "namespace", "autolytiq-data")
    assert one(record, "node-memory-pressure")["severity"] == "critical"
    assert "statefulset/ledger-db in autolytiq-data" in [a["target"] for a in record["actions"]]


def test_the_values_to_paste_in_jupyter_are_the_headless_ones(sandbox):
    notes = README.read_text()
    assert notes in sandbox.banner
    blocks = notes.split("--- ")[1:]
    assert {block.split("\n", 1)[0] for block in blocks} == set(sandbox.runbooks)
    for block in blocks:
        name, assignments = block.split("\n", 1)
        cell = {}
        exec(assignments, {}, cell)  # as pasted into the parameters cell
        assert cell == sandbox.runbooks[name], name
        catalog.find(name).resolve(cell)  # parameters the notebook takes, of its types


def test_ctrl_c_stops_everything_and_removes_what_it_wrote(sandbox):
    postgres = processes_mentioning(sandbox.pg_folder)
    assert postgres, "the sandbox's PostgreSQL is not running"
    assert Path(sandbox.runbooks["ssl-certificate-expired"]["ca_file"]).is_file()
    prometheus_listens = f"--web.listen-address={urlsplit(sandbox.prometheus_url).netloc}"
    assert processes_mentioning(prometheus_listens), "the sandbox's Prometheus is not running"
    flags = requests.get(f"{sandbox.prometheus_url}/api/v1/status/flags", timeout=10).json()["data"]
    prometheus_folder = Path(flags["storage.tsdb.path"]).parent  # its backfilled TSDB, config and log
    assert prometheus_folder.is_dir()

    sandbox.process.send_signal(signal.SIGINT)
    assert sandbox.process.wait(timeout=60) == 0, sandbox.process.stderr.read()

    assert not SANDBOX_YAML.exists() and not README.exists()
    assert not INTEGRATIONS.exists()
    assert not Path(sandbox.runbooks["ssl-certificate-expired"]["ca_file"]).parent.exists()  # certificates, keys
    assert not processes_mentioning(sandbox.pg_folder) and not Path(sandbox.pg_folder).exists()
    assert not processes_mentioning(prometheus_listens) and not prometheus_folder.exists()
    for port in sandbox.ports():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains text (PostgreSQL's names its data folder,
    Prometheus's its listen address)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # it ended meanwhile
            continue
    return pids

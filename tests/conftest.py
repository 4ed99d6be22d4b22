"""A real PostgreSQL for the whole session (the sandbox's), and a way to run runbooks for real."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from psycopg import sql

from runbooks import cli, kube
from runbooks_sandbox.kubeapi.kubeconfig import write_kubeconfig
from runbooks_sandbox.kubeapi.server import KubeApiServer
from runbooks_sandbox.postgres import LocalPostgres

# Sessions the fixtures themselves need stay out of the incident: cleanup ends every other client.
END_CLIENTS = """
    SELECT pg_terminate_backend(pid)
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


@pytest.fixture(scope="session")
def pg():
    with LocalPostgres(max_connections=20, superuser_reserved=3) as server:
        yield server


@pytest.fixture
def server(pg):
    """The session's server, with no client sessions (nor prepared transactions) left over from a previous test."""
    yield pg
    with pg.connect("postgres") as conn:
        conn.execute(END_CLIENTS)
        for (gid,) in conn.execute("SELECT gid FROM pg_prepared_xacts").fetchall():
            conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))
        conn.execute("SELECT pg_stat_statements_reset()")


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    evidence_path: Path | None

    @property
    def evidence(self) -> dict:
        return json.loads(self.evidence_path.read_text())

    def findings(self) -> dict[str, dict]:
        return {f["id"]: f for f in self.evidence["findings"]}


@pytest.fixture
def admin_password(server):
    """A password for the admin role: over TCP (`server.tcp_dsn`) the server asks for it (SCRAM), so a run
    that completes there got it from libpq."""
    password = "Tr0ub4dor-and-3"
    with server.connect() as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier("autolytiq_admin"), sql.Literal(password))
        )
    return password


@pytest.fixture
def run_runbook(tmp_path):
    """Run `runbook run NAME ARGS...` in-process; outputs go to a per-test folder."""

    def run(name: str, *args: str) -> Outcome:
        result = CliRunner().invoke(cli.main, ["run", name, "--output-dir", str(tmp_path), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        lines = result.stdout.strip().splitlines()
        path = Path(lines[-1]) if lines and lines[-1].endswith(".evidence.json") else None
        return Outcome(result.exit_code, result.stdout, result.stderr, path)

    return run


@pytest.fixture
def client_pids(server):
    """The pids of every client session but the caller's, as the server sees them now."""

    def pids() -> set[int]:
        with server.connect("postgres") as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchall()
        return {pid for (pid,) in rows}

    return pids


@pytest.fixture
def prod(kube_api):
    """The test API server loaded with the autolytiq-prod scenario."""
    kube_api.load("autolytiq-prod")
    return kube_api


@pytest.fixture
def cluster(prod):
    """A runbooks Cluster on autolytiq-prod (modules with another scenario define their own)."""
    connected = prod.connect("autolytiq-prod")
    yield connected
    connected.api.close()


class KubeApi:
    """What kube_api yields. State changes made through it are not recorded as requests."""

    def __init__(self, server, kubeconfig, context):
        self.server = server
        self.url = server.url
        self.kubeconfig = kubeconfig  # pathlib.Path
        self.context = context

    @property
    def requests(self):
        """Every HTTP request the server has answered: RecordedRequest(method, path, query, body)."""
        return self.server.requests

    def load(self, scenario):
        """Add a scenario's objects and logs: a name under scenarios/, a YAML path or a dict."""
        return self.server.load(scenario)

    def reset(self):
        self.server.reset()

    def add(self, obj):
        return self.server.add(obj)

    def get(self, plural, name, namespace=None, group=""):
        return self.server.get(plural, name, namespace, group)

    def list(self, plural, namespace=None, group=""):
        return self.server.list(plural, namespace, group)

    def remove(self, plural, name, namespace=None, group=""):
        self.server.remove(plural, name, namespace, group)

    def set_logs(self, namespace, pod, container, current=(), previous=()):
        self.server.set_logs(namespace, pod, container, current, previous)

    def connect(self, namespace):
        """A runbooks Cluster on this server, as a notebook's setup cell builds it."""
        return kube.connect(str(self.kubeconfig), self.context, namespace)

    def runbook_args(self, namespace):
        """The `-p` pairs that point a runbook at this server and namespace."""
        return ["-p", "kubeconfig", str(self.kubeconfig), "-p", "context", self.context, "-p", "namespace", namespace]

    def client(self):
        """An official kubernetes ApiClient configured from the kubeconfig, as a runbook would build it."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)


@pytest.fixture
def kube_api(tmp_path):
    with KubeApiServer() as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url, context="test")
        yield KubeApi(server, kubeconfig, "test")


@pytest.fixture
def receivers(monkeypatch):
    """Local Slack, Statuspage and PagerDuty (runbooks_sandbox.receivers), their secrets in the environment."""
    from runbooks_sandbox.receivers import Receivers

    with Receivers() as running:
        for name, value in running.environment().items():
            monkeypatch.setenv(name, value)
        yield running

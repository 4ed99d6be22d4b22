"""`runbook sandbox`: every runbook's target, local and mid-incident, for stepping through notebooks.

It starts, until Ctrl-C:
- a throwaway PostgreSQL with induced incidents (pools near exhaustion, a lock chain, a long query,
  slow statements): db-connection-pool-exhausted, db-slow-queries;
- the Kubernetes API test server with the four scenarios loaded into one namespace, autolytiq-prod
  (and autolytiq-batch and autolytiq-edge, which hold copies of the JWT secret):
  api-gateway-high-error-rate, pod-oomkilled, jwt-validation-failures, and the cluster side of
  ssl-certificate-expired and third-party-api-down;
- TLS endpoints on loopback signed by a sandbox CA, one expired two days ago and one valid for 90
  days, and a closed port that stands for an unreachable endpoint: ssl-certificate-expired;
- a health endpoint per third-party dependency of the third-party-api-down scenario, the tax-rate
  API's answering 503, the credit bureau's and the mail relay's 200;
- a Prometheus holding the gateway's traffic (gateway_traffic, backfilled, the incident going on for an
  hour more): triage, service-investigation. Without `prometheus` and `promtool` installed it is left out
  and triage reads the gateway logs instead;
- a second Prometheus, the "recovered" variant (recovered_traffic): the same gateway after the fix, its errors
  over 20 minutes ago and normal since: verify-recovery;
- an Alertmanager (Debian's `prometheus-alertmanager`, when installed) holding the incident's alerts firing
  (HighErrorRate, CriticalMemoryUsage): the live health check of oncall-handoff;
- local receivers for Slack, Statuspage and PagerDuty (runbooks_sandbox.receivers), and an integrations file
  pointing at them (`output/sandbox/integrations.yaml`, secrets in `output/sandbox/env.sh`): `runbook comms
  --post` and the escalations of `runbook serve`.

One world from six scenarios. `load` replaces an object of the same kind and name, so the order
and the omissions decide which story an object tells:
1. autolytiq-prod: the gateway answering 5xx after its rollout, auth-service OOMKilled.
2. third-party-api-down: new pods only (deal-, credit-, notification-service), nothing replaced.
3. certificate-expired: replaces the Certificate api-gateway-tls (expiring in 5 days -> expired 2 days
   ago, renewal failing): the ssl runbook's incident; no other runbook reads Certificates.
4. ingress-nginx-5xx: an ingress-nginx controller in namespace ingress-nginx (its default log format, a cut
   tail, an old OOMKill) in front of payments in autolytiq-prod (rolled back by re-using an old ReplicaSet,
   unable to reach its database). Nothing of autolytiq-prod's replaced but the Nodes (the same ones). The
   default runs do not read it; `-p gateway_namespace ingress-nginx -p gateway_selector
   app.kubernetes.io/name=ingress-nginx` points the gateway runbook and triage at it.
5. memory-on-real-clusters: namespace autolytiq-data, memory as production shows it (a StatefulSet, a
   CronJob, an Argo Rollout, native and injected sidecars, an eviction and node OOM events, a three-day-old
   OOMKill): `-p namespace autolytiq-data` for pod-oomkilled and triage.
6. jwt-secret-rotated, last, so that its Secret (rotated 10 minutes ago) and its Nodes (worker-2's clock
   ahead, worker-3 silent) replace autolytiq-prod's, which only jwt-validation-failures reads. Left out:
   its api-gateway Deployment, ReplicaSet and pod and its auth-service Deployment and ReplicaSet. They
   would replace autolytiq-prod's: the gateway's revision history (the rollout the gateway runbook
   weighs) and auth-service's 256Mi memory limit (what pod-oomkilled raises). Without them the stale
   pods are auth-service's and notification-service's, as in the jwt scenario, and the gateway, which
   does not read the secret in autolytiq-prod, is not among them.

Headless runs (`runbook run NAME --env sandbox`) read `parameters/sandbox.yaml`: `defaults` (dsn,
kubeconfig, context, namespace) and, under `runbooks:`, what the notebooks' defaults cannot know: the
TLS endpoints and CA file, the dependencies' health URLs, the namespaces holding copies of the JWT
secret. `runbook open NAME --env sandbox` injects the same values into a working copy for JupyterLab. In
plain Jupyter (`. output/sandbox/env.sh`) the empty defaults read PG* and $KUBECONFIG; those few values are
printed at start-up and written to `output/sandbox/README.txt`, to paste into the parameters cell. The
scenarios' times count from start-up, and Prometheus's series end there: after about 20 minutes the gateway's
and the auth service's errors leave the runbooks' default 30-minute windows; restart the sandbox for a fresh
incident. Ctrl-C stops everything and removes `parameters/sandbox.yaml`, the README, the integrations file, the
certificates, Prometheus's and Alertmanager's data.
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runbooks import catalog

from . import alertmanager, endpoints, prometheus
from .incidents import Pool, blocking_chain, hold_pools, long_query, run_slow_statements
from .kubeapi.kubeconfig import write_kubeconfig
from .kubeapi.scenario import Scenario, load_scenario
from .kubeapi.server import KubeApiServer
from .postgres import ADMIN, DATABASE, LocalPostgres
from .receivers import Receivers

NAMESPACE = "autolytiq-prod"
# In load order, each with the objects (kind, name) it must not replace: see the module docstring.
SCENARIOS = (
    ("autolytiq-prod", ()),
    ("third-party-api-down", ()),
    ("certificate-expired", ()),
    ("ingress-nginx-5xx", ()),
    ("memory-on-real-clusters", ()),
    (
        "jwt-secret-rotated",
        (
            ("Deployment", "api-gateway"),
            ("ReplicaSet", "api-gateway-7d9f8b6c5d"),
            ("Pod", "api-gateway-7d9f8b6c5d-x2k9p"),
            ("Deployment", "auth-service"),
            ("ReplicaSet", "auth-service-6b7c9d8f5"),
        ),
    ),
)
# 12 pooled sessions + a 3-session lock chain + a long report = 16 of 17 ordinary slots: near exhaustion.
POOLS = (
    Pool("deal-service", "deal_service", 5, in_transaction=1),
    Pool("customer-service", "customer_service", 4),
    Pool("tax-service", "tax_service", 2, in_transaction=1),
    Pool("email-worker", "email_worker", 1),
)
CA_NAME = "Runbook Sandbox CA"
# jwt-secret-rotated's copies of autolytiq-secrets: autolytiq-batch holds the old key, autolytiq-edge the new.
JWT_SECRET_COPIES = ["autolytiq-batch", "autolytiq-edge"]


@dataclass(frozen=True)
class Dependency:
    match: str  # regex for the third-party-api-down scenario's log lines about it (its host)
    feature: str
    health_status: int  # what its health endpoint on loopback answers
    body: str | None = None  # and with what (None: a small JSON status)


# Named and matched as the third-party-api-down notebook's defaults name them.
DEPENDENCIES = {
    "tax-rates": Dependency(r"taxrates\.example", "Deal tax calculation", 503),  # the one that is down
    "credit-bureau": Dependency(r"creditbureau\.example", "Credit applications", 200),
    # recovered 45 min ago; its health URL is an Atlassian Statuspage status.json, as the notebook's default is
    "email": Dependency(
        r"mailrelay\.example",
        "Email notifications",
        200,
        '{"page": {"id": "y2j98763l56z", "name": "Mail Relay", "url": "https://status.mailrelay.example"}, '
        '"status": {"indicator": "none", "description": "All Systems Operational"}}',
    ),
}


def main() -> int:
    folder = catalog.OUTPUT / "sandbox"
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        pg = start_postgres(stack)
        kube = stack.enter_context(KubeApiServer())
        load_scenarios(kube)
        stack.callback(shutil.rmtree, folder / "pki", ignore_errors=True)  # after the TLS servers stop
        pki = stack.enter_context(endpoints.serve_pki(folder / "pki", ca_name=CA_NAME))
        health = {
            name: stack.enter_context(endpoints.serve_health(dependency.health_status, dependency.body))
            for name, dependency in DEPENDENCIES.items()
        }
        prom = start_prometheus(stack)
        recovered = start_prometheus(stack, recovered_traffic)
        alerts = start_alertmanager(stack, folder / "alertmanager")
        receivers = stack.enter_context(Receivers())
        integrations = receivers.write_integrations(folder / "integrations.yaml")
        stack.callback(integrations.unlink, missing_ok=True)

        kubeconfig = write_kubeconfig(folder / "kubeconfig", kube.url, context="sandbox", namespace=NAMESPACE)
        runbooks = runbook_parameters(
            pki,
            {name: endpoint.url for name, endpoint in health.items()},
            prom.url if prom else None,
            recovered.url if recovered else None,
            alerts.url if alerts else None,
        )
        stack.callback((catalog.PARAMETERS / "sandbox.yaml").unlink, missing_ok=True)
        parameters = write_parameters(pg.dsn(), kubeconfig, runbooks)
        env = folder / "env.sh"
        env.write_text(
            f"export PGHOST={pg.socket_dir} PGPORT={pg.port} PGUSER={ADMIN} PGDATABASE={DATABASE}\n"
            f"export KUBECONFIG={kubeconfig}\n"
            + "".join(f"export {name}={value}\n" for name, value in receivers.environment().items())
        )
        readme = folder / "README.txt"
        stack.callback(readme.unlink, missing_ok=True)
        notes = interactive_notes(env, parameters, runbooks)
        readme.write_text(notes)

        print(f"Sandbox up, namespace {NAMESPACE}:")
        print(f"  PostgreSQL        {pg.socket_dir} port {pg.port}")
        print(f"  Kubernetes API    {kube.url} (scenarios {', '.join(name for name, _ in SCENARIOS)})")
        print(f"  TLS endpoints     expired {pki.expired}, valid {pki.valid}, closed {pki.closed} (CA {pki.ca_file})")
        print(
            "  health endpoints  "
            + ", ".join(f"{name} {endpoint.url} ({endpoint.status})" for name, endpoint in health.items())
        )
        print(
            f"  Prometheus        {prom.url} (the gateway: 12 % 5xx and 2x latency for the last 20 minutes)"
            if prom
            else "  Prometheus        not installed (prometheus, promtool): triage will read the gateway logs"
        )
        print(
            f"  Prometheus        {recovered.url} (recovered: the gateway's errors ended 20 minutes ago)"
            if recovered
            else "  Prometheus        no recovered variant (prometheus, promtool not installed)"
        )
        print(
            f"  Alertmanager      {alerts.url} (HighErrorRate, CriticalMemoryUsage firing)"
            if alerts
            else "  Alertmanager      not installed (prometheus-alertmanager): oncall-handoff skips its alerts"
        )
        print(f"  Slack, Statuspage, PagerDuty receivers {receivers.url} (integrations: {integrations})")
        print(f"Headless: runbook run NAME --env sandbox (parameters: {parameters})")
        print(f"Notes for Jupyter, also in {readme}:")
        print(notes, end="")
        print("Ctrl-C stops everything.", flush=True)
        wait_for_interrupt()
    return 0


def start_postgres(stack: ExitStack) -> LocalPostgres:
    """PostgreSQL near pool exhaustion, with a lock chain, a day-long report and slow statements seen."""
    pg = stack.enter_context(LocalPostgres())
    # Slow statements first: a session just closed still holds its server slot for a moment, so the last
    # ordinary slots are taken right after a closed session only when one spare slot remains.
    run_slow_statements(pg, times=5)
    stack.enter_context(hold_pools(pg, POOLS))
    stack.enter_context(blocking_chain(pg))
    stack.enter_context(long_query(pg, 24 * 3600, application="monthly-report"))
    return pg


def start_prometheus(stack: ExitStack, traffic=None) -> prometheus.PrometheusServer | None:
    """Prometheus holding the gateway's traffic (`traffic(now)`, default gateway_traffic); None when prometheus or
    promtool is not installed."""
    if not prometheus.installed():
        return None
    stretches = (traffic or gateway_traffic)(time.time())
    return stack.enter_context(prometheus.PrometheusServer(prometheus.http_traffic(stretches)))


MINUTE, WEEK = 60, 7 * 24 * 60 * 60
AHEAD = 60 * MINUTE  # the series go on this long after the start: Prometheus answers for "now" as the sandbox runs


def gateway_traffic(now: float) -> list[prometheus.Traffic]:
    """The gateway's requests as autolytiq-prod tells it, 100 a second: normal until api-gateway's rollout 20
    minutes ago, then 12 % answered 5xx (auth-service OOMKilled) and every request twice as slow, going on for an
    hour more (samples after `now` show as time passes). From 70 minutes ago: the hour triage reads and its
    queries' 5-minute rates. Normal over the same hours one week earlier (the default baseline)."""
    return [
        _normal_week_earlier(now),
        prometheus.Traffic(now - 70 * MINUTE, now - 20 * MINUTE, 100, 0.002, prometheus.NORMAL_LATENCY),
        prometheus.Traffic(now - 20 * MINUTE + prometheus.STEP, now + AHEAD, 100, 0.12, prometheus.SLOW_LATENCY),
    ]


def recovered_traffic(now: float) -> list[prometheus.Traffic]:
    """The "recovered" variant: the same gateway once the fix took, its 5xx and slowness from 45 to 20 minutes
    ago and normal since (and for an hour more): the last 15 minutes verify-recovery watches by default are
    normal even through the queries' 5-minute rate window."""
    return [
        _normal_week_earlier(now),
        prometheus.Traffic(now - 70 * MINUTE, now - 45 * MINUTE, 100, 0.002, prometheus.NORMAL_LATENCY),
        prometheus.Traffic(now - 45 * MINUTE + prometheus.STEP, now - 20 * MINUTE, 100, 0.12, prometheus.SLOW_LATENCY),
        prometheus.Traffic(now - 20 * MINUTE + prometheus.STEP, now + AHEAD, 100, 0.002, prometheus.NORMAL_LATENCY),
    ]


def _normal_week_earlier(now: float) -> prometheus.Traffic:
    return prometheus.Traffic(now - WEEK - 70 * MINUTE, now - WEEK + AHEAD, 100, 0.002, prometheus.NORMAL_LATENCY)


# The incident's alerts, as Prometheus would send them: firing since the rollout, for two hours more.
ALERTS = (
    ("HighErrorRate", "critical", "api-gateway", "api-gateway: 12 % of requests answered 5xx"),
    ("CriticalMemoryUsage", "warning", "auth-service", "auth-service: OOMKilled 5 times"),
)


def start_alertmanager(stack: ExitStack, folder: Path) -> alertmanager.AlertmanagerServer | None:
    """Alertmanager holding ALERTS firing; None when it is not installed."""
    if not alertmanager.installed():
        return None
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    server = stack.enter_context(alertmanager.AlertmanagerServer(folder))
    now = dt.datetime.now(dt.timezone.utc)
    server.post_alerts(
        *(
            {
                "labels": {"alertname": name, "severity": severity, "namespace": NAMESPACE, "service": service},
                "annotations": {"summary": summary},
                "startsAt": (now - dt.timedelta(minutes=20)).isoformat(),
                "endsAt": (now + dt.timedelta(hours=2)).isoformat(),
            }
            for name, severity, service, summary in ALERTS
        )
    )
    return server


def load_scenarios(kube: KubeApiServer) -> None:
    """SCENARIOS into the server, in order, each without the objects it must not replace."""
    for name, omitted in SCENARIOS:
        kube.load(without(load_scenario(name), omitted))


def without(scenario: Scenario, omitted) -> Scenario:
    """The scenario less the objects named (kind, name); each must be in it, so that a renamed one is noticed."""
    omitted = set(omitted)
    if missing := omitted - {(o["kind"], o["metadata"]["name"]) for o in scenario.objects}:
        raise ValueError(f"not in the scenario, cannot be left out: {sorted(missing)}")
    kept = [o for o in scenario.objects if (o["kind"], o["metadata"]["name"]) not in omitted]
    return Scenario(kept, scenario.logs, scenario.namespace, scenario.unavailable, scenario.forbidden)


def runbook_parameters(
    pki: endpoints.Pki,
    health_urls: dict[str, str],
    prometheus_url: str | None,
    recovered_url: str | None = None,
    alertmanager_url: str | None = None,
) -> dict[str, dict[str, Any]]:
    """What `runbooks:` in sandbox.yaml sets: the values the notebooks' defaults cannot know."""
    dependencies = {
        name: {"match": d.match, "health_url": health_urls[name], "feature": d.feature}
        for name, d in DEPENDENCIES.items()
    }
    runbooks: dict[str, dict[str, Any]] = {
        "ssl-certificate-expired": {"endpoints": pki.endpoints, "ca_file": str(pki.ca_file)},
        "third-party-api-down": {"dependencies": dependencies},
        "jwt-validation-failures": {"compare_namespaces": JWT_SECRET_COPIES},
    }
    if prometheus_url:
        runbooks["triage"] = {"prometheus_url": prometheus_url}
        runbooks["service-investigation"] = {"prometheus_url": prometheus_url}
    if recovered_url:
        runbooks["verify-recovery"] = {"prometheus_url": recovered_url}
    runbooks["oncall-handoff"] = {"endpoints": pki.endpoints, "ca_file": str(pki.ca_file)}
    if alertmanager_url:
        runbooks["oncall-handoff"]["alertmanager_url"] = alertmanager_url
    return runbooks


def write_parameters(dsn: str, kubeconfig: Path, runbooks: dict[str, dict[str, Any]]) -> Path:
    for name, values in runbooks.items():
        catalog.find(name).resolve(values)  # a parameter a notebook no longer takes fails here, not at run time
    path = catalog.PARAMETERS / "sandbox.yaml"
    defaults = {"dsn": dsn, "kubeconfig": str(kubeconfig), "context": "sandbox", "namespace": NAMESPACE}
    path.write_text(
        "# Written by `runbook sandbox` while it runs; removed when it stops.\n"
        + yaml.safe_dump({"defaults": defaults, "runbooks": runbooks}, sort_keys=False)
    )
    return path


def interactive_notes(env: Path, parameters: Path, runbooks: dict[str, dict[str, Any]]) -> str:
    """How to step through the notebooks by hand, with the values to paste into three parameters cells."""
    lines = [
        "Interactive, on the record: runbook open NAME --env sandbox --incident INC-1",
        f"  (JupyterLab on a working copy with {parameters.name}'s values injected; every save sealed as evidence)",
        f"Plain Jupyter, off the record: . {env}, then the notebooks' empty defaults reach PostgreSQL (PG*) and",
        "the Kubernetes API ($KUBECONFIG).",
        "The incidents' times count from the sandbox's start: after about 20 minutes, restart it.",
        "Real-cluster shapes: gateway_namespace = 'ingress-nginx', gateway_selector = "
        "'app.kubernetes.io/name=ingress-nginx' (api-gateway-high-error-rate, triage); namespace = "
        "'autolytiq-data' (pod-oomkilled, triage).",
        f"These runbooks need values their defaults cannot know; headless runs take them from {parameters}.",
        "By hand, paste them into the notebook's parameters cell:",
    ]
    for name, values in runbooks.items():
        lines.append(f"--- {name}")
        lines += [f"{key} = {python_literal(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def python_literal(value: Any) -> str:
    """`repr`, with a mapping's entries one a line."""
    if isinstance(value, dict):
        return "{\n" + "".join(f"    {key!r}: {item!r},\n" for key, item in value.items()) + "}"
    return repr(value)


def wait_for_interrupt() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()

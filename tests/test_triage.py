"""`runbook run triage` and its parts against a real Prometheus and the test Kubernetes API.

Each scenario's series (runbooks_sandbox.prometheus) cover the hour up to the moment the module starts and the
same hour one week earlier (the default baseline, normal everywhere: 100 requests/s, 0.2 % errors, p95 latency
0.15 s), backfilled with promtool into its own Prometheus:
- p2-errors: 12 % of requests fail for the last 20 minutes (latency normal).
- p3-latency: 0.5 % errors throughout; every request twice as slow for the last 20 minutes.
- p1-all-failing: every request fails for the last 10 minutes.
- recovered: 15 % errors from 50 to 40 minutes ago, normal since.
- quiet: normal throughout.
- three-hours: 12 % errors for the last three hours (before the hour triage reads).
- two-days: 12 % errors for the last 30 hours (beyond the 24 hours read back).
"""

from __future__ import annotations

import datetime as dt
import time

import jsonschema
import pandas as pd
import pytest

from runbooks import catalog, prometheus, units
from runbooks.diagnoses import triage
from runbooks.errors import PrometheusQueryError, PrometheusUnreachable
from runbooks.evidence import schema
from runbooks_sandbox.endpoints import closed_port, serve_health
from runbooks_sandbox.prometheus import NORMAL_LATENCY, SLOW_LATENCY, PrometheusServer, Traffic, http_traffic

RUNBOOK = "triage"
NS = "autolytiq-prod"
WEEK = 7 * 86400
DEFAULTS = catalog.find(RUNBOOK).parameters
ERROR_RATE_QUERY = DEFAULTS["error_rate_query"].default
LATENCY_QUERY = DEFAULTS["latency_query"].default
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0cmlhZ2UifQ.c2lnbmF0dXJlLXRyaWFnZS10ZXN0"  # in a gateway error line


def scenarios(now: float) -> dict[str, list[Traffic]]:
    baseline = [Traffic(now - WEEK - 4200, now - WEEK + 600, 100, 0.002, NORMAL_LATENCY)]
    return {
        "p2-errors": [
            *baseline,
            Traffic(now - 4200, now - 1200, 100, 0.002, NORMAL_LATENCY),
            Traffic(now - 1185, now, 100, 0.12, NORMAL_LATENCY),
        ],
        "p3-latency": [
            *baseline,
            Traffic(now - 4200, now - 1200, 100, 0.005, NORMAL_LATENCY),
            Traffic(now - 1185, now, 100, 0.005, SLOW_LATENCY),
        ],
        "p1-all-failing": [
            *baseline,
            Traffic(now - 4200, now - 600, 100, 0.002, NORMAL_LATENCY),
            Traffic(now - 585, now, 100, 1.0, NORMAL_LATENCY),
        ],
        "recovered": [
            *baseline,
            Traffic(now - 4200, now - 3000, 100, 0.002, NORMAL_LATENCY),
            Traffic(now - 2985, now - 2400, 100, 0.15, NORMAL_LATENCY),
            Traffic(now - 2385, now, 100, 0.002, NORMAL_LATENCY),
        ],
        "quiet": [*baseline, Traffic(now - 4200, now, 100, 0.002, NORMAL_LATENCY)],
        "three-hours": [
            *baseline,
            Traffic(now - 5 * 3600, now - 3 * 3600, 100, 0.002, NORMAL_LATENCY),
            Traffic(now - 3 * 3600 + 15, now, 100, 0.12, NORMAL_LATENCY),
        ],
        "two-days": [*baseline, Traffic(now - 30 * 3600, now, 100, 0.12, NORMAL_LATENCY)],
    }


@pytest.fixture(scope="module")
def generated_at() -> float:
    return float(int(time.time()))


@pytest.fixture(scope="module")
def prom(generated_at):
    """Scenario name -> the URL of a Prometheus holding it."""
    servers = {name: PrometheusServer(http_traffic(stretches)) for name, stretches in scenarios(generated_at).items()}
    try:
        yield {name: server.__enter__().url for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)


def metrics_of(url: str) -> triage.MetricSeries:
    return triage.read_metrics(url, ERROR_RATE_QUERY, LATENCY_QUERY, "1w", triage.now())


def quiet_logs() -> triage.GatewayErrors:
    return triage.GatewayErrors(pd.DataFrame(columns=["pod", "container", "instance", "time", "line"]), 0, 0, 0, None)


def no_pods_down() -> triage.PodStatus:
    services = pd.DataFrame(
        [
            {
                "workload": "api-gateway",
                "kind": "Deployment",
                "desired": 2,
                "pods": 2,
                "ready_pods": 2,
                "down": False,
                "critical": True,
            }
        ]
    )
    return triage.PodStatus(pd.DataFrame(), pd.DataFrame(), services)


def triaged(url: str):
    metrics = metrics_of(url)
    start = triage.incident_start("", metrics, quiet_logs())
    measured = triage.measure(metrics, quiet_logs(), no_pods_down(), start)
    return metrics, start, measured, measured.classify()


# --- the scenarios' severity, with the default queries


def test_12_percent_errors_is_p2_by_error_rate(prom, generated_at):
    metrics, start, measured, result = triaged(prom["p2-errors"])
    assert metrics.unavailable is None
    assert result.level == "P2"
    assert result.rule.startswith("error rate >= 10 %")
    assert result.measured["error_rate"] == pytest.approx(0.12, abs=1e-6)
    assert measured.error_rate_source == "prometheus"
    assert measured.latency_ratio == pytest.approx(1.0, abs=0.01)
    # The start: the first minute the 5-minute error rate reached 1 %, within 5 minutes of the change.
    change = dt.datetime.fromtimestamp(generated_at - 1200, dt.timezone.utc)
    assert change <= start.at <= change + dt.timedelta(minutes=5)
    assert start.source == "metrics: error rate first >= 1 % in the last hour"


def test_twice_the_latency_at_half_a_percent_errors_is_p3_by_latency(prom):
    _, _, measured, result = triaged(prom["p3-latency"])
    assert result.level == "P3"
    assert result.rule.startswith("latency >= 1.5x normal")
    assert result.measured["latency_ratio"] == pytest.approx(2.0, abs=0.01)
    assert measured.normal_latency_seconds == pytest.approx(0.15, abs=1e-6)
    assert measured.latency_seconds == pytest.approx(0.30, abs=1e-6)
    assert measured.error_rate == pytest.approx(0.005, abs=0.0005)


def test_all_requests_failing_is_p1(prom):
    _, _, _measured, result = triaged(prom["p1-all-failing"])
    assert result.level == "P1"
    assert "all requests failing" in result.rule
    assert result.measured == {"error_rate": pytest.approx(1.0)}


def test_a_quiet_hour_is_p4_below_every_threshold_and_starts_now(prom):
    metrics, start, _measured, result = triaged(prom["quiet"])
    assert result.level == "P4"
    assert result.rule.startswith("below every P1-P3 threshold")
    assert result.measured["error_rate"] == pytest.approx(0.002, abs=1e-6)
    assert result.measured["latency_ratio"] == pytest.approx(1.0, abs=0.01)
    assert result.unmeasured == ()
    assert start.at == metrics.read_at and start.source.startswith("now")


def test_the_incidents_worst_since_its_start_counts_not_its_latest(prom, generated_at):
    # Errors at 15 % ended 40 minutes ago: from the start found in the metrics, the incident is P2 ...
    metrics = metrics_of(prom["recovered"])
    start = triage.incident_start("", metrics, quiet_logs())
    began = dt.datetime.fromtimestamp(generated_at - 3000, dt.timezone.utc)
    assert began <= start.at <= began + dt.timedelta(minutes=5)
    result = triage.measure(metrics, quiet_logs(), no_pods_down(), start).classify()
    assert (result.level, result.measured) == ("P2", {"error_rate": pytest.approx(0.15, abs=1e-6)})
    # ... while an incident said to start 30 minutes ago (given, here without a zone: UTC) saw only 0.2 %.
    given = dt.datetime.fromtimestamp(generated_at - 1800, dt.timezone.utc)
    start = triage.incident_start(given.replace(tzinfo=None).isoformat(), metrics, quiet_logs())
    assert (start.at, start.source) == (given, "incident_start parameter")
    measured = triage.measure(metrics, quiet_logs(), no_pods_down(), start)
    assert measured.error_rate == pytest.approx(0.002, abs=1e-6) and measured.classify().level == "P4"


def test_an_incident_older_than_the_hour_is_dated_by_reading_further_back(prom, generated_at):
    metrics, start, measured, result = triaged(prom["three-hours"])
    began = dt.datetime.fromtimestamp(generated_at - 3 * 3600, dt.timezone.utc)
    assert metrics.earlier is not None  # the hour began in breach: read back
    assert began <= start.at <= began + dt.timedelta(minutes=10) and not start.at_least
    assert start.source.startswith("metrics: over a threshold since then")
    assert result.level == "P2"
    finding = triage.assess(result, measured, start, metrics, quiet_logs(), no_pods_down(), "")[0]
    assert f"Incident start {units.when(start.at)}" in finding.summary


def test_an_incident_older_than_the_look_back_is_at_least_that_old(prom, generated_at):
    metrics, start, measured, result = triaged(prom["two-days"])
    assert start.at_least and "at least" in start.source
    assert (metrics.read_at - start.at) >= triage.LOOK_BACK + triage.WINDOW - dt.timedelta(minutes=5)
    finding = triage.assess(result, measured, start, metrics, quiet_logs(), no_pods_down(), "")[0]
    assert "Incident start at or before" in finding.summary and finding.data["incident_start_at_least"]
    # The hour as it was read alone would have said "one hour ago": the targets count from the real start.
    assert (metrics.read_at - start.at) > dt.timedelta(hours=24)


@pytest.mark.parametrize(
    "offset, start, tail, message",
    [
        ("1 week", "", 100, "not a Prometheus duration"),
        ("1w", "yesterday", 100, "ISO 8601"),
        ("1w", "", 0, "tail_lines must be at least 1"),
    ],
)
def test_parameters_that_cannot_work_are_refused_in_one_line(offset, start, tail, message):
    with pytest.raises(ValueError, match=message):
        triage.check_parameters(offset, start, tail)
    triage.check_parameters("1d", "2024-11-26T14:05:00Z", 1)


# --- the Prometheus client


def test_range_and_baseline_lie_on_the_same_minutes(prom):
    metrics = metrics_of(prom["p3-latency"])
    series = metrics.series
    assert len(series) == 61 and series.index.tz is not None
    assert series["baseline_latency_seconds"].notna().all()
    assert series["baseline_latency_seconds"].iloc[-1] == pytest.approx(0.15)
    assert series["latency_seconds"].iloc[-1] == pytest.approx(0.30)
    assert series["baseline_error_rate"].iloc[-1] == pytest.approx(0.002)


def test_instant_query_names_each_series_and_an_empty_result_is_an_empty_frame(prom):
    server = prometheus.connect(prom["quiet"])
    by_code = prometheus.query(server, "sum by (code) (rate(http_requests_total[5m]))")
    assert sorted(by_code["series"]) == ['{code="200"}', '{code="503"}']
    assert by_code.set_index("series")["value"].sum() == pytest.approx(100)
    nothing = prometheus.query(server, "http_requests_total{code='999'}")
    assert nothing.empty and list(nothing.columns) == prometheus.COLUMNS


def test_a_refused_query_says_why(prom):
    server = prometheus.connect(prom["quiet"])
    with pytest.raises(PrometheusQueryError, match=r"refused the query 'sum\(rate\(': bad_data"):
        prometheus.query(server, "sum(rate(")


def test_unreachable_or_not_prometheus_is_prometheus_unreachable():
    with pytest.raises(PrometheusUnreachable, match="does not answer"):
        prometheus.connect(f"http://127.0.0.1:{closed_port()}")
    with serve_health(200) as other, pytest.raises(PrometheusUnreachable, match="not Prometheus's API"):
        prometheus.connect(other.url.removesuffix("/health"))
    with pytest.raises(PrometheusUnreachable, match="not a Prometheus URL"):
        prometheus.connect("prometheus:9090")


def test_unreachable_prometheus_is_data_not_an_exception():
    metrics = metrics_of(f"http://127.0.0.1:{closed_port()}")
    assert "does not answer" in metrics.unavailable
    assert metrics.series.empty and metrics.normal_latency is None
    assert metrics_of("").unavailable == "no prometheus_url given"


@pytest.mark.parametrize("text, seconds", [("1w", 7 * 86400), ("1d", 86400), ("90m", 5400), ("1h30m", 5400)])
def test_durations(text, seconds):
    assert prometheus.duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1 week", "w", "1w2", "-1d"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        prometheus.duration(text)


# --- the runbook, run headlessly


def gateway_line_with_a_token(kube_api):
    """One more gateway error line, carrying a bearer token (current logs of the pod replaced)."""
    now = dt.datetime.now(dt.timezone.utc)
    kube_api.set_logs(
        NS,
        "api-gateway-7d9f8b6c5d-q7m4z",
        "gateway",
        current=[
            (
                now - dt.timedelta(minutes=3),
                "level=error method=POST path=/api/v1/auth/token status=502 "
                'upstream=auth-service error="upstream connect error"',
            ),
            (
                now - dt.timedelta(minutes=1),
                f'level=error msg="auth rejected" status=401 authorization="Bearer {TOKEN}"',
            ),
        ],
    )


def test_triage_with_prometheus_declares_p2_by_error_rate_and_changes_nothing(run_runbook, prod, prom):
    gateway_line_with_a_token(prod)
    outcome = run_runbook(RUNBOOK, *prod.runbook_args(NS), "-p", "prometheus_url", prom["p2-errors"])

    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    record = outcome.evidence
    jsonschema.validate(record, schema())
    findings = outcome.findings()
    sev = findings["severity"]["data"]
    assert (sev["severity"], sev["metrics"], sev["error_rate_source"]) == ("P2", "prometheus", "prometheus")
    assert sev["rule"].startswith("error rate >= 10 %")
    assert sev["measured"]["error_rate"] == pytest.approx(0.12, abs=1e-6)
    assert sev["error_rate"] == pytest.approx(0.12, abs=1e-6) and sev["latency_ratio"] == pytest.approx(1.0, abs=0.01)
    started = dt.datetime.fromisoformat(sev["incident_start"])
    assert sev["incident_start_source"].startswith("metrics: error rate first")
    assert findings["severity"]["severity"] == "critical"
    assert "metrics-unavailable" not in findings

    # kubectl get pods: all Running; auth-service's pod restarted (OOMKilled) within the hour.
    assert "all-pods-running" in findings and "pods-down" not in findings
    restarted = findings["pods-restarting"]["data"]["containers"]
    assert [(c["pod"], c["last_termination"]) for c in restarted] == [("auth-service-6b7c9d8f5-k4j2w", "OOMKilled")]
    # kubectl logs -l app=api-gateway --tail=100 | grep -i error: 5 lines of x2k9p, 2 of q7m4z.
    gateway = findings["gateway-errors"]["data"]
    assert (gateway["error_lines"], gateway["five_xx"], gateway["requests"]) == (7, 6, 16)
    assert gateway["pods"] == ["api-gateway-7d9f8b6c5d-q7m4z", "api-gateway-7d9f8b6c5d-x2k9p"]

    # What P2 asks for, counted from the incident's start.
    targets = findings["targets"]["data"]
    assert dt.datetime.fromisoformat(targets["response_due"]) == started + dt.timedelta(minutes=15)
    assert dt.datetime.fromisoformat(targets["resolution_due"]) == started + dt.timedelta(hours=4)
    comms = findings["communication"]["data"]
    assert comms["update_every_minutes"] == 30 and comms["status_page"] is True
    assert (dt.datetime.fromisoformat(comms["next_update"]) - started) % dt.timedelta(minutes=30) == dt.timedelta(0)
    assert findings["engage"]["data"]["engage_now"] == ["Primary On-Call"]  # under 30 minutes in
    assert findings["engage"]["data"]["next"]["role"] == "Secondary On-Call"

    # Drafted, not posted; unknown fields stay placeholders.
    assert record["actions"] == [
        {"id": "declare", "mode": "dry-run", "target": "#incidents / status page", "result": "drafted (not posted)"}
    ]
    notebook = (outcome.evidence_path.parent / record["artifacts"][0]["path"]).read_text()
    assert ":rotating_light: INCIDENT DECLARED :rotating_light:" in notebook
    assert "Severity: P2" in notebook and "error rate 12.0 % (prometheus)" in notebook
    assert "Impact: [What users/features are affected]" in notebook and "Incident Commander: @[name]" in notebook
    assert "Title: Investigating Issues with [Feature/Service]" in notebook
    assert "Some users may experience errors." in notebook

    # Read-only; the token is redacted where shown and written nowhere.
    assert prod.requests and {r.method for r in prod.requests} == {"GET"}
    assert "Bearer [REDACTED]" in notebook
    for path in outcome.evidence_path.parent.iterdir():
        assert TOKEN not in path.read_text(), path.name
    assert TOKEN not in outcome.stdout + outcome.stderr


def test_triage_without_prometheus_says_so_and_rates_the_gateway_logs(run_runbook, prod):
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=40)
    outcome = run_runbook(
        RUNBOOK,
        *prod.runbook_args(NS),
        "-p",
        "prometheus_url",
        f"http://127.0.0.1:{closed_port()}",
        "-p",
        "incident_start",
        started.isoformat(),
    )

    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    findings = outcome.findings()
    assert "does not answer" in findings["metrics-unavailable"]["data"]["reason"]
    sev = findings["severity"]["data"]
    # 6 of the 15 gateway log lines carrying a status are 5xx: 40 % -> P2, from the logs; latency not measured.
    assert (sev["severity"], sev["metrics"]) == ("P2", "unavailable")
    assert (
        sev["error_rate"] == pytest.approx(0.4) and sev["error_rate_source"] == "gateway logs, 15 lines with a status"
    )
    assert sev["latency_ratio"] is None and sev["unmeasured"] == ["latency_ratio"]
    assert dt.datetime.fromisoformat(sev["incident_start"]) == started
    # 40 minutes into a P2: the secondary on-call is engaged, the engineering manager joins at one hour.
    engage = findings["engage"]["data"]
    assert engage["engage_now"] == ["Primary On-Call", "Secondary On-Call"]
    assert (engage["next"]["role"], dt.datetime.fromisoformat(engage["next"]["from"])) == (
        "Engineering Manager",
        started + dt.timedelta(hours=1),
    )


# --- services down (kubectl get pods), against the test API server

TAX_SERVICE_DOWN = {
    "namespace": NS,
    "objects": [
        {
            "kind": "Deployment",
            "metadata": {"name": "tax-service", "labels": {"app": "tax-service"}, "creationTimestamp": {"ago": "30d"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "tax-service"}},
                "template": {
                    "metadata": {"labels": {"app": "tax-service"}},
                    "spec": {"containers": [{"name": "tax", "image": "registry.autolytiq.io/tax:1.0"}]},
                },
            },
        },
        {
            "kind": "ReplicaSet",
            "metadata": {
                "name": "tax-service-5d4c3b2a1",
                "labels": {"app": "tax-service"},
                "ownerReferences": [{"kind": "Deployment", "name": "tax-service"}],
                "creationTimestamp": {"ago": "30d"},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "tax-service"}},
                "template": {
                    "metadata": {"labels": {"app": "tax-service"}},
                    "spec": {"containers": [{"name": "tax", "image": "registry.autolytiq.io/tax:1.0"}]},
                },
            },
        },
        {
            "kind": "Pod",
            "metadata": {
                "name": "tax-service-5d4c3b2a1-zz9x8",
                "labels": {"app": "tax-service"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "tax-service-5d4c3b2a1"}],
                "creationTimestamp": {"ago": "1h"},
            },
            "spec": {"nodeName": "worker-1", "containers": [{"name": "tax", "image": "registry.autolytiq.io/tax:1.0"}]},
            "status": {
                "containerStatuses": [
                    {
                        "name": "tax",
                        "ready": False,
                        "restartCount": 7,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "startedAt": {"ago": "3m"},
                                "finishedAt": {"ago": "2m"},
                            }
                        },
                    }
                ]
            },
        },
    ],
}


@pytest.mark.parametrize(
    "critical, level, rule",
    [
        ([], "P2", "one or more services down"),
        (["tax-service"], "P1", "a critical service down"),
    ],
)
def test_a_deployment_without_a_ready_pod_is_a_service_down(prod, critical, level, rule):
    prod.load(TAX_SERVICE_DOWN)
    cluster = prod.connect(NS)
    now = triage.now()
    pods = triage.pod_status(cluster, critical, now)
    assert list(pods.down["pod"]) == ["tax-service-5d4c3b2a1-zz9x8"]
    services = pods.services.set_index("workload")
    assert services.loc["tax-service", "down"] and not services.loc["auth-service", "down"]
    metrics = triage.read_metrics("", ERROR_RATE_QUERY, LATENCY_QUERY, "1w", now)
    start = triage.incident_start("", metrics, quiet_logs())
    result = triage.measure(metrics, quiet_logs(), pods, start).classify()
    assert (result.level, result.rule.split(" (")[0]) == (level, rule)
    assert list(result.measured.values()) == [["tax-service"]]
    finding = {
        f.id: f
        for f in triage.assess(
            result, triage.measure(metrics, quiet_logs(), pods, start), start, metrics, quiet_logs(), pods, ""
        )
    }["pods-down"]
    assert finding.severity == "critical" and finding.data["services_down"] == ["tax-service"]
    assert finding.data["reasons"]["tax-service-5d4c3b2a1-zz9x8"] == ["CrashLoopBackOff", "Error"]


# --- services that are not Deployments, gateways that are not ours, Prometheus behind auth


def test_a_database_statefulset_without_a_ready_pod_is_a_service_down(kube_api):
    kube_api.load("memory-on-real-clusters")
    cluster = kube_api.connect("autolytiq-data")
    try:
        pods = triage.pod_status(cluster, ["ledger-db"], triage.now())
    finally:
        cluster.api.close()
    services = pods.services.set_index("workload")
    assert services.loc["ledger-db", "kind"] == "StatefulSet" and services.loc["ledger-db", "down"]
    # report-worker's evicted pod is not counted (Failed: replaced), but its replacement cannot be scheduled.
    assert services.loc["report-worker", "down"] and services.loc["report-worker", "pods"] == 1
    assert not services.loc["billing-api", "down"]
    metrics = triage.read_metrics("", ERROR_RATE_QUERY, LATENCY_QUERY, "1w", triage.now())
    start = triage.incident_start("", metrics, quiet_logs())
    result = triage.measure(metrics, quiet_logs(), pods, start).classify()
    assert (result.level, result.measured) == ("P1", {"critical_services_down": ["ledger-db"]})
    assert set(pods.restarting["workload"]) >= {"ledger-db", "checkout", "search-api"}  # sidecars restart too


def test_ingress_nginx_logs_give_the_error_rate_and_a_start_that_may_be_earlier(kube_api):
    kube_api.load("ingress-nginx-5xx")
    cluster = kube_api.connect(NS)
    try:
        log = triage.gateway_errors(cluster, "app.kubernetes.io/name=ingress-nginx", 100, "auto", "ingress-nginx")
        foreign = triage.gateway_errors(cluster, "app.kubernetes.io/name=ingress-nginx", 100, "ours", "ingress-nginx")
    finally:
        cluster.api.close()
    assert log.requests == 100 and 0.3 < log.error_rate < 0.7
    start = triage.incident_start("", triage.read_metrics("", ERROR_RATE_QUERY, LATENCY_QUERY, "1w", triage.now()), log)
    assert start.at == log.first_5xx and start.at_least  # the last 100 lines: the 5xx began then or earlier
    assert foreign.requests == 0  # read as our own format: no line carries a status
    finding = triage.assess(
        triage.Measurements(None, None, None, None, None, None, None, (), ()).classify(),
        triage.Measurements(None, None, None, None, None, None, None, (), ()),
        start,
        triage.read_metrics("", ERROR_RATE_QUERY, LATENCY_QUERY, "1w", triage.now()),
        foreign,
        no_pods_down(),
        "",
    )
    gateway = next(f for f in finding if f.id == "gateway-errors")
    assert gateway.severity == "warning" and "none of the 100 lines carries an HTTP status" in gateway.summary


@pytest.fixture(scope="module")
def guarded_prometheus(generated_at, tmp_path_factory):
    """A Prometheus serving HTTPS with a private CA and asking for basic auth (its own web configuration)."""
    from runbooks_sandbox import endpoints
    from runbooks_sandbox.prometheus import PrometheusServer

    folder = tmp_path_factory.mktemp("guarded")
    ca = endpoints.new_ca("Autolytiq Monitoring CA")
    now = dt.datetime.now(dt.timezone.utc)
    certificate, key = endpoints.leaf(ca, now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    cert_path, key_path, _ = endpoints.write(folder, "prometheus", certificate, key)
    ca_path = endpoints.write_certificate(folder / "ca.pem", ca[0])
    password = "s3cret-pr0metheus"
    (folder / "password").write_text(password + "\n")
    traffic = http_traffic(scenarios(generated_at)["p2-errors"])
    with PrometheusServer(traffic, tls=(cert_path, key_path), users={"oncall": password}, ca_file=ca_path) as server:
        yield server.url, ca_path, folder / "password", password


def test_prometheus_behind_tls_and_basic_auth_is_read_with_ca_and_credentials_file(
    guarded_prometheus, run_runbook, prod
):
    url, ca_file, password_file, password = guarded_prometheus
    auth = prometheus.Auth(str(ca_file), "oncall", str(password_file))
    metrics = triage.read_metrics(url, ERROR_RATE_QUERY, LATENCY_QUERY, "1w", triage.now(), auth)
    assert metrics.unavailable is None and metrics.series["error_rate"].max() == pytest.approx(0.12, abs=1e-6)
    untrusted = triage.read_metrics(url, ERROR_RATE_QUERY, LATENCY_QUERY, "1w", triage.now())
    assert "TLS verification failed (a private CA? set prometheus_ca_file)" in untrusted.unavailable
    anonymous = triage.read_metrics(
        url, ERROR_RATE_QUERY, LATENCY_QUERY, "1w", triage.now(), prometheus.Auth(str(ca_file))
    )
    assert "HTTP 401: not allowed in" in anonymous.unavailable

    outcome = run_runbook(
        RUNBOOK,
        *prod.runbook_args(NS),
        *("-p", "prometheus_url", url, "-p", "prometheus_ca_file", str(ca_file)),
        *("-p", "prometheus_username", "oncall", "-p", "prometheus_credentials_file", str(password_file)),
    )
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.findings()["severity"]["data"]["metrics"] == "prometheus"
    for path in outcome.evidence_path.parent.iterdir():
        assert password not in path.read_text(), path.name


def test_prometheus_behind_a_bearer_token_proxy(prom, tmp_path):
    """kube-rbac-proxy or oauth2-proxy in front: a bearer token, read from a file (e.g. the service account's)."""
    import http.server
    import threading

    import requests

    token = "sa-token-9b8c7d6e5f"
    (tmp_path / "token").write_text(token)
    upstream = prom["p2-errors"]

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != f"Bearer {token}":
                self.send_response(401)
                self.end_headers()
                return
            answer = requests.get(upstream + self.path, timeout=10)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(PrometheusUnreachable, match="HTTP 401"):
            prometheus.connect(url)
        connected = prometheus.connect(url, prometheus.Auth(credentials_file=str(tmp_path / "token")))
        assert prometheus.query(connected, "vector(1)")["value"].tolist() == [1.0]
        assert token not in repr(connected)
    finally:
        server.shutdown()
        server.server_close()


def test_credentials_in_the_prometheus_url_are_refused():
    with pytest.raises(PrometheusUnreachable, match="prometheus_credentials_file"):
        prometheus.connect("https://oncall:hunter2@prometheus.monitoring.svc:9090")

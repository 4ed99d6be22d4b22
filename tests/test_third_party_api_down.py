"""`runbook run third-party-api-down` against the test API server and two health endpoints on loopback.

The scenario `third-party-api-down` (on top of autolytiq-prod): deal-service's calls to the tax-rate API
fail from 12 minutes ago (timeouts, refused connections, 503s; one line carries the API key), the credit
bureau's calls all succeed, the email provider had two timeouts 45 minutes ago. The tax-rate API's
health endpoint answers 503, the credit bureau's 200.
"""

from __future__ import annotations

import datetime as dt
import socket

import jsonschema
import pandas as pd
import pytest
import yaml

from runbooks import health
from runbooks.diagnoses import third_party_api_down as third_party
from runbooks.evidence import schema
from runbooks_sandbox.endpoints import closed_port, serve_health
from runbooks_sandbox.kubeapi.scenario import load_scenario, utcnow

RUNBOOK = "third-party-api-down"
NS = "autolytiq-prod"
API_KEY = "sk_live_tx9f8e7d6c5b4a3928"  # in a tax-rates error line of the scenario
FIRST_ERROR_AGO = dt.timedelta(minutes=12)  # the scenario's first tax-rates error line
DEAL_PODS = ["deal-service-7f6b5c9d8-m4n7q", "deal-service-7f6b5c9d8-t2w8x"]


# --- health endpoints on loopback (runbooks_sandbox.endpoints, which the sandbox serves too)


@pytest.fixture
def endpoints():
    with serve_health(503) as down, serve_health(200) as up:
        yield {"down": down, "up": up}


@pytest.fixture
def incident(kube_api):
    """autolytiq-prod plus the scenario, loaded at a known time: the time the scenario's `ago`s count from."""
    now = utcnow().replace(microsecond=0)
    kube_api.load("autolytiq-prod")
    kube_api.load(load_scenario("third-party-api-down", now=now))
    return now


def dependencies(endpoints) -> dict:
    return {
        "tax-rates": {
            "match": r"taxrates\.example",
            "health_url": endpoints["down"].url,
            "feature": "Deal tax calculation",
        },
        "credit-bureau": {"match": r"creditbureau\.example", "health_url": endpoints["up"].url},
        "email": {"match": r"mailrelay\.example", "health_url": ""},
    }


def minute(when: dt.datetime) -> dt.datetime:
    return when.replace(second=0, microsecond=0)


def run(run_runbook, kube_api, tmp_path, deps: dict, *args: str):
    params = tmp_path / "input" / "params.yaml"
    params.parent.mkdir(exist_ok=True)
    params.write_text(yaml.safe_dump({"dependencies": deps}))
    return run_runbook(RUNBOOK, *kube_api.runbook_args(NS), "-f", str(params), *args)


# --- the runbook, run headlessly


def test_the_down_dependency_is_named_since_its_first_error_and_nothing_is_changed_or_posted(
    run_runbook, kube_api, incident, endpoints, tmp_path
):
    outcome = run(run_runbook, kube_api, tmp_path, dependencies(endpoints))

    assert outcome.exit_code == 0, outcome.stderr
    record = outcome.evidence
    jsonschema.validate(record, schema())
    down = [f for f in record["findings"] if f["id"] == "dependency-down"]
    assert [f["data"]["dependency"] for f in down] == ["tax-rates"]
    data = down[0]["data"]
    assert down[0]["severity"] == "critical" and data["basis"] == "logs and probe"
    assert dt.datetime.fromisoformat(data["since"]) == minute(incident - FIRST_ERROR_AGO)
    assert data["error_counts"] == {
        "timeout": 4,
        "connection refused": 7,
        "connection reset": 0,
        "http 5xx": 16,
        "rate limited": 0,
        "circuit open": 0,
        "dns": 0,
        "tls": 0,
    }
    assert data["probe_status"] == 503 and data["probe_latency_ms"] > 0 and data["probe_error"] is None
    assert data["affected_pods"] == DEAL_PODS and data["affected_services"] == ["deal-service"]

    counts = outcome.findings()["dependency-errors"]["data"]["dependencies"]
    assert counts["credit-bureau"]["status"] == "ok" and counts["credit-bureau"]["errors"] == 0
    assert counts["credit-bureau"]["probe_status"] == 200
    assert counts["email"]["status"] == "recovered" and counts["email"]["errors"] == 2
    assert "no-dependency-down" not in outcome.findings()

    assert record["actions"] == [
        {"id": "communicate", "mode": "dry-run", "target": "status page / #incidents", "result": "drafted (not posted)"}
    ]
    notebook = (outcome.evidence_path.parent / record["artifacts"][0]["path"]).read_text()
    assert "Title: Deal tax calculation Degradation - Cause Identified" in notebook
    assert ":construction: INCIDENT UPDATE :construction:" in notebook

    # Read-only: one GET per health URL, only GETs to the API server.
    assert endpoints["down"].requests == [("GET", "/health")]
    assert endpoints["up"].requests == [("GET", "/health")]
    assert kube_api.requests and {r.method for r in kube_api.requests} == {"GET"}
    # The API key in a log line is shown redacted, and written nowhere.
    assert "api_key=[REDACTED]" in notebook
    written = list(outcome.evidence_path.parent.iterdir())
    assert len(written) == 3
    for path in written:
        assert API_KEY not in path.read_text(), path.name
    assert API_KEY not in outcome.stdout + outcome.stderr


def test_healthy_dependencies_give_an_info_finding_and_no_status_page(
    run_runbook, kube_api, incident, endpoints, tmp_path
):
    deps = {
        "credit-bureau": {"match": r"creditbureau\.example", "health_url": endpoints["up"].url},
        "email": {"match": r"mailrelay\.example", "health_url": ""},
    }
    outcome = run(run_runbook, kube_api, tmp_path, deps, "-p", "service_selector", "tier=backend")

    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()
    assert "dependency-down" not in findings
    assert findings["no-dependency-down"]["severity"] == "info"
    assert findings["dependency-errors"]["data"]["dependencies"]["email"]["status"] == "recovered"
    notebook = (outcome.evidence_path.parent / outcome.evidence["artifacts"][0]["path"]).read_text()
    assert "No status-page message" in notebook and "Cause Identified" not in notebook
    assert outcome.evidence["actions"][0]["result"] == "drafted (not posted)"


# --- the library, through the official client against the test server


@pytest.fixture
def cluster(kube_api, incident):
    return kube_api.connect(NS)


def test_log_errors_count_lines_matching_the_dependency_and_an_error_signature(cluster, incident, endpoints):
    deps = third_party.parse(dependencies(endpoints))
    errors = third_party.log_errors(cluster, deps, "", 60)
    summary = third_party.error_summary(errors, deps).set_index("dependency")

    # deal-service's own 502s ("tax calculation unavailable") do not name the provider: not counted.
    assert summary.loc["tax-rates", "errors"] == 27 and summary.loc["tax-rates", "lines"] == 63
    assert summary.loc["tax-rates", "first_error"] == minute(incident - FIRST_ERROR_AGO)
    # latency_ms=503 is no HTTP 503.
    assert summary.loc["credit-bureau", "errors"] == 0 and summary.loc["credit-bureau", "lines"] == 26
    assert summary.loc["email", "timeout"] == 2 and summary.loc["email", "recent_errors"] == 0

    per_minute = third_party.errors_per_minute(errors, deps)
    assert per_minute["tax-rates"].sum() == 27 and per_minute["credit-bureau"].sum() == 0
    assert per_minute.index.min() <= minute(incident - dt.timedelta(minutes=55))
    first = per_minute.index[per_minute["tax-rates"] > 0].min()
    assert first == minute(incident - FIRST_ERROR_AGO)

    affected = third_party.affected_pods(errors)
    assert set(affected.loc[affected["dependency"] == "tax-rates", "pod"]) == set(DEAL_PODS)
    assert set(affected["service"]) == {"deal-service", "notification-service"}
    shown = third_party.example_lines(errors)
    assert len(shown.lines["tax-rates"]) == 3  # one line each: timeout, connection refused, http 5xx
    assert shown.lines["credit-bureau"] == []
    assert "api_key=[REDACTED]" in shown._repr_markdown_() and API_KEY not in shown._repr_markdown_()


def test_the_selector_limits_which_pods_are_read(cluster, endpoints):
    deps = third_party.parse(dependencies(endpoints))
    errors = third_party.log_errors(cluster, deps, "app=credit-service", 60)
    summary = third_party.error_summary(errors, deps).set_index("dependency")
    assert summary["errors"].sum() == 0 and summary.loc["credit-bureau", "lines"] == 26
    assert summary.loc["tax-rates", "lines"] == 0


def test_no_pod_matching_the_selector_gives_empty_tables_not_errors(cluster, endpoints):
    deps = third_party.parse(dependencies(endpoints))
    errors = third_party.log_errors(cluster, deps, "app=no-such-service", 60)
    summary = third_party.error_summary(errors, deps)
    assert list(summary["dependency"]) == list(dependencies(endpoints)) and summary["lines"].sum() == 0
    per_minute = third_party.errors_per_minute(errors, deps)
    assert list(per_minute.columns) == list(dependencies(endpoints)) and len(per_minute) >= 60
    assert per_minute.to_numpy().sum() == 0
    assert third_party.affected_pods(errors).empty and not any(errors.examples.values())


def test_a_failing_probe_with_succeeding_calls_in_the_logs_is_unconfirmed_not_down(cluster, endpoints):
    deps = third_party.parse({"credit-bureau": {"match": r"creditbureau\.example", "health_url": refused_url()}})
    errors = third_party.log_errors(cluster, deps, "", 60)
    verdict = third_party.verdicts(third_party.error_summary(errors, deps), third_party.probe_all(deps, 2))
    assert verdict.loc[0, "status"] == "unconfirmed" and verdict.loc[0, "probe_failure"] == "refused"
    findings = third_party.assess(verdict, third_party.affected_pods(errors), deps, 60)
    assert [f.id for f in findings] == ["no-dependency-down", "dependency-errors"]


# --- probes


def refused_url() -> str:
    return f"http://127.0.0.1:{closed_port()}/health"


def test_probe_reports_status_and_latency(endpoints):
    down = health.probe(endpoints["down"].url, 2)
    up = health.probe(endpoints["up"].url, 2)
    assert (down.status, down.result, down.failure) == (503, "failing", None)
    assert (up.status, up.result, up.failure) == (200, "up", None)
    assert down.latency_ms > 0 and up.latency_ms > 0


def test_unreachable_urls_are_rows_with_the_reason():
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        deps = third_party.parse(
            {
                "refused": {"match": "x", "health_url": refused_url()},
                "dns": {"match": "x", "health_url": "http://api.taxrates.invalid/health"},
                "timeout": {"match": "x", "health_url": f"http://127.0.0.1:{port}/health"},
                "none": {"match": "x", "health_url": ""},
            }
        )
        probes = third_party.probe_all(deps, 0.3).set_index("dependency")
    assert probes.loc["refused", "failure"] == "refused"
    assert probes.loc["dns", "failure"] == "dns"
    assert probes.loc["timeout", "failure"] == "timeout" and "0.3 s" in probes.loc["timeout", "error"]
    assert probes["status"].isna().all()
    assert list(probes["result"]) == ["failing", "failing", "failing", "not probed"]


def test_a_tls_failure_is_named(endpoints):
    result = health.probe(endpoints["up"].url.replace("http://", "https://"), 2)
    assert result.status is None and result.failure == "tls"


# --- signatures, parameters, drafts


@pytest.mark.parametrize(
    "line, expected",
    [
        ('error="Get \\"https://x\\": context deadline exceeded (Client.Timeout exceeded)"', {"timeout"}),
        ("read tcp 10.0.0.1:5000->192.0.2.1:443: i/o timeout", {"timeout"}),
        ("requests.exceptions.ReadTimeout: HTTPSConnectionPool: Read timed out.", {"timeout"}),
        ("dial tcp 203.0.113.41:443: connect: connection refused", {"connection refused"}),
        ("Error: connect ECONNREFUSED 203.0.113.41:443", {"connection refused"}),
        ('status=503 body="Service Unavailable"', {"http 5xx"}),
        ("HTTP/1.1 502 Bad Gateway", {"http 5xx"}),
        ('{"statusCode":504,"msg":"upstream"}', {"http 5xx"}),
        ("Gateway Timeout from provider", {"http 5xx", "timeout"}),
        ("dial tcp: lookup api.taxrates.example on 10.96.0.10:53: no such host", {"dns"}),
        ("getaddrinfo ENOTFOUND api.taxrates.example", {"dns"}),
        ("[Errno -2] Name or service not known", {"dns"}),
        ("x509: certificate signed by unknown authority", {"tls"}),
        ("SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED]'))", {"tls"}),
        ("status=200 latency_ms=503", set()),
        ("status=200 latency_ms=84 tokens=502", set()),
        ('got status 500 from https://api.taxrates.example: "Internal Server Error"', {"http 5xx"}),
        ("response status=429 Too Many Requests retry-after=30", {"rate limited"}),
        ("read tcp 10.0.0.4:51234->203.0.113.41:443: read: connection reset by peer", {"connection reset"}),
        ("Error: socket hang up (ECONNRESET)", {"connection reset"}),
        ("CircuitBreaker 'taxrates' is OPEN and does not permit further calls", {"circuit open"}),
        ("io.github.resilience4j.circuitbreaker.CallNotPermittedException: taxrates", {"circuit open"}),
    ],
)
def test_error_signatures(line, expected):
    import re

    found = {name for name, regex in third_party.ERROR_SIGNATURES.items() if re.search(regex, line, re.IGNORECASE)}
    assert found == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"health_url": "http://x"}, "'match'"),
        ({"match": "a("}, "not a regex"),
        ({"match": "a", "health_url": "file:///etc/passwd"}, "http:// or https://"),
        ({"match": "a", "url": "http://x"}, "unknown keys"),
        ("taxrates", "'match'"),
    ],
)
def test_parse_rejects_malformed_dependencies(spec, message):
    with pytest.raises(ValueError, match=message):
        third_party.parse({"tax-rates": spec})


def test_drafts_fill_the_runbook_document_templates_from_the_findings():
    since = dt.datetime(2024, 11, 26, 14, 2, tzinfo=dt.timezone.utc)
    now = since + dt.timedelta(minutes=14)
    verdict = pd.DataFrame(
        [
            {
                "dependency": "tax-rates",
                "status": "down",
                "basis": "logs and probe",
                "lines": 40,
                "errors": 30,
                "timeout": 10,
                "connection refused": 5,
                "connection reset": 0,
                "http 5xx": 15,
                "rate limited": 0,
                "circuit open": 0,
                "dns": 0,
                "tls": 0,
                "first_error": pd.Timestamp(since),
                "last_error": pd.Timestamp(now),
                "recent_lines": 20,
                "recent_errors": 20,
                "pods": ["deal-service-a"],
                "health_url": "https://api.taxrates.example/v2/health",
                "probe_status": 503,
                "probe_latency_ms": 12.5,
                "probe": "failing",
                "probe_failure": None,
                "probe_error": None,
            }
        ]
    )
    affected = pd.DataFrame(
        [
            {
                "dependency": "tax-rates",
                "service": "deal-service",
                "pod": "deal-service-a",
                "container": "deal-service",
                "errors": 30,
                "first_error": since,
                "last_error": now,
            }
        ]
    )
    deps = third_party.parse({"tax-rates": {"match": "taxrates", "feature": "Deal tax calculation"}})
    drafts = third_party.drafts(third_party.assess(verdict, affected, deps, 60), now=now)

    assert drafts.status_page.startswith("Title: Deal tax calculation Degradation - Cause Identified\n")
    assert "Impact: Since 2024-11-26 09:02 EST, Deal tax calculation may fail" in drafts.status_page
    assert "Updated: 2024-11-26 09:16 EST" in drafts.status_page
    assert "Severity: P2\nDuration: 14 minutes\n\nCurrent Status: Identified" in drafts.slack
    assert "- tax-rates is down (logs and probe): 30 error lines since 09:02 EST" in drafts.slack
    assert "Next Update: 09:46 EST (in 30 minutes)" in drafts.slack
    assert any("fallback or cache for tax-rates" in item for item in drafts.checklist)
    assert any("contact its support" in item and "503" in item for item in drafts.checklist)
    assert "[" not in drafts.slack.replace(
        "[REDACTED]", ""
    )  # every placeholder of the incident-response runbook filled
    assert drafts.action.mode == "dry-run" and drafts.action.result == "drafted (not posted)"


# --- what real providers and services say


STATUSPAGE = {
    "page": {"id": "kctbh9vrtdwd", "name": "Tax Rates API", "url": "https://status.taxrates.example"},
    "status": {"indicator": "major", "description": "Partial System Outage"},
}


@pytest.mark.parametrize(
    "status, body, result",
    [
        (200, {**STATUSPAGE, "status": {"indicator": "major", "description": "Partial System Outage"}}, "failing"),
        (200, {**STATUSPAGE, "status": {"indicator": "critical", "description": "Major Service Outage"}}, "failing"),
        (200, {**STATUSPAGE, "status": {"indicator": "minor", "description": "Minor Service Outage"}}, "degraded"),
        (200, {**STATUSPAGE, "status": {"indicator": "none", "description": "All Systems Operational"}}, "up"),
        (429, None, "degraded"),
        (401, None, "unknown"),
        (403, None, "unknown"),
        (200, {"status": "ok"}, "up"),
    ],
)
def test_a_status_page_answers_200_and_says_how_it_is_in_its_body(status, body, result):
    import json

    from runbooks import health

    with serve_health(status, json.dumps(body) if body else None) as endpoint:
        probe = health.probe(endpoint.url.replace("/health", "/api/v2/status.json"), 5)
    assert probe.status == status and probe.result == result
    if body and isinstance(body.get("status"), dict):
        assert probe.indicator == body["status"]["indicator"]


def summary_row(**values):
    row = {
        "lines": 0,
        "errors": 0,
        "recent_lines": 0,
        "recent_errors": 0,
        "recent_circuit_open": 0,
        "probe": "not probed",
        "probe_status": None,
        "probe_page": None,
    }
    return {**row, **values}


@pytest.mark.parametrize(
    "row, verdict",
    [
        # Every line about it is an error: the service logs failures only, the share failing is unknown.
        (summary_row(lines=12, errors=12, recent_lines=8, recent_errors=8), ("degraded", "logs: errors only")),
        # The same with a failing probe: down.
        (
            summary_row(lines=12, errors=12, recent_lines=8, recent_errors=8, probe="failing"),
            ("down", "logs and probe"),
        ),
        # Successes logged earlier in the window: the share means something.
        (summary_row(lines=40, errors=12, recent_lines=8, recent_errors=8), ("down", "logs")),
        # The breaker opened: calls stopped, its lines are the errors.
        (
            summary_row(lines=9, errors=9, recent_lines=5, recent_errors=5, recent_circuit_open=4),
            ("down", "circuit breaker open"),
        ),
        # The status page says major, the logs say nothing recent.
        (summary_row(lines=30, errors=0, recent_lines=0, probe="failing", probe_status=200), ("down", "probe")),
        (summary_row(lines=30, errors=0, recent_lines=6, probe="degraded", probe_status=429), ("degraded", "probe")),
        (
            summary_row(lines=30, errors=0, recent_lines=6, probe="unknown", probe_status=403),
            ("ok", "probe not let in"),
        ),
    ],
)
def test_verdicts_do_not_overstate_what_logs_and_probes_cannot_see(row, verdict):
    status, basis = third_party._judge(row)
    assert status == verdict[0] and basis.startswith(verdict[1])


def test_an_open_circuit_breaker_is_not_recovery(kube_api, incident):
    """After the timeouts the breaker opens: calls stop, timeouts stop, only 'circuit open' lines remain."""
    now = dt.datetime.now(dt.timezone.utc)
    url = "url=https://api.taxrates.example/v2/rates"
    lines = [(now - dt.timedelta(minutes=20 - i), f"tax rate lookup status=200 {url}") for i in range(5)]
    lines += [
        (now - dt.timedelta(minutes=14) + dt.timedelta(seconds=10 * i), f"context deadline exceeded {url}")
        for i in range(4)
    ]
    lines += [
        (
            now - dt.timedelta(minutes=8) + dt.timedelta(minutes=i),
            f"CircuitBreaker 'taxrates' is OPEN: not calling {url}",
        )
        for i in range(7)
    ]
    kube_api.set_logs(NS, DEAL_PODS[0], "deal-service", current=lines)
    kube_api.set_logs(NS, DEAL_PODS[1], "deal-service", current=[])
    cluster = kube_api.connect(NS)
    try:
        deps = third_party.parse({"tax-rates": {"match": r"taxrates\.example"}})
        errors = third_party.log_errors(cluster, deps, "app=deal-service", 60)
    finally:
        cluster.api.close()
    summary = third_party.error_summary(errors, deps)
    assert summary.loc[0, "circuit open"] == 7 and summary.loc[0, "recent_circuit_open"] >= 5
    [row] = third_party.verdicts(summary, third_party.probe_all(deps, 5)).to_dict("records")
    assert (row["status"], row["basis"]) == ("down", "logs")  # not "recovered": the calls stopped, not the failures

"""`verify-recovery` (Phase 4, Confirm Fix) against a real Prometheus, and inside an incident triage opened.

Each scenario's traffic (runbooks_sandbox.prometheus) covers the hour up to the moment the module starts (and ten
minutes more, so "now" keeps its readings while the tests run), and the same span one week earlier, normal
(100 requests/s, 0.2 % errors, p95 0.15 s):
- recovered: 15 % errors from 50 to 40 minutes ago, normal since.
- failing: 12 % errors for the last 20 minutes, still.
- recovering: 12 % errors from 30 to 8 minutes ago: the latest readings are normal, the last 15 minutes are not.
- slow: 0.5 % errors, twice the latency for the last 20 minutes.
"""

from __future__ import annotations

import datetime as dt
import time

import jsonschema
import pytest

from runbooks import catalog
from runbooks.diagnoses import verify_recovery as diagnosis
from runbooks.evidence import schema
from runbooks_sandbox.endpoints import closed_port
from runbooks_sandbox.prometheus import NORMAL_LATENCY, SLOW_LATENCY, PrometheusServer, Traffic, http_traffic

RUNBOOK = "verify-recovery"
WEEK = 7 * 86400
AHEAD = 600
DEFAULTS = catalog.find(RUNBOOK).parameters
ERROR_RATE_QUERY = DEFAULTS["error_rate_query"].default
LATENCY_QUERY = DEFAULTS["latency_query"].default


def scenarios(now: float) -> dict[str, list[Traffic]]:
    baseline = [Traffic(now - WEEK - 4200, now - WEEK + AHEAD, 100, 0.002, NORMAL_LATENCY)]

    def normal(start, end):
        return Traffic(start, end, 100, 0.002, NORMAL_LATENCY)

    return {
        "recovered": [
            *baseline,
            normal(now - 4200, now - 3000),
            Traffic(now - 2985, now - 2400, 100, 0.15, NORMAL_LATENCY),
            normal(now - 2385, now + AHEAD),
        ],
        "failing": [
            *baseline,
            normal(now - 4200, now - 1200),
            Traffic(now - 1185, now + AHEAD, 100, 0.12, NORMAL_LATENCY),
        ],
        "recovering": [
            *baseline,
            normal(now - 4200, now - 1800),
            Traffic(now - 1785, now - 480, 100, 0.12, NORMAL_LATENCY),
            normal(now - 465, now + AHEAD),
        ],
        "slow": [
            *baseline,
            Traffic(now - 4200, now - 1200, 100, 0.005, NORMAL_LATENCY),
            Traffic(now - 1185, now + AHEAD, 100, 0.005, SLOW_LATENCY),
        ],
    }


@pytest.fixture(scope="module")
def generated_at() -> float:
    return float(int(time.time()))


@pytest.fixture(scope="module")
def prom(generated_at):
    """Scenario name -> the URL of a Prometheus holding it."""
    servers = {name: PrometheusServer(http_traffic(s)) for name, s in scenarios(generated_at).items()}
    try:
        yield {name: server.__enter__().url for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)


def decided(url: str, folder, watch_minutes: float = 15) -> diagnosis.Recovery:
    ctx = diagnosis.context(str(folder), "")
    window = diagnosis.watch(url, ERROR_RATE_QUERY, watch_minutes, ctx, wait=False)
    metrics = diagnosis.read(url, ERROR_RATE_QUERY, LATENCY_QUERY, "1w", ctx, window)
    return diagnosis.decide(metrics, ctx, "1w")


# --- the decision


def test_recovered_when_every_reading_of_the_last_15_minutes_is_below_the_p3_thresholds(prom, tmp_path):
    recovery = decided(prom["recovered"], tmp_path)
    data = recovery.data
    assert recovery.status == "recovered" and recovery.finding().severity == "info"
    assert data["readings"] >= 15 and data["last_over"] is None
    assert data["max_error_rate"] == pytest.approx(0.002, abs=1e-6)
    assert data["baseline_error_rate"] == pytest.approx(0.002, abs=1e-6)
    assert data["normal_latency_seconds"] == pytest.approx(0.15, abs=1e-6)  # the week earlier's median
    assert data["max_latency_ratio"] == pytest.approx(1.0, abs=0.01)
    assert data["incident"] is None and data["mitigated_at"] is None  # no incident in that folder
    assert recovery.summary.startswith("Recovered: over the last 15 min")


def test_still_failing_is_not_recovered(prom, tmp_path):
    recovery = decided(prom["failing"], tmp_path)
    assert recovery.status == "not-recovered" and recovery.finding().severity == "critical"
    assert recovery.data["recovering"] is False
    assert recovery.data["max_error_rate"] == pytest.approx(0.12, abs=1e-6)
    assert recovery.data["last_over"]["what"].startswith("error rate 12.00 % >= 1 %")
    assert "still at the latest reading" in recovery.summary


def test_errors_that_ended_8_minutes_ago_are_recovering_but_not_yet_recovered(prom, tmp_path):
    recovery = decided(prom["recovering"], tmp_path)
    assert recovery.status == "not-recovered"
    assert recovery.data["recovering"] is True
    assert recovery.data["last_error_rate"] == pytest.approx(0.002, abs=1e-6)
    assert "recovering, not yet stable" in recovery.summary
    # Watched for 5 minutes only, the same readings are all below the thresholds.
    assert decided(prom["recovering"], tmp_path, watch_minutes=3).status == "recovered"


def test_latency_over_1_5x_normal_is_not_recovered_even_at_half_a_percent_errors(prom, tmp_path):
    recovery = decided(prom["slow"], tmp_path)
    assert recovery.status == "not-recovered"
    assert recovery.data["max_error_rate"] < 0.01
    assert recovery.data["max_latency_ratio"] == pytest.approx(2.0, abs=0.01)
    assert "latency 2.00x normal >= 1.5x" in recovery.data["last_over"]["what"]


@pytest.mark.parametrize("url", ["", "closed"])
def test_without_metrics_recovery_is_unknown(url, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}" if url == "closed" else url
    recovery = decided(url, tmp_path)
    assert recovery.status == "unknown" and recovery.finding().severity == "warning"
    assert recovery.data["readings"] == 0 and recovery.data["reason"]
    assert "no metrics" in recovery.summary


def test_wait_keeps_watching_until_watch_minutes_after_the_mitigation_and_shows_progress(prom, tmp_path):
    mitigated = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    ctx = diagnosis.context(str(tmp_path), mitigated.isoformat())
    shown: list[str] = []
    window = diagnosis.watch(prom["recovered"], ERROR_RATE_QUERY, 0.1, ctx, wait=True, show=shown.append)
    assert window.end >= mitigated + dt.timedelta(seconds=6)  # 0.1 minutes after the mitigation, not before
    assert window.start == window.end - dt.timedelta(seconds=6)
    assert shown[0].startswith("watching since") and "(the mitigation)" in shown[0]
    assert "error rate now 0.20 %" in shown[0]
    assert shown[-1].startswith("watched 0.1 min since")


@pytest.mark.parametrize(
    "minutes, mitigated, message",
    [(0, "", "watch_minutes must be more than 0"), (15, "after the fix", "ISO 8601"), (121, "", "at most 120")],
)
def test_parameters_that_cannot_work_are_refused_in_one_line(minutes, mitigated, message):
    with pytest.raises(ValueError, match=message):
        diagnosis.check_parameters(minutes, "1w", mitigated)


# --- the notebook, inside an incident


def test_in_an_incident_it_reads_triages_start_waits_decides_and_drafts_the_resolution(run_runbook, prod, prom):
    # Triage opens the incident on the same traffic: P2, started 50 minutes ago.
    triage = run_runbook(
        "triage",
        *prod.runbook_args("autolytiq-prod"),
        "--incident",
        "INC-88",
        "-p",
        "prometheus_url",
        prom["recovered"],
    )
    assert triage.exit_code == 0, triage.stderr
    started = dt.datetime.fromisoformat(triage.findings()["severity"]["data"]["incident_start"])

    outcome = run_runbook(
        RUNBOOK,
        "--incident",
        "INC-88",
        "-p",
        "prometheus_url",
        prom["recovered"],
        "-p",
        "wait",
        "true",
        "-p",
        "watch_minutes",
        "0.1",
    )
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    record = outcome.evidence
    jsonschema.validate(record, schema())
    recovery = outcome.findings()["recovery"]
    data = recovery["data"]
    assert (data["status"], data["incident"]) == ("recovered", "INC-88")
    assert data["watched_since"].startswith("from the start of watching")  # no action applied: from when it began
    assert data["waited_seconds"] >= 6
    # The series cover the incident from triage's start, for the report's chart.
    times = [dt.datetime.fromisoformat(row["time"]) for row in data["series"]]
    assert min(times) <= started + dt.timedelta(minutes=1) and max(times) >= started + dt.timedelta(minutes=45)
    assert max(row["error_rate"] for row in data["series"] if row["error_rate"] is not None) == pytest.approx(0.15)

    notebook = (outcome.evidence_path.parent / record["artifacts"][0]["path"]).read_text()
    assert "watching since" in notebook  # the progress the wait showed
    assert ":white_check_mark: INCIDENT RESOLVED :white_check_mark:" in notebook
    assert "Incident: INC-88" in notebook and "Severity: P2" in notebook
    assert "Error rate during incident: 15.0 %" in notebook
    assert "Title: [Feature/Service] Issues Resolved" in notebook
    assert record["actions"] == [
        {
            "id": "resolve-messages",
            "mode": "dry-run",
            "target": "#incidents / status page",
            "result": "drafted (not posted)",
        }
    ]


def test_not_recovered_drafts_nothing(run_runbook, prom):
    outcome = run_runbook(RUNBOOK, "--incident", "INC-89", "-p", "prometheus_url", prom["failing"])
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.findings()["recovery"]["data"]["status"] == "not-recovered"
    assert outcome.evidence["actions"] == []
    notebook = (outcome.evidence_path.parent / outcome.evidence["artifacts"][0]["path"]).read_text()
    assert "No resolution messages: recovery is not-recovered" in notebook

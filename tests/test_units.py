"""Units and zones people read: in tables, findings, the terminal and the messages; machine fields stay UTC."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from runbooks import display, units
from runbooks.evidence import Record
from runbooks.incident import Incident, Run, message_fields, what_we_know

RUNBOOK = str(Path(sys.executable).parent / "runbook")
T = dt.datetime(2026, 11, 30, 14, 5, tzinfo=dt.timezone.utc)


def test_values_as_people_read_them(monkeypatch):
    monkeypatch.delenv("RUNBOOK_TIMEZONE", raising=False)
    assert units.memory(258998272) == "247Mi" and units.memory(2**30) == "1.0Gi" and units.memory(512) == "512 B"
    assert units.percent(0.965) == "96.5 %" and units.percent(None) == "none"
    assert units.duration(dt.timedelta(seconds=42)) == "42 s" and units.duration(dt.timedelta(hours=2, minutes=5)) == (
        "2 h 05 min"
    )
    assert units.due(dt.timedelta(minutes=-5)) == "5 min overdue" and units.due(dt.timedelta(minutes=12)) == "in 12 min"
    assert units.count(1, "restart") == "1 restart" and units.count(3, "restart") == "3 restarts"
    assert units.number(137.0) == "137" and units.number(float("nan")) == "none"
    assert units.when(T) == "2026-11-30 09:05 EST"  # unset: US Eastern, the runbook document's zone
    monkeypatch.setenv("RUNBOOK_TIMEZONE", "Europe/Berlin")
    assert units.when(T, seconds=True) == "2026-11-30 15:05:00 CET" and units.clock(T) == "15:05 CET"


def test_a_table_reads_in_units_and_keeps_its_data(monkeypatch):
    monkeypatch.setenv("RUNBOOK_TIMEZONE", "UTC")
    frame = pd.DataFrame(
        {
            "pod": ["a", "b"],
            "memory_usage": [258998272.0, float("nan")],
            "memory_pct_of_limit": [96.5, 12.0],
            "exit_code": [137.0, float("nan")],
            "last_seen": pd.to_datetime(["2026-11-30T14:05:00Z", None], utc=True),
            "left": [dt.timedelta(minutes=-5), dt.timedelta(minutes=30)],
            "gone": [None, None],
            "field": ["spec.template.spec.containers[auth-service].resources.limits.memory", "x"],
        }
    )
    display.table(frame, left="due")
    shown = display.readable(frame)
    assert "gone" not in shown.columns  # a column with nothing in it is dropped
    assert shown.iloc[0].tolist() == [
        "a",
        "247Mi",
        "96.5 %",
        "137",
        "2026-11-30 14:05:00 UTC",
        "5 min overdue",
        "spec.template.spec.containers[auth-service].resources.limits.memory",
    ]
    assert shown.iloc[1].tolist()[1:6] == ["none", "12.0 %", "none", "none", "in 30 min"]
    assert frame["memory_usage"].iloc[0] == 258998272.0  # the data is untouched
    html = display.frame_html(frame)
    assert "resources.limits.memory</td>" in html and "..." not in html and "NaN" not in html
    empty = display.table(frame.iloc[0:0], empty="No container restarted: nothing to do.")
    assert "<em>No container restarted: nothing to do.</em>" in display.frame_html(empty)


def test_findings_and_the_terminal_take_the_zone_and_machine_fields_stay_utc(kube_api, tmp_path):
    kube_api.load("jwt-secret-rotated")
    params = tmp_path / "compare.yaml"
    params.write_text(yaml.safe_dump({"compare_namespaces": ["autolytiq-batch"]}))
    args = [*kube_api.runbook_args("autolytiq-prod"), "-f", str(params), "--output-dir", str(tmp_path / "out")]
    result = subprocess.run(
        [RUNBOOK, "run", "jwt-validation-failures", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RUNBOOK_TIMEZONE": "Asia/Tokyo"},
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(Path(result.stdout.splitlines()[-1]).read_text())
    stale = next(f for f in record["findings"] if f["id"] == "stale-pods")
    assert " JST)" in stale["summary"] and "UTC" not in stale["summary"]  # people read Tokyo time
    assert record["started_at"].endswith("Z") and record["finished_at"].endswith("Z")  # machines read UTC
    assert " JST, took " in result.stdout.splitlines()[0]


def _incident(findings: list[dict], folder: Path) -> Incident:
    record = Record("triage", "INC-5", T, T, "completed", None, {}, tuple(findings), (), (), {}, None)
    triage = next((f["data"] for f in findings if f["id"] == "severity"), None)
    return Incident("INC-5", folder, (Run("x.evidence.json", record),), (triage,) if triage else (), None)


def test_the_slack_update_lists_what_matters_most_and_links_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_TIMEZONE", "Europe/Berlin")
    findings = [
        {"id": "severity", "summary": "P2 by rule x (P2: 'Error rate > 10%')", "severity": "critical"}
        | {"data": {"severity": "P2", "error_rate": 0.12, "latency_ratio": 2.0}},
        {"id": "targets", "summary": "P2: respond by ...; overdue: response", "severity": "warning", "data": {}},
        *(
            {"id": f"w{n}", "summary": f"warning {n}. Detail nobody needs", "severity": "warning", "data": {}}
            for n in range(4)
        ),
        {"id": "c1", "summary": "the critical one", "severity": "critical", "data": {}},
        {"id": "i1", "summary": "all fine here", "severity": "info", "data": {}},
    ]
    known = what_we_know(_incident(findings, tmp_path), "https://runbooks.internal/incidents/INC-5")
    assert known == [
        "Severity P2: error rate 12.0 %, latency 2.0x normal",
        "the critical one",
        "warning 0",
        "warning 1",
        "warning 2",
        "1 more finding: https://runbooks.internal/incidents/INC-5",
    ]
    fields = message_fields(_incident(findings, tmp_path), "status-identified", T)
    assert fields["updated"] == "2026-11-30 15:05 CET"  # the status page in the chosen zone, with it


@pytest.mark.parametrize("kind", ["slack-declared", "slack-update"])
def test_slack_times_carry_their_zone(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_TIMEZONE", "UTC")
    sev = {"id": "severity", "summary": "P2", "severity": "critical"}
    sev["data"] = {"severity": "P2", "error_rate": 0.2, "incident_start": T.isoformat()}
    incident = _incident([sev], tmp_path)
    incident = Incident(incident.id, tmp_path, incident.runs, incident.triage, T)
    fields = message_fields(incident, kind, T + dt.timedelta(minutes=10))
    assert fields["next_update"] == "14:35 UTC (Every 30 minutes until resolved)"

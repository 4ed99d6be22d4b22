"""What `runbook` prints to a person: through a terminal (a pseudo-terminal: colour, its width) and through a pipe
(plain text), the run's summary before the evidence path; `list`, `show`, `incidents`, `show-incident`."""

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from runbooks import catalog

RUNBOOK = str(Path(sys.executable).parent / "runbook")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NS = "autolytiq-prod"


def runbook(*args, env=None):
    return subprocess.run(
        [RUNBOOK, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def through_a_terminal(args, columns):
    """Run `runbook ARGS` with its stdout on a pseudo-terminal `columns` wide; (exit code, what it printed)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    process = subprocess.Popen([RUNBOOK, *args], stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            process.kill()
            raise AssertionError("no output for 120 s")
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    process.wait(timeout=60)
    return process.returncode, output.decode().replace("\r\n", "\n")


def test_run_through_a_pipe_prints_plain_text_then_the_evidence_path(prod, tmp_path):
    result = runbook(
        "run", "pod-oomkilled", *prod.runbook_args(NS), "--output-dir", str(tmp_path), "--incident", "INC-9"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    evidence_path = Path(lines[-1])
    record = json.loads(evidence_path.read_text())
    assert not ANSI.search(result.stdout)  # plain text for a pipe
    assert lines[0].startswith("completed: pod-oomkilled (INC-9), started ")
    assert f"Looked at Kubernetes: context test ({prod.url}), namespace {NS}" in lines
    assert "Findings: 1 critical, 1 warning, 2 info" in lines
    for finding in record["findings"]:  # every finding, with its severity, in severity order
        assert any(line.split()[:1] == [finding["severity"]] and finding["summary"] in line for line in lines)
    severities = [
        line.split()[0] for line in lines if line.startswith("  ") and line.split()[0] in ("critical", "info")
    ]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)
    assert "Actions: 1 previewed, nothing changed (apply=True does them)" in lines
    assert any(
        line.startswith("  previewed  set-memory on deployment/auth-service in autolytiq-prod") for line in lines
    )
    assert f"HTML: {evidence_path.with_suffix('').with_suffix('.html')}" in lines[-3:]
    assert "password" not in result.stdout.lower()


def test_run_through_a_terminal_is_coloured_and_fits_its_width(prod, tmp_path):
    code, printed = through_a_terminal(
        ["run", "pod-oomkilled", *prod.runbook_args(NS), "--output-dir", str(tmp_path), "-p", "apply", "true"], 72
    )
    assert code == 0
    plain = ANSI.sub("", printed)
    lines = [line for line in plain.splitlines() if line and "%" not in line[:5]]  # the progress bar's lines aside
    start = lines.index(next(line for line in lines if line.startswith("completed: ")))
    end = lines.index(next(line for line in lines if line.startswith("HTML: ")))
    summary = lines[start : end + 1]
    assert "\x1b[31m" in printed and "critical" in ANSI.sub("", printed)  # red critical
    too_long = [line for line in summary[:-1] if len(line) > 72 and len(line.split()) > 1]  # words are never cut
    assert not too_long
    assert "Actions: 1 applied, 0 previewed" in summary
    assert any(re.match(r"  applied +set-memory on deployment/auth-service", line) for line in summary)
    assert summary[-1].startswith("HTML: /") and summary[-1].endswith(".html")  # paths are never wrapped
    assert Path(lines[-1]).name.endswith("-pod-oomkilled.evidence.json")


def test_a_typed_value_is_checked_before_any_kernel_starts(tmp_path):
    result = runbook("run", "triage", "-p", "incident_start", "10:45", "--output-dir", str(tmp_path))
    assert result.returncode == 2 and not list(tmp_path.iterdir())
    assert "parameter 'incident_start' takes a time, ISO 8601" in result.stderr
    assert re.search(r"got '10:45': e\.g\. \d{4}-\d\d-\d\dT10:45:00Z", result.stderr)
    for args, message in [
        (["run", "triage", "-p", "baseline_offset", "a week"], "takes a Prometheus duration"),
        (["run", "pod-oomkilled", "-p", "memory_limit", "1 GB"], "takes a memory quantity"),
        (["run", "verify-recovery", "-p", "mitigated_at", "yesterday"], "takes a time"),
    ]:
        result = runbook(*args, "--output-dir", str(tmp_path))
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_every_kind_is_declared_in_a_parameters_cell_and_checked():
    kinds = {(b.name, p.name): p.kind for b in catalog.runbooks() for p in b.parameters.values() if p.kind}
    assert kinds[("triage", "incident_start")] == "Time"
    assert kinds[("verify-recovery", "mitigated_at")] == "Time"
    assert kinds[("pod-oomkilled", "memory_limit")] == "Memory"
    assert {kinds[(b, "baseline_offset")] for b in ("triage", "service-investigation", "verify-recovery")} == {
        "PromDuration"
    }
    book = catalog.find("triage")
    assert book.resolve({"incident_start": "2026-11-30T10:45:00Z", "baseline_offset": "1d12h"})["baseline_offset"]
    assert book.from_cli((("incident_start", "10:45"),)) == {"incident_start": "10:45"}  # as typed, not 645


def test_list_fits_80_columns_and_says_what_can_change_anything():
    result = runbook("list")
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and all(len(line) <= 80 for line in lines)
    assert lines[0].split() == ["RUNBOOK", "CHANGES", "TITLE"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:] if line[:1].strip()}
    assert rows["db-connection-pool-exhausted"] == "yes" and rows["triage"] == "no"
    assert set(rows) >= {"pod-oomkilled", "oncall-handoff", "verify-recovery"}


def test_show_speaks_in_words_and_help_is_whole():
    shown = runbook("show", "db-slow-queries").stdout
    assert "cancel_longer_than_seconds: a number or empty (null); default empty" in shown
    assert "Optional[" not in shown and "(float" not in shown
    assert "incident_start: a time, ISO 8601" in runbook("show", "triage").stdout
    assert "apply" not in runbook("show", "triage").stdout.split("alerts routed")[1]  # no parameter without effect
    top = runbook("-h")
    commands = top.stdout.split("Commands:")[1]
    assert top.returncode == 0 and "..." not in commands and "show-incident" in commands
    assert runbook("--version").stdout.strip() == "runbook 0.1.0"
    assert "_RUNBOOK_COMPLETE=bash_source runbook" in top.stdout
    completion = subprocess.run(
        [RUNBOOK],
        env={**os.environ, "_RUNBOOK_COMPLETE": "bash_complete", "COMP_WORDS": "runbook show db-", "COMP_CWORD": "2"},
        capture_output=True,
        text=True,
    )
    assert "plain,db-connection-pool-exhausted" in completion.stdout and "plain,db-slow-queries" in completion.stdout


def test_env_takes_only_environment_files(tmp_path):
    result = runbook("run", "triage", "--env", "alerts", "--output-dir", str(tmp_path))
    assert result.returncode == 2 and "not an environment (known: prod" in result.stderr
    assert "integrations" not in result.stderr


def test_a_bad_zone_setting_is_refused_at_once():
    result = runbook("list", env={"RUNBOOK_TIMEZONE": "Mars/Olympus"})
    assert result.returncode == 2 and "RUNBOOK_TIMEZONE='Mars/Olympus' names no time zone" in result.stderr


@pytest.fixture
def two_incidents(prod, tmp_path):
    for incident in ("INC-1", "INC-2"):
        result = runbook(
            "run", "pod-oomkilled", *prod.runbook_args(NS), "--output-dir", str(tmp_path), "--incident", incident
        )
        assert result.returncode == 0, result.stderr
    return tmp_path


def test_incidents_show_incident_and_unknown_ones(two_incidents):
    out = str(two_incidents)
    listed = runbook("incidents", "--output-dir", out, env={"RUNBOOK_TIMEZONE": "UTC"})
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["INCIDENT", "SEVERITY", "STATE", "RUNS", "LAST", "ACTIVITY"]
    assert [line.split()[:4] for line in lines[1:]] == [["INC-2", "-", "open", "1"], ["INC-1", "-", "open", "1"]]
    assert lines[1].endswith(" UTC")
    shown = runbook("show-incident", "INC-1", "--output-dir", out).stdout
    assert shown.startswith("INC-1: severity not rated (no triage), open")
    assert "completed: pod-oomkilled (INC-1)" in shown and "  critical  " in shown and "HTML: " in shown
    for command in (["report"], ["verify"], ["comms", "--kind", "slack-update"], ["show-incident"], ["close"]):
        result = runbook(*command, "INC-3", "--output-dir", out)
        assert result.returncode == 2
        assert "no evidence for incident 'INC-3'" in result.stderr and "(known: INC-2, INC-1;" in result.stderr

"""`runbook verify`, `runbook report` and `runbook comms` on an incident folder that real runs left.

One folder per module: db-connection-pool-exhausted against a held pool, once previewing and once
applying, then db-slow-queries against a closed port (a failed run). Each test copies it before changing
anything.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from runbooks import chain, cli, units
from runbooks.evidence import schema
from runbooks.incident import MESSAGE_KINDS
from runbooks_sandbox.incidents import Pool, hold_pools

INCIDENT = "INC-77"
POOL = "db-connection-pool-exhausted"


def runbook(*args: str):
    result = CliRunner().invoke(cli.main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def runs(pg, tmp_path_factory):
    """The incident's output folder after three real runs; the evidence files in the order written."""
    output = tmp_path_factory.mktemp("output")
    common = ["--incident", INCIDENT, "--output-dir", str(output)]
    written = []
    with hold_pools(pg, [Pool("deal-service", "deal_service", 3, in_transaction=1)]):
        time.sleep(1.5)  # the sessions age past idle_minutes 0.02 (1.2 s)
        for apply in ("false", "true"):
            result = runbook(
                "run", POOL, "-p", "dsn", pg.dsn(), "-p", "idle_minutes", "0.02", "-p", "apply", apply, *common
            )
            assert result.exit_code == 0, result.stderr
            written.append(Path(result.stdout.splitlines()[-1]))
    result = runbook("run", "db-slow-queries", "-p", "dsn", "host=127.0.0.1 port=1 connect_timeout=2", *common)
    assert result.exit_code == 1
    written.append(Path(result.stdout.splitlines()[-1]))
    return written


@pytest.fixture
def folder(runs, tmp_path):
    """A copy of the incident folder this test may change."""
    return Path(shutil.copytree(runs[0].parent, tmp_path / INCIDENT))


def verify(folder: Path):
    return runbook("verify", INCIDENT, "--output-dir", str(folder.parent))


def problems(folder: Path) -> list[str]:
    result = verify(folder)
    assert result.exit_code == cli.NOT_INTACT == 3, result.stdout
    lines = result.stdout.splitlines()
    assert result.stderr == f"runbook: {INCIDENT}: {units.count(len(lines), 'problem')} in its evidence\n"
    return lines


def evidence_names(folder: Path) -> list[str]:
    """Evidence file names in the order they were written."""
    records = {p.name: json.loads(p.read_text()) for p in folder.glob("*.evidence.json")}
    return sorted(records, key=lambda name: records[name]["chain"]["sequence"])


# --- the chain the runner wrote


def test_runs_leave_one_chain_in_the_order_they_were_written(runs):
    records = [json.loads(p.read_text()) for p in runs]
    for record in records:
        jsonschema.validate(record, schema())
    assert [r["chain"]["sequence"] for r in records] == [1, 2, 3]
    assert records[0]["chain"]["previous"] is None
    for before, record in zip(runs[:-1], records[1:], strict=True):
        assert record["chain"]["previous"] == {"path": before.name, "sha256": chain.sha256(before)}

    result = verify(runs[0].parent)
    assert result.exit_code == 0
    assert result.stdout.strip().splitlines() == [
        f"{INCIDENT}: intact: 3 evidence files, 6 artifacts; "
        f"the chain ends at {runs[2].name} (sha256 {chain.sha256(runs[2])})",
        "seals: unkeyed SHA-256: whoever can write the folder can reseal it (set RUNBOOK_SEAL_KEY or "
        "RUNBOOK_SEAL_KEY_FILE to key them)",
    ]


@pytest.mark.parametrize("run", [0, 1, 2])
@pytest.mark.parametrize("suffix", [".evidence.json", ".ipynb", ".html"])
def test_a_changed_byte_in_any_file_is_caught(folder, run, suffix):
    name = evidence_names(folder)[run].replace(".evidence.json", suffix)
    path = folder / name
    original = path.read_bytes()
    for position in (0, len(original) // 2, len(original) - 1):
        data = bytearray(original)
        data[position] = ord("x") if data[position] != ord("x") else ord("y")
        path.write_bytes(bytes(data))

        lines = problems(folder)
        assert len(lines) == 1 and lines[0].startswith(f"changed: {name}: "), (
            position,
            lines,
        )  # nothing else is blamed
    path.write_bytes(original)
    assert verify(folder).exit_code == 0


@pytest.mark.parametrize("suffix", [".evidence.json", ".ipynb", ".html"])
def test_a_removed_file_is_caught(folder, suffix):
    name = evidence_names(folder)[1].replace(".evidence.json", suffix)
    (folder / name).unlink()

    lines = problems(folder)
    assert len(lines) == 1 and lines[0].startswith(f"removed: {name}: "), lines


def test_a_copied_evidence_file_is_caught_as_inserted(folder):
    original = evidence_names(folder)[1]
    copy = "20261126T031500Z-" + original.split("-", 1)[1]
    shutil.copy(folder / original, folder / copy)

    lines = problems(folder)
    assert len(lines) == 1 and lines[0].startswith(f"inserted: {copy}: "), lines
    assert "another run" in lines[0] and "no record links to it" in lines[0]


def test_a_forged_run_is_caught_as_inserted(folder):
    # A notebook nobody's evidence lists, and an evidence file with its own artifacts linked to the first run.
    forged = "20261126T031500Z-db-slow-queries"
    first = evidence_names(folder)[0]
    for suffix in (".ipynb", ".html"):
        shutil.copy(folder / first.replace(".evidence.json", suffix), folder / f"{forged}{suffix}")
    record = json.loads((folder / evidence_names(folder)[1]).read_text())
    record["artifacts"] = [
        {"path": f"{forged}{s}", "sha256": chain.sha256(folder / f"{forged}{s}")} for s in (".ipynb", ".html")
    ]
    record["chain"] = {
        "sequence": 2,
        "previous": {"path": first, "sha256": chain.sha256(folder / first)},
        "seal": chain.UNSEALED,
    }
    (folder / f"{forged}.evidence.json").write_text(json.dumps(record, indent=2))
    (folder / "20261126T031501Z-pod-oomkilled.ipynb").write_text("{}")

    lines = problems(folder)
    assert [line.split(": ")[:2] for line in lines] == [
        ["changed", f"{forged}.evidence.json"],  # no seal: the forger did not compute it
        ["inserted", f"{forged}.evidence.json"],
        ["inserted", "20261126T031501Z-pod-oomkilled.ipynb"],
    ], lines


def test_a_reordered_chain_is_caught(folder):
    first, second, _ = evidence_names(folder)
    (folder / first).rename(folder / "swap")
    (folder / second).rename(folder / first)
    (folder / "swap").rename(folder / second)

    lines = problems(folder)
    assert {tuple(line.split(": ")[:2]) for line in lines if line.startswith("changed")} == {
        ("changed", first),
        ("changed", second),
    }, lines


def test_a_chain_relinked_around_a_run_is_caught(folder):
    # The last run now links straight to the first, sealed properly: the middle run hangs loose.
    first, middle, last = evidence_names(folder)
    record = json.loads((folder / last).read_text())
    del record["chain"]
    (folder / first).rename(folder / "first")
    (folder / middle).rename(folder / "middle")
    (folder / last).unlink()
    (folder / "first").rename(folder / first)
    chain.write(folder / last, json.dumps(record))  # chain.write links it to the first: the only evidence now
    (folder / "middle").rename(folder / middle)

    lines = problems(folder)
    assert [line.split(": ")[:2] for line in lines] == [["inserted", middle]], lines


def test_unknown_incident_is_one_line_and_exit_2(tmp_path):
    for command in (["verify", "INC-404"], ["report", "INC-404"], ["comms", "INC-404", "--kind", "slack-update"]):
        result = runbook(*command, "--output-dir", str(tmp_path))
        assert result.exit_code == 2
        assert result.stderr.strip() == (
            f"runbook: no evidence for incident 'INC-404' in {tmp_path} (none has any; `runbook incidents`)"
        )


# --- the post-incident review

SOURCE_RUNBOOK = Path(__file__).resolve().parents[2] / "shared" / "seed" / "incident-response-runbook.md"


def report(folder: Path) -> tuple[str, str]:
    result = runbook("report", INCIDENT, "--output-dir", str(folder.parent))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(folder / "review.md"), str(folder / "review.html")]
    return (folder / "review.md").read_text(), (folder / "review.html").read_text()


def utc(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))


def eastern(iso: str, clock: str = "%H:%M:%S") -> str:
    """A time as the review shows it: in the reading zone, RUNBOOK_TIMEZONE's (unset in the tests: US Eastern)."""
    return units.local(utc(iso)).strftime(clock)


def test_report_tells_the_runs_from_their_evidence_and_leaves_the_rest_to_people(folder):
    records = [json.loads((folder / name).read_text()) for name in evidence_names(folder)]
    markdown, html = report(folder)

    assert markdown.startswith(f"# Post-Incident Review: {INCIDENT}\n")
    for line in [
        "- Severity: [P1/P2/P3/P4]",
        "- Impact: [Brief description]",
        "[Detailed explanation]",
        "- Users affected: [Number]",
        "- Error rate: [Percentage]",
        "| [Action] | @[name] | [Date]   | [Status] |",
    ]:
        assert line in markdown
    zone = eastern(records[0]["started_at"], "%Z")
    assert f"- Date: {eastern(records[0]['started_at'], '%Y-%m-%d')} (America/New_York, {zone})" in markdown
    assert "from the first runbook run starting at" in markdown

    rows = [line for line in markdown.splitlines() if re.match(r"^\| \d\d:\d\d:\d\d \| ", line)]
    assert rows[0] == (
        f"| {eastern(records[0]['started_at'])} | Runbook `{POOL}` started (evidence `{evidence_names(folder)[0]}`) |"
    )
    assert sum("| Previewed only (dry run) `terminate-idle-session` on pid " in row for row in rows) == 3
    assert sum("| Applied `terminate-idle-session` on pid " in row and row.endswith(": done |") for row in rows) == 3
    assert f"| {eastern(records[2]['finished_at'])} | Runbook `db-slow-queries` failed at cell " in markdown
    assert [row.split(" | ")[0] for row in rows] == sorted(row.split(" | ")[0] for row in rows)

    for record in records:
        for artifact in record["artifacts"]:
            assert (
                f"[{artifact['path']}]({artifact['path']}) | `{chain.sha256(folder / artifact['path'])}` |" in markdown
            )
    assert f"3 evidence\nfiles and 6 artifacts intact; the chain ends at `{evidence_names(folder)[2]}`" in markdown

    assert html.count("<h2>") == markdown.count("\n## ") and "<table>" in html
    assert f'<a href="{records[0]["artifacts"][0]["path"]}">' in html
    assert verify(folder).exit_code == 0  # the review beside the evidence is not evidence


def test_every_placeholder_left_in_the_report_is_the_templates(folder):
    if not SOURCE_RUNBOOK.exists():
        pytest.skip(f"the incident-response runbook is not at {SOURCE_RUNBOOK}")
    markdown, _ = report(folder)
    template = SOURCE_RUNBOOK.read_text().split("### Post-Incident Document Template", 1)[1]
    for placeholder in set(re.findall(r"\[[^\]]+\](?!\()", markdown)):
        assert placeholder in template, placeholder


def test_report_on_changed_evidence_says_so(folder):
    notebook = folder / json.loads((folder / evidence_names(folder)[0]).read_text())["artifacts"][0]["path"]
    notebook.write_text(notebook.read_text() + " ")

    markdown, _ = report(folder)
    assert "**Not intact** when this review was written" in markdown
    assert f"- changed: {notebook.name}: SHA-256 differs from the one listed in {evidence_names(folder)[0]}" in markdown


# --- communications


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_comms_fill_what_the_evidence_knows_and_keep_every_other_placeholder(folder, kind):
    records = [json.loads((folder / name).read_text()) for name in evidence_names(folder)]
    result = runbook("comms", INCIDENT, "--kind", kind, "--output-dir", str(folder.parent))
    assert result.exit_code == 0, result.output
    text = result.stdout

    placeholders = re.findall(r"\[[^\]]+\]", text)
    assert placeholders, text  # root cause, impact, next steps: for people
    if SOURCE_RUNBOOK.exists():
        document = SOURCE_RUNBOOK.read_text()
        assert all(p in document for p in placeholders), placeholders
    duration = units.duration(utc(records[2]["finished_at"]) - utc(records[0]["started_at"]))
    public = kind.startswith("status-") or kind == "customer-email"
    if public:  # pids, sessions and runbook names stay internal
        assert "pid" not in text and POOL not in text
    if kind == "slack-update":
        assert f"Incident: {INCIDENT}\nSeverity: P1/P2/P3/P4\nDuration: {duration}\n" in text
        assert "- 3 sessions idle for more than 0.02 min (1 of them idle in transaction)\n" in text
        assert "- terminate-idle-session on 3 targets: done (db-connection-pool-exhausted)\n" in text
        assert "- [Next step 1]" in text and "[Finding 1]" not in text
        assert "Next Update: [Time]" in text  # no severity, no cadence to tell when
    if kind == "slack-resolved":
        assert "Resolution: terminate-idle-session on 3 targets: done (db-connection-pool-exhausted)\n" in text
        assert "Error rate during incident: [Percentage]" in text and "Root Cause: [Brief description]" in text
    if kind in ("status-identified", "status-monitoring", "status-resolved"):
        assert re.search(r"^(Updated|Resolved): \d{4}-\d\d-\d\d \d\d:\d\d E[SD]T$", text, re.MULTILINE), text
    if kind == "status-resolved":
        assert f"- Duration: {duration}\n" in text and "- Resolution: [What we did]" in text
    if kind == "customer-email":
        start = eastern(records[0]["started_at"], "%Y-%m-%d %H:%M %Z")
        end = eastern(records[2]["finished_at"], "%Y-%m-%d %H:%M %Z")
        assert f"{start} to {end} ({duration})" in text and "Dear [Customer Name]," in text


def test_comms_kind_must_be_one_of_the_templates(folder):
    result = runbook("comms", INCIDENT, "--kind", "fax", "--output-dir", str(folder.parent))
    assert result.exit_code == 2 and "'fax' is not one of" in result.output


# --- a triage finding flows into the review and the messages


def add_triage_run(folder: Path, started: dt.datetime, severity: dict, summary: str) -> Path:
    """An evidence file of the triage runbook's kind, with its notebook and HTML, chained as the runner does."""
    stem = f"{started:%Y%m%dT%H%M%SZ}-triage"
    artifacts = []
    for suffix in (".ipynb", ".html"):
        (folder / f"{stem}{suffix}").write_text(f"triage {suffix}\n")
        artifacts.append({"path": f"{stem}{suffix}", "sha256": chain.sha256(folder / f"{stem}{suffix}")})
    record = {
        "runbook": "triage",
        "incident": INCIDENT,
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "finished_at": (started + dt.timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
        "status": "completed",
        "error": None,
        "parameters": {},
        "findings": [{"id": "severity", "summary": summary, "severity": "critical", "data": severity}],
        "actions": [],
        "artifacts": artifacts,
        "environment": {"package_version": "0", "git_commit": None, "host": "test"},
    }
    path = folder / f"{stem}.evidence.json"
    chain.write(path, json.dumps(record))
    jsonschema.validate(json.loads(path.read_text()), schema())
    return path


def test_severity_from_triage_flows_into_report_and_comms(folder):
    records = [json.loads((folder / name).read_text()) for name in evidence_names(folder)]
    first, last = utc(records[0]["started_at"]), utc(records[2]["finished_at"])
    add_triage_run(
        folder,
        last + dt.timedelta(seconds=1),
        {
            "severity": "P3",
            "rule": "error rate 5.0% in 1-10%",
            "measured": {"error_rate": 0.05},
            "error_rate": 0.05,
            "latency_ratio": None,
            "incident_start": (first - dt.timedelta(minutes=10)).isoformat(),
        },
        "P3: error rate 5.0%",
    )
    add_triage_run(
        folder,
        last + dt.timedelta(seconds=4),
        {
            "severity": "P2",
            "rule": "error rate 12.0% > 10%",
            "measured": {"error_rate": 0.12, "latency_ratio": 1.8},
            "error_rate": 0.12,
            "latency_ratio": 1.8,
            "incident_start": (first - dt.timedelta(minutes=8)).isoformat(),
        },
        "P2 | <script>alert(1)</script> error rate 12.0%",
    )
    assert verify(folder).exit_code == 0

    markdown, html = report(folder)
    assert "- Severity: P2 (error rate 12.0% \\> 10%)\n" in markdown  # the worst moment, with the rule that fired
    assert "- Error rate: peak 12.0 %\n- Latency: peak 1.8 × normal\n" in markdown
    assert "- Duration: 10 min (from the incident start triage gave at" in markdown  # the earliest start
    assert f"| {eastern((first - dt.timedelta(minutes=10)).isoformat())} | Incident started" in markdown
    assert "Finding `severity` (critical): P2 \\| \\<script\\>alert(1)\\</script\\>" in markdown
    assert "<script>" not in html and "P2 | &lt;script&gt;alert(1)&lt;/script&gt;" in html

    def comms(kind):
        return runbook("comms", INCIDENT, "--kind", kind, "--output-dir", str(folder.parent)).stdout

    assert "Severity: P2\nDuration: 10 min\n" in comms("slack-update")
    # P2: every 30 minutes from the start, so the first update is due 30 min after it (10 min ago)
    due = (first - dt.timedelta(minutes=10) + dt.timedelta(minutes=30)).astimezone(dt.timezone.utc)
    assert f"Next Update: {units.clock(due)} (Every 30 minutes" in comms("slack-update")
    assert "- Severity P2: error rate 12.0 %, latency 1.8x normal\n" in comms("slack-update")
    resolved = comms("slack-resolved")
    assert "Severity: P2\n" in resolved and "- Error rate during incident: 12.0 %\n" in resolved
    assert "(10 min)" in comms("customer-email")


# --- alerts that started runs (the incident log of `runbook serve`)


def log_alert(folder: Path, state: str, starts_at: dt.datetime, received_at: dt.datetime, **extra) -> None:
    line = {
        "received_at": received_at.isoformat().replace("+00:00", "Z"),
        "fingerprint": "0123456789abcdef",
        "starts_at": starts_at.isoformat().replace("+00:00", "Z"),
        "status": "resolved" if state == "resolved" else "firing",
        "state": state,
        "alertname": "DatabaseConnectionPoolExhausted",
        "incident": INCIDENT,
        **extra,
    }
    chain.append(folder / "alerts.jsonl", line)  # as `runbook serve` logs it: a record of the incident's chain


def test_alerts_from_the_incident_log_mark_the_start_the_end_and_their_place_in_the_timeline(folder):
    records = [json.loads((folder / name).read_text()) for name in evidence_names(folder)]
    first, last = utc(records[0]["started_at"]), utc(records[2]["finished_at"])
    fired, resolved = first - dt.timedelta(minutes=5), last + dt.timedelta(minutes=3)
    log_alert(folder, "queued", fired, first - dt.timedelta(seconds=1), runbook=POOL)
    log_alert(folder, "resolved", fired, resolved)

    markdown, _ = report(folder)
    assert (
        f"- Duration: {units.duration(resolved - fired)} (from the first alert firing at "
        f"{eastern(fired.isoformat(), '%H:%M %Z')} to the last alert resolved at "
        f"{eastern(resolved.isoformat(), '%H:%M %Z')})"
    ) in markdown
    assert f"| {eastern(fired.isoformat())} | Alert `DatabaseConnectionPoolExhausted` fired |" in markdown
    assert f"received by `runbook serve`: runbook `{POOL}` queued |" in markdown
    assert (
        f"| {eastern(resolved.isoformat())} | Alert `DatabaseConnectionPoolExhausted` resolved "
        "(notification received) |" in markdown
    )
    assert verify(folder).exit_code == 0  # the log is under the chain

    (folder / "alerts.jsonl").write_text("not json\n")
    result = runbook("report", INCIDENT, "--output-dir", str(folder.parent))
    assert result.exit_code == 2 and "alerts.jsonl:1 is not an incident log line" in result.output

"""Interactive sessions without a browser: `runbook open --no-lab` writes the working copy, a real kernel steps
through it as an engineer would (in any order, with edits), `runbook seal` seals it; verify and report read it.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import nbformat
import pytest
from click.testing import CliRunner

from labs import code_cells, step_through
from runbooks import catalog, cli, runfiles, sessions
from runbooks.evidence import schema
from runbooks.lab import Sealer
from runbooks.runner import run as run_headless
from runbooks_sandbox.incidents import Pool, hold_pools

RUNBOOK = "db-connection-pool-exhausted"
INCIDENT = "INC-9"


def runbook(*args: str):
    result = CliRunner().invoke(cli.main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def output(tmp_path) -> Path:
    return tmp_path / "output"


@pytest.fixture
def open_copy(output, server):
    """`runbook open RUNBOOK --no-lab` against the test server (over its socket: no password); the copy's path."""

    def open_(*args: str, name: str = RUNBOOK) -> Path:
        dsn = ["-p", "dsn", server.dsn()] if name.startswith("db-") and "dsn" not in args else []
        result = runbook("open", name, "--incident", INCIDENT, "--output-dir", str(output), "--no-lab", *dsn, *args)
        assert result.exit_code == 0, result.stderr
        return Path(result.stdout.splitlines()[-1])

    return open_


def edit(copy: Path, index: int, source: str) -> None:
    notebook = nbformat.read(copy, as_version=4)
    notebook.cells[index].source = source
    nbformat.write(notebook, copy)


def seal(output: Path, *notebooks: Path) -> dict:
    result = runbook("seal", INCIDENT, *map(str, notebooks), "--output-dir", str(output))
    assert result.exit_code == 0, result.stderr
    return json.loads(Path(result.stdout.splitlines()[-1]).read_text())


def verify(output: Path):
    return runbook("verify", INCIDENT, "--output-dir", str(output))


# --- opening


@pytest.mark.parametrize(
    "args,message",
    [
        (["nope"], "unknown runbook 'nope'"),
        ([RUNBOOK, "-p", "max_rows", "5"], "has no parameter 'max_rows'"),
        ([RUNBOOK, "-p", "idle_minutes", "ten"], "parameter 'idle_minutes' takes a number, got 'ten'"),
        ([RUNBOOK, "--env", "qa"], "unknown environment 'qa'"),
        ([RUNBOOK, "--incident", "../etc"], "incident id '../etc' must be a plain name"),
        ([RUNBOOK, "--operator", "<b>eve</b>"], "operator '<b>eve</b>' must be a plain name"),
    ],
)
def test_open_with_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, output):
    incident = [] if "--incident" in args else ["--incident", INCIDENT]
    result = runbook("open", *args, *incident, "--output-dir", str(output), "--no-lab")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("runbook: ") and message in result.stderr
    assert result.stdout == ""
    assert not output.exists()


def test_open_never_writes_under_notebooks():
    before = {p: p.stat().st_mtime_ns for p in catalog.NOTEBOOKS.rglob("*")}
    result = runbook("open", RUNBOOK, "--incident", INCIDENT, "--output-dir", str(catalog.NOTEBOOKS), "--no-lab")
    assert result.exit_code == 2 and "never written" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in catalog.NOTEBOOKS.rglob("*")} == before


def test_the_working_copy_has_the_parameters_injected_as_papermill_does(open_copy, output):
    copy = open_copy("-p", "idle_minutes", "2.5", "--operator", "alice")
    assert copy.parent == output / INCIDENT and copy.name.endswith(f"-{RUNBOOK}.ipynb")
    notebook = nbformat.read(copy, as_version=4)
    tags = [cell.metadata.get("tags", []) for cell in notebook.cells]
    injected = tags.index(["injected-parameters"])
    assert tags[injected - 1] == ["parameters"]
    assert "idle_minutes = 2.5\n" in notebook.cells[injected].source
    assert notebook.metadata["runbooks-session"]["operator"] == "alice"
    assert runfiles.is_working_copy(copy)


@pytest.mark.parametrize("name", sorted(path.stem for path in catalog.NOTEBOOKS.glob("*.ipynb")))
def test_a_working_copy_sealed_untouched_shows_no_edit(name, open_copy, output):
    copy = open_copy(name=name)
    record = seal(output, copy)
    assert record["session"]["edited"] == [], record["session"]["edited"][0]["diff"]
    assert record["status"] == "partial" and record["session"]["executed"] == []


def test_environment_layers_reach_the_injected_cell(open_copy):
    copy = open_copy("--env", "prod", name="triage")
    injected = next(c for c in nbformat.read(copy, as_version=4).cells if "injected-parameters" in c.metadata.tags)
    assert 'namespace = "autolytiq-prod"' in injected.source


def test_a_password_in_the_dsn_never_reaches_the_working_copy(server, admin_password, output):
    dsn = server.tcp_dsn(password=admin_password)
    result = runbook("open", RUNBOOK, "--incident", INCIDENT, "-p", "dsn", dsn, "--output-dir", str(output), "--no-lab")
    assert result.exit_code == 0
    copy = Path(result.stdout.splitlines()[-1])
    assert admin_password not in copy.read_text()
    assert f"port={server.port}" in copy.read_text()  # the rest of the dsn is there
    assert "PGPASSWORD" in result.stderr  # where the password has to come from instead

    step_through(copy, code_cells(copy), env={**os.environ, "PGPASSWORD": admin_password})
    record = seal(output)
    assert record["status"] == "completed", record["session"]["reason"]
    for path in copy.parent.iterdir():
        if path.is_file():
            assert admin_password not in path.read_text(), path


# --- sealing


def test_a_session_run_top_to_bottom_is_completed_evidence_naming_the_diagnosis(pg, open_copy, output):
    with hold_pools(pg, [Pool("deal-service", "deal_service", 3, in_transaction=1)]):
        time.sleep(1.5)  # the sessions age past idle_minutes 0.02 (1.2 s)
        copy = open_copy("-p", "idle_minutes", "0.02", "--operator", "alice")
        step_through(copy, code_cells(copy))
    record = seal(output)
    jsonschema.validate(record, schema())
    assert record["mode"] == "interactive" and record["operator"] == "alice"
    assert record["status"] == "completed" and record["error"] is None
    session = record["session"]
    assert session["reason"] is None and session["seal"] == 1 and session["supersedes"] is None
    assert [run["execution_count"] for run in session["executed"]] == list(range(1, len(code_cells(copy)) + 1))
    assert session["edited"] == session["raised"] == session["never_executed"] == session["out_of_order"] == []
    assert {"pool-usage", "top-application", "stale-idle-sessions"} <= {f["id"] for f in record["findings"]}
    assert {a["mode"] for a in record["actions"]} == {"dry-run"}
    assert record["parameters"]["idle_minutes"] == 0.02

    stem = record["artifacts"][0]["path"].removesuffix(".ipynb")
    sealed = nbformat.read(output / INCIDENT / f"{stem}.ipynb", as_version=4)
    assert "runbooks-session" not in sealed.metadata  # evidence, not a working copy
    assert [c.source for c in sealed.cells] == [c.source for c in nbformat.read(copy, as_version=4).cells]
    result = verify(output)
    assert result.exit_code == 0 and "intact: 1 evidence files, 2 artifacts" in result.stdout


def test_a_session_run_partly_is_partial(open_copy, output):
    copy = open_copy()
    code = code_cells(copy)
    step_through(copy, code[:4])
    record = seal(output)
    assert record["status"] == "partial" and record["error"] is None
    assert record["session"]["never_executed"] == code[4:]
    assert record["session"]["reason"] == f"{len(code) - 4} of {len(code)} code cells never executed " + (
        f"(cells {', '.join(map(str, code[4:]))})"
    )


def test_a_cell_run_again_out_of_order_is_flagged(open_copy, output):
    copy = open_copy()
    code = code_cells(copy)
    step_through(copy, [*code[:-1], code[4], code[-1]])  # step 2 again before closing the connection
    session = seal(output)["session"]
    assert session["out_of_order"] == [code[4]]
    assert "executed out of order" in session["reason"] and "appear in no cell" in session["reason"]


def test_a_cell_that_raised_makes_the_session_failed(open_copy, output):
    copy = open_copy("-p", "dsn", "host=127.0.0.1 port=1 connect_timeout=2")
    code = code_cells(copy)
    step_through(copy, code[:3])  # the engineer stops at the failing connect
    record = seal(output)
    assert record["status"] == "failed"
    assert record["error"]["cell"] == code[2] and record["error"]["ename"] == "DatabaseUnreachable"
    assert [r["cell"] for r in record["session"]["raised"]] == [code[2]]
    assert record["session"]["reason"].startswith(f"cell {code[2]} raised DatabaseUnreachable")


def test_an_edited_cell_shows_in_the_record_with_its_diff(open_copy, output):
    copy = open_copy()
    code = code_cells(copy)
    edit(copy, code[4], "by_application = connections.by_application(db)\nby_application.head(3)")
    step_through(copy, code)
    record = seal(output)
    assert record["status"] == "completed"  # edited, but run once in order
    [edited] = record["session"]["edited"]
    assert edited["cell"] == edited["runbook_cell"] == code[4]
    assert "-by_application\n+by_application.head(3)" in edited["diff"]

    report = runbook("report", INCIDENT, "--output-dir", str(output))
    assert report.exit_code == 0
    assert f"differing from the runbook: cell {code[4]}" in (output / INCIDENT / "review.md").read_text()


def test_a_credential_typed_into_the_notebook_is_warned_of_and_kept_out_of_the_evidence(open_copy, output):
    copy = open_copy()
    notebook = nbformat.read(copy, as_version=4)
    notebook.cells.insert(4, nbformat.v4.new_code_cell('api_key = "k-8c1f27d9e5"\nprint(api_key)'))
    nbformat.write(notebook, copy)
    step_through(copy, code_cells(copy))
    record = seal(output)
    [warning] = [f for f in record["findings"] if f["id"] == "credential-in-notebook"]
    assert warning["severity"] == "warning" and warning["data"] == {"cells": [4]}
    for path in copy.parent.iterdir():
        if path.is_file() and path != copy:
            assert "k-8c1f27d9e5" not in path.read_text(), path
    assert "k-8c1f27d9e5" in copy.read_text()  # the engineer's own file is theirs to fix


def test_a_second_seal_supersedes_the_first_and_only_changed_copies_are_sealed_again(open_copy, output):
    copy, other = open_copy(), open_copy()
    code = code_cells(copy)
    step_through(copy, code[:3])
    first = seal(output, copy)
    step_through(copy, code)
    result = runbook("seal", INCIDENT, "--output-dir", str(output))  # the changed copy and the never-sealed one
    sealed = [json.loads(Path(line).read_text()) for line in result.stdout.splitlines()]
    assert {r["session"]["working_copy"] for r in sealed} == {copy.name, other.name}
    second = next(r for r in sealed if r["session"]["working_copy"] == copy.name)
    first_name = Path(first["artifacts"][0]["path"]).stem + ".evidence.json"
    assert second["session"]["seal"] == 2 and second["session"]["supersedes"] == first_name
    assert second["status"] == "completed"

    again = runbook("seal", INCIDENT, "--output-dir", str(output))
    assert again.exit_code == 0 and again.stdout == "" and "every working copy is sealed" in again.stderr
    assert verify(output).exit_code == 0

    runbook("report", INCIDENT, "--output-dir", str(output))
    review = (output / INCIDENT / "review.md").read_text()
    assert review.count(f"sealed, completed (evidence `{first_name}`") == 0  # only the latest in the timeline
    assert "supersedes 1 earlier seal(s)" in review
    assert review.count(f"interactive by {getpass.getuser()}, partial, superseded") == 2  # both files of the first


def test_seals_of_one_working_copy_at_the_same_time_each_name_the_one_before(open_copy, output):
    copy = open_copy()
    with ThreadPoolExecutor(4) as pool:  # the lab's sealer and `runbook seal`s, at once
        list(pool.map(lambda _: sessions.seal(copy), range(4)))
    records = sorted(
        (json.loads(p.read_text()) for p in runfiles.evidence_files(copy.parent)), key=lambda r: r["chain"]["sequence"]
    )
    assert [r["session"]["seal"] for r in records] == [1, 2, 3, 4]
    names = [Path(r["artifacts"][0]["path"]).stem + ".evidence.json" for r in records]
    assert [r["session"]["supersedes"] for r in records] == [None, *names[:-1]]


def test_a_changed_sealed_notebook_is_caught_but_the_working_copy_may_change(open_copy, output):
    copy = open_copy()
    step_through(copy, code_cells(copy)[:2])
    record = seal(output)
    step_through(copy, code_cells(copy))  # the engineer goes on after sealing
    assert verify(output).exit_code == 0

    sealed = output / INCIDENT / record["artifacts"][0]["path"]
    sealed.write_text(sealed.read_text().replace("pool_usage", "pool_usaga"))
    result = verify(output)
    assert result.exit_code == cli.NOT_INTACT
    assert result.stdout.splitlines() == [
        f"changed: {sealed.name}: SHA-256 differs from the one listed in "
        + (f"{record['artifacts'][0]['path'].removesuffix('.ipynb')}.evidence.json")
    ]


def test_seal_refuses_what_is_no_working_copy(open_copy, output, tmp_path):
    result = runbook("seal", INCIDENT, "--output-dir", str(output))
    assert result.exit_code == 2 and "has no working copy" in result.stderr
    open_copy()
    stray = tmp_path / "stray.ipynb"
    stray.write_text("{}")
    result = runbook("seal", INCIDENT, str(stray), "--output-dir", str(output))
    assert result.exit_code == 2 and "is not a working copy of incident 'INC-9'" in result.stderr


def test_the_lab_sealer_makes_one_seal_of_a_save_storm_and_seals_what_is_pending_when_it_stops(open_copy, output):
    copy = open_copy()
    step_through(copy, code_cells(copy)[:2])
    sealer = Sealer(0.5, lambda path: (), logging.getLogger("test-sealer"))
    sealer.start()
    for _ in range(50):
        sealer.saved({"type": "notebook"}, str(copy))
    sealer.saved({"type": "file"}, str(output / "notes.txt"))  # not a notebook: never looked at
    time.sleep(0.2)
    assert runfiles.evidence_files(copy.parent) == []  # still saving: not yet
    deadline = time.monotonic() + 30
    while not runfiles.evidence_files(copy.parent) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    assert len(runfiles.evidence_files(copy.parent)) == 1

    step_through(copy, code_cells(copy))
    sealer.saved({"type": "notebook"}, str(copy))
    sealer.close()  # at once: the pending save is sealed before it returns
    records = [json.loads(p.read_text()) for p in runfiles.evidence_files(copy.parent)]
    assert sorted(r["session"]["seal"] for r in records) == [1, 2]
    assert max(records, key=lambda r: r["session"]["seal"])["status"] == "completed"


# --- the review of a mixed incident


def test_report_lists_interactive_sessions_next_to_headless_and_alert_runs(pg, server, open_copy, output):
    alert = {
        "labels": {"alertname": "DatabaseConnectionPoolExhausted", "severity": "critical"},
        "annotations": {},
        "startsAt": "2026-11-30T03:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "0123456789abcdef",
        "groupKey": '{}:{alertname="DatabaseConnectionPoolExhausted"}',
    }
    book = catalog.find(RUNBOOK)
    with hold_pools(pg, [Pool("deal-service", "deal_service", 3, in_transaction=1)]):
        time.sleep(1.5)
        parameters = book.resolve({"dsn": server.dsn(), "idle_minutes": 0.02})
        run_headless(book, parameters, INCIDENT, output, alert=alert)
        headless = runbook(
            "run", RUNBOOK, "--incident", INCIDENT, "--output-dir", str(output), "-p", "dsn", server.dsn()
        )
        assert headless.exit_code == 0
        copy = open_copy("-p", "idle_minutes", "0.02", "-p", "apply", "true", "--operator", "alice")
        edit(copy, code_cells(copy)[4], "by_application = connections.by_application(db)\nby_application.head(3)")
        step_through(copy, code_cells(copy))
    seal(output)

    records = [json.loads(p.read_text()) for p in runfiles.evidence_files(output / INCIDENT)]
    assert sorted(r["mode"] for r in records) == ["alert", "headless", "interactive"]
    report = runbook("report", INCIDENT, "--output-dir", str(output))
    assert report.exit_code == 0
    review = (output / INCIDENT / "review.md").read_text()
    assert "Interactive session `db-connection-pool-exhausted` opened by `alice`" in review
    assert "Interactive session `db-connection-pool-exhausted` by `alice` sealed, completed" in review
    assert "Edited by hand in `db-connection-pool-exhausted` (`alice`)" in review
    assert "Applied by hand (`alice`) `terminate-idle-session`" in review
    assert review.count("Runbook `db-connection-pool-exhausted` started (evidence") == 1  # headless
    assert (
        review.count("Runbook `db-connection-pool-exhausted` started by alert `DatabaseConnectionPoolExhausted`") == 1
    )
    interactive = next(r for r in records if r["mode"] == "interactive")
    for artifact in interactive["artifacts"]:
        assert f"| db-connection-pool-exhausted (interactive by alice, completed) | [{artifact['path']}]" in review
        assert artifact["sha256"] in review
    assert "intact" in review

"""The `runbook` command as a user meets it: a real process, its output and exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUNBOOK = str(Path(sys.executable).parent / "runbook")  # the console script of the environment under test


def runbook(*args, cwd=None):
    return subprocess.run([RUNBOOK, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_list_shows_each_runbook_with_its_title():
    result = runbook("list")
    assert result.returncode == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line[:1].strip()}
    assert "Database connection pool exhausted" in lines["db-connection-pool-exhausted"]


def test_show_gives_type_default_and_comment():
    result = runbook("show", "db-connection-pool-exhausted")
    assert result.returncode == 0
    assert "idle_minutes: a number; default 10" in result.stdout
    assert "sessions idle (in transaction or not) longer than this" in result.stdout
    assert "alerts routed to it: DatabaseConnectionPoolExhausted" in result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "db-pool-exhausted"], "unknown runbook 'db-pool-exhausted'"),
        (["show", "nope"], "unknown runbook 'nope'"),
        (["run", "db-slow-queries", "-p", "max_rows", "5"], "has no parameter 'max_rows'"),
        (["run", "db-slow-queries", "-p", "limit", "ten"], "parameter 'limit' takes a whole number, got 'ten'"),
        (["run", "db-slow-queries", "--env", "qa"], "unknown environment 'qa'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_kernel(args, message, tmp_path):
    result = runbook(*args, "--output-dir", str(tmp_path)) if args[0] == "run" else runbook(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runbook: ") and message in lines[0]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


def test_bad_parameter_file_is_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("limit: [1, 2\n")
    result = runbook("run", "db-slow-queries", "-f", str(bad), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2 and "not valid YAML" in result.stderr


def test_unreachable_database_exits_1_and_still_leaves_evidence(tmp_path):
    result = runbook(
        "run",
        "db-slow-queries",
        "-p",
        "dsn",
        "host=127.0.0.1 port=1 connect_timeout=2",
        "--incident",
        "INC-7",
        "--output-dir",
        str(tmp_path),
    )
    assert result.returncode == 1
    evidence_path = Path(result.stdout.strip().splitlines()[-1])
    assert evidence_path.parent == tmp_path / "INC-7"
    assert len(result.stderr.strip().splitlines()) == 1 and "Connection refused" in result.stderr
    record = json.loads(evidence_path.read_text())
    assert record["status"] == "failed" and record["error"]["ename"] == "DatabaseUnreachable"
    stem = evidence_path.name.removesuffix(".evidence.json")
    assert stem.endswith("-db-slow-queries") and len(stem.split("-")[0]) == len("20261126T031500Z")
    assert sorted(p.name for p in evidence_path.parent.iterdir()) == sorted(
        [f"{stem}.evidence.json", f"{stem}.html", f"{stem}.ipynb"]
    )


def test_parameters_merge_env_then_files_then_pairs(tmp_path, server):
    # prod.yaml sets limit 20 and a dsn; the file overrides the dsn; -p overrides the limit.
    override = tmp_path / "incident.yaml"
    override.write_text(f'dsn: "{server.dsn()}"\nlimit: 3\nmin_duration_seconds: 60\n')
    result = runbook(
        "run",
        "db-slow-queries",
        "--env",
        "prod",
        "-f",
        str(override),
        "-p",
        "limit",
        "4",
        "--output-dir",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(Path(result.stdout.strip().splitlines()[-1]).read_text())
    assert record["parameters"]["limit"] == 4
    assert record["parameters"]["min_duration_seconds"] == 60
    assert record["parameters"]["dsn"] == server.dsn()
    assert record["environment"]["package_version"] and record["environment"]["host"]


def test_unreachable_cluster_exits_1_with_the_reason_in_the_evidence(tmp_path):
    from runbooks_sandbox.kubeapi.kubeconfig import write_kubeconfig

    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", "http://127.0.0.1:1", context="gone", namespace="autolytiq-prod"
    )
    result = runbook("run", "pod-oomkilled", "-p", "kubeconfig", str(kubeconfig), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "ClusterUnreachable" in result.stderr
    record = json.loads(Path(result.stdout.strip().splitlines()[-1]).read_text())
    assert record["status"] == "failed" and "does not answer" in record["error"]["evalue"]

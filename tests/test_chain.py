"""The evidence hash chain without kernels: concurrent writers, seals, and what verify names.

Runs of real runbooks (tests/test_review.py) check the same on evidence the runner wrote.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from runbooks import chain, cli
from runbooks.errors import UsageError

WRITERS, EACH = 6, 5


def write_run(folder: Path, stem: str, **extra) -> Path:
    """An evidence file as the runner leaves it: a notebook and HTML, and the record listing their hashes."""
    artifacts = []
    for suffix in (".ipynb", ".html"):
        path = folder / f"{stem}{suffix}"
        path.write_text(f"{stem}{suffix} contents\n")
        artifacts.append({"path": path.name, "sha256": chain.sha256(path)})
    evidence = folder / f"{stem}{chain.EVIDENCE}"
    chain.write(evidence, json.dumps({"runbook": stem.split("-", 1)[1], "artifacts": artifacts, **extra}, indent=2))
    return evidence


def writer(folder: str, worker: int) -> None:
    for i in range(EACH):
        write_run(Path(folder), f"20261126T0315{i:02d}Z-worker-{worker}")


def links(folder: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text())["chain"] for p in folder.glob(f"*{chain.EVIDENCE}")}


def test_concurrent_writers_of_one_incident_make_one_unforked_chain(tmp_path):
    with ProcessPoolExecutor(WRITERS) as pool:
        list(pool.map(writer, [str(tmp_path)] * WRITERS, range(WRITERS)))

    chained = links(tmp_path)
    assert len(chained) == WRITERS * EACH
    assert sorted(c["sequence"] for c in chained.values()) == list(range(1, WRITERS * EACH + 1))
    previous = [c["previous"]["path"] for c in chained.values() if c["previous"]]
    assert len(previous) == len(set(previous)) == WRITERS * EACH - 1  # each file is linked once at most: no fork
    result = chain.verify(tmp_path)
    assert result.intact, [p.line() for p in result.problems]
    assert max(chained, key=lambda name: chained[name]["sequence"]) == result.last[0]


def test_the_chain_follows_write_order_not_file_names(tmp_path):
    # Started later, finished first: the second file's name sorts before the first's.
    first = write_run(tmp_path, "20261126T031510Z-db-slow-queries")
    second = write_run(tmp_path, "20261126T031500Z-pod-oomkilled")
    third = write_run(tmp_path, "20261126T031505Z-triage")

    chained = links(tmp_path)
    assert chained[first.name] == {"sequence": 1, "previous": None, "seal": chained[first.name]["seal"]}
    assert chained[second.name]["previous"]["path"] == first.name
    assert chained[third.name]["previous"] == {"path": second.name, "sha256": chain.sha256(second)}
    assert chain.verify(tmp_path).last == (third.name, chain.sha256(third))


def test_a_changed_byte_in_the_last_file_breaks_its_seal(tmp_path):
    write_run(tmp_path, "20261126T031500Z-triage")
    last = write_run(tmp_path, "20261126T031600Z-triage", note="error rate 12 %")
    last.write_text(last.read_text().replace("12 %", "2 %"))  # still valid JSON: only the seal can tell

    problems = chain.verify(tmp_path).problems
    assert [p.line() for p in problems] == [f"changed: {last.name}: its bytes differ from its seal"]


def test_whitespace_counts_too(tmp_path):
    last = write_run(tmp_path, "20261126T031500Z-triage")
    last.write_text(last.read_text().replace('\n  "runbook"', '\n   "runbook"'))

    assert [p.kind for p in chain.verify(tmp_path).problems] == ["changed"]


def test_files_next_to_the_evidence_that_are_not_runs_are_left_alone(tmp_path):
    write_run(tmp_path, "20261126T031500Z-triage")
    chain.append(tmp_path / "alerts.jsonl", {"alert": "HighErrorRate"})  # the incident log is a chain member
    (tmp_path / "review.md").write_text("# Post-Incident Review\n")
    (tmp_path / "review.html").write_text("<h1>Post-Incident Review</h1>\n")
    write_run(tmp_path, "20261126T031600Z-db-slow-queries", alert={"fingerprint": "abc"})

    result = chain.verify(tmp_path)
    assert result.intact and len(result.evidence) == 2 and result.artifacts == 4


def test_a_link_outside_the_folder_is_refused_without_reading_it(tmp_path):
    first = write_run(tmp_path, "20261126T031500Z-triage")
    record = json.loads(first.read_text())
    record["artifacts"][0]["path"] = "../../etc/passwd"
    first.unlink()
    chain.write(first, json.dumps(record))

    lines = [p.line() for p in chain.verify(tmp_path).problems]
    assert any(
        line.startswith("changed: ../../etc/passwd:") and "outside the incident folder" in line for line in lines
    )


# --- the keyed seal, the incident log under the chain, the head kept elsewhere

KEY = "0123456789abcdef0123456789abcdef"


def reseal_without_the_key(path: Path) -> None:
    """What whoever can write the folder, but has no key, can do: recompute a plain seal over an edited file."""
    text = path.read_text()
    seal = json.loads(text)["chain"]["seal"]
    unsealed = text.replace(f'"seal": "{seal}"', f'"seal": "{chain.UNSEALED}"')
    path.write_text(unsealed.replace(chain.UNSEALED, chain.hashlib.sha256(unsealed.encode()).hexdigest()))


def test_with_a_key_an_edited_and_resealed_record_is_caught(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_SEAL_KEY", KEY)
    write_run(tmp_path, "20261126T031500Z-triage")
    last = write_run(tmp_path, "20261126T031600Z-triage", note="error rate 12 %")
    assert "key" in json.loads(last.read_text())["chain"]
    result = chain.verify(tmp_path)
    assert result.intact and result.key == chain.key_id(KEY.encode()) and result.keyed == 2
    assert result.seals() == f"seals: checked with key {result.key} (2 of 2 keyed)"

    text = last.read_text().replace("12 %", "2 %")
    record = json.loads(text)
    del record["chain"]["key"]  # a plain seal, as the unkeyed chain had: accepted then
    last.write_text(json.dumps(record, indent=2) + "\n")
    reseal_without_the_key(last)
    assert [p.line() for p in chain.verify(tmp_path).problems] == [
        f"changed: {last.name}: sealed without the key: anyone who can write the folder could have written it"
    ]
    monkeypatch.delenv("RUNBOOK_SEAL_KEY")  # without the key, the forgery passes: what unkeyed seals allow
    assert chain.verify(tmp_path).intact


def test_with_a_key_a_chain_restarted_after_deleting_earlier_runs_is_caught(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_SEAL_KEY", KEY)
    first = write_run(tmp_path, "20261126T031500Z-triage")
    write_run(tmp_path, "20261126T031600Z-db-slow-queries")
    monkeypatch.delenv("RUNBOOK_SEAL_KEY")
    for p in tmp_path.iterdir():  # the first run deleted, the second rewritten as the chain's start
        if p.name.startswith(first.name.split("-")[0]):
            p.unlink()
    second = next(tmp_path.glob(f"*{chain.EVIDENCE}"))
    record = json.loads(second.read_text())
    del record["chain"]
    second.unlink()
    chain.write(second, json.dumps(record))

    assert chain.verify(tmp_path).intact  # unkeyed: nothing can tell
    result = chain.verify(tmp_path, key=KEY.encode())
    assert [p.line() for p in result.problems] == [
        f"changed: {second.name}: sealed without the key: anyone who can write the folder could have written it"
    ]


def test_keyed_seals_without_the_key_say_they_were_not_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_SEAL_KEY", KEY)
    write_run(tmp_path, "20261126T031500Z-triage")
    monkeypatch.delenv("RUNBOOK_SEAL_KEY")
    result = chain.verify(tmp_path)
    assert result.intact and result.unchecked == 1 and "NOT checked: no key given" in result.seals()
    name, key = next(tmp_path.glob("*.evidence.json")).name, chain.key_id(KEY.encode())
    assert [p.line() for p in chain.verify(tmp_path, key=b"another key, 32 bytes long......").problems] == [
        f"changed: {name}: sealed with another key ({key})"
    ]


def test_the_key_comes_from_a_file_outside_the_output_folder_and_is_long_enough(tmp_path, monkeypatch):
    incident = tmp_path / "output" / "INC-1"
    incident.mkdir(parents=True)
    inside = tmp_path / "output" / "seal.key"
    inside.write_text(KEY)
    monkeypatch.setenv("RUNBOOK_SEAL_KEY_FILE", str(inside))
    with pytest.raises(UsageError, match="lies in the output folder"):
        chain.seal_key(incident)
    outside = tmp_path / "seal.key"
    outside.write_text(KEY + "\n")
    monkeypatch.setenv("RUNBOOK_SEAL_KEY_FILE", str(outside))
    assert chain.seal_key(incident) == KEY.encode()
    monkeypatch.setenv("RUNBOOK_SEAL_KEY", "short")
    with pytest.raises(UsageError, match="at least 16"):
        chain.seal_key(incident)


def test_the_incident_log_is_under_the_chain(tmp_path):
    write_run(tmp_path, "20261126T031500Z-triage")
    head = chain.append(tmp_path / "alerts.jsonl", {"alertname": "HighErrorRate", "state": "queued"})
    last = write_run(tmp_path, "20261126T031600Z-db-slow-queries")
    chain.append(tmp_path / "alerts.jsonl", {"alertname": "HighErrorRate", "state": "resolved"})
    assert head.name == "alerts.jsonl:1"
    assert json.loads(last.read_text())["chain"]["previous"] == {
        "path": "alerts.jsonl",
        "line": 1,
        "sha256": head.sha256,
    }
    result = chain.verify(tmp_path)
    assert result.intact and result.log_lines == 2 and result.last[0] == "alerts.jsonl:2"

    log = tmp_path / "alerts.jsonl"
    log.write_text(log.read_text().replace('"queued"', '"unrouted"'))  # the first alert's fate rewritten
    assert [p.line().split(": ")[:2] for p in chain.verify(tmp_path).problems] == [["changed", "alerts.jsonl:1"]]


def test_a_head_kept_elsewhere_catches_the_last_runs_removed(tmp_path):
    write_run(tmp_path, "20261126T031500Z-triage")
    last = write_run(tmp_path, "20261126T031600Z-db-slow-queries")
    kept = chain.verify(tmp_path).last[1]
    for p in tmp_path.glob(f"{last.name.removesuffix(chain.EVIDENCE)}*"):
        p.unlink()
    assert chain.verify(tmp_path).intact  # what is left is a whole chain
    assert [p.line() for p in chain.verify(tmp_path, head=kept).problems] == [
        f"removed: sha256 {kept}: the head kept elsewhere is no longer in the chain"
    ]


def test_runbook_run_prints_the_new_head_and_verify_says_the_key_was_used(run_runbook, server, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_SEAL_KEY", KEY)
    outcome = run_runbook("db-connection-pool-exhausted", "-p", "dsn", server.dsn(), "--incident", "INC-2")
    name, digest = chain.verify(outcome.evidence_path.parent).last
    assert outcome.stdout.splitlines()[-2] == f"INC-2: the chain ends at {name} (sha256 {digest})"
    result = CliRunner().invoke(cli.main, ["verify", "INC-2", "--output-dir", str(tmp_path), "--head", digest])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"seals: checked with key {chain.key_id(KEY.encode())} (1 of 1 keyed)"
    assert KEY not in "".join(p.read_text() for p in outcome.evidence_path.parent.iterdir())

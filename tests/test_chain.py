"""The evidence hash chain without kernels: concurrent writers, seals, and what verify names.

Runs of real runbooks (tests/test_review.py) check the same on evidence the runner wrote.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from runbooks import chain

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
    (tmp_path / "alerts.jsonl").write_text('{"alert": "HighErrorRate"}\n')
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

"""`make demo` (= `runbook demo`): the README's first command does what it says."""

import json
from pathlib import Path

from click.testing import CliRunner

from runbooks import chain, cli


def test_demo_diagnoses_the_pool_exhaustion_and_leaves_evidence_a_review_and_an_intact_chain(tmp_path):
    result = CliRunner().invoke(cli.main, ["demo", "--output-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    evidence = Path(result.stdout.splitlines()[-1])  # the last line: the evidence file
    assert evidence.parent == tmp_path / "demo" and evidence.is_file()
    record = json.loads(evidence.read_text())
    findings = {f["id"]: f["data"] for f in record["findings"]}
    assert findings["pool-usage"]["client_connections"] == 17  # every ordinary slot held by the demo's pools
    assert record["actions"] and {a["mode"] for a in record["actions"]} == {"dry-run"}  # nothing terminated
    assert "Evidence chain of incident demo: intact, 1 evidence file " in result.stdout
    assert (tmp_path / "demo" / "review.md").is_file() and chain.verify(tmp_path / "demo").intact

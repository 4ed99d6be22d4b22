"""`runbook sandbox` as an engineer uses it: start it, run runbooks against it, stop it with Ctrl-C."""

import json
import signal
import subprocess
from pathlib import Path

from runbooks import catalog
from test_cli import RUNBOOK


def test_sandbox_serves_every_target_until_interrupted(tmp_path):
    sandbox = subprocess.Popen([RUNBOOK, "sandbox"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in sandbox.stdout:  # wait for it to be up
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        assert (catalog.PARAMETERS / "sandbox.yaml").is_file(), "".join(lines)
        result = subprocess.run([RUNBOOK, "run", "db-slow-queries", "--env", "sandbox", "-p", "min_duration_seconds", "0.5",
                                 "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        findings = {f["id"]: f for f in json.loads(Path(result.stdout.splitlines()[-1]).read_text())["findings"]}
        assert findings["root-blocker"]["severity"] == "critical"
        assert len(findings["long-running-queries"]["data"]["pids"]) >= 4  # the chain, the report, idle transactions
    finally:
        sandbox.send_signal(signal.SIGINT)
        sandbox.wait(timeout=60)
    assert sandbox.returncode == 0, sandbox.stderr.read()
    assert not (catalog.PARAMETERS / "sandbox.yaml").exists()

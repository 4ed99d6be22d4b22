"""The notebooks as committed, and each one run under nbval against the test server."""

import json
import os
import subprocess
import sys

import pytest

from runbooks import catalog
from runbooks.sandbox.kubeapi.kubeconfig import write_kubeconfig

NOTEBOOKS = sorted(catalog.NOTEBOOKS.glob("*.ipynb"))


def test_there_are_runbooks():
    assert {p.stem for p in NOTEBOOKS} >= {"db-connection-pool-exhausted", "db-slow-queries"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {index} has outputs"
            assert cell["execution_count"] is None, f"cell {index} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_reads_like_the_runbook(path):
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    assert "parameters" in cells[1]["metadata"].get("tags", [])
    assert "apply" in catalog.load(path).parameters


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_under_nbval_against_the_test_servers(path, server, kube_api, tmp_path):
    # Run with their defaults: an empty dsn makes libpq read PG* variables, an empty kubeconfig
    # makes the client read $KUBECONFIG, whose context namespace holds the autolytiq-prod scenario.
    kube_api.load("autolytiq-prod")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_api.url, context="sandbox", namespace="autolytiq-prod")
    env = {**os.environ, "PGHOST": server.socket_dir, "PGPORT": str(server.port),
           "PGUSER": "autolytiq_admin", "PGDATABASE": "autolytiq", "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(path)],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout

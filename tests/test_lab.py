"""`runbook open` serving a real JupyterLab, driven through the lab's own API as JupyterLab calls it: the token,
the password in the working copy's kernel only, a second `runbook open` reusing the lab, saves sealed.

(tests/test_lab_browser.py drives the same lab from a real browser.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from psycopg import sql

from labs import RUNBOOK, OpenLab, start
from runbooks import runfiles

INCIDENT = "INC-9"
PASSWORD = "Tr0ub4dor-and-3"  # as conftest's admin_password


@pytest.fixture(scope="module")
def tcp_dsn(pg):
    """A dsn over TCP with the admin's password in it: the server asks for it, so only a kernel given it connects."""
    with pg.connect() as conn:
        conn.execute(sql.SQL("ALTER ROLE autolytiq_admin PASSWORD {}").format(sql.Literal(PASSWORD)))
    return pg.tcp_dsn(password=PASSWORD)


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lab") / "output"


@pytest.fixture(scope="module")
def lab(output, tcp_dsn, tmp_path_factory):
    args = ["db-connection-pool-exhausted", "--incident", INCIDENT, "-p", "dsn", tcp_dsn]
    opened = start(*args, "--output-dir", str(output), "--port", "0", log=tmp_path_factory.mktemp("log") / "lab.log")
    yield opened
    assert opened.stop() == 0


def test_the_lab_serves_the_working_copy_on_loopback_behind_a_token(lab, output):
    assert lab.url.startswith("http://127.0.0.1:")
    assert lab.url.endswith(f"/lab/tree/{INCIDENT}/{lab.copy.name}?token={lab.token}")
    assert len(lab.token) >= 32
    path = lab.api_path(lab.copy, output)
    assert lab.api("GET", f"contents/{path}").json()["type"] == "notebook"
    assert lab.api("GET", f"contents/{path}", token=False).status_code == 403
    assert PASSWORD not in lab.copy.read_text()


def test_only_the_working_copys_kernel_gets_the_password(lab, output):
    kernel = lab.kernel_for(lab.copy, output)
    assert lab.execute(kernel, "import os; print(os.environ.get('PGPASSWORD'))").strip() == PASSWORD
    assert lab.execute(kernel, "import os; print(os.getcwd())").strip() == str((output / INCIDENT).resolve())

    other = output / INCIDENT / "scratch.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), other)
    kernel = lab.kernel_for(other, output)
    assert lab.execute(kernel, "import os; print(os.environ.get('PGPASSWORD'))").strip() == "None"


def test_a_second_open_reuses_the_lab_for_another_notebook_of_the_incident(lab, output, tcp_dsn):
    result = subprocess.run(
        [RUNBOOK, "open", "db-slow-queries", "--incident", INCIDENT, "-p", "dsn", tcp_dsn, "--output-dir", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    copy, url = result.stdout.splitlines()
    assert url.startswith(f"{lab.base}/lab/tree/{INCIDENT}/") and url.endswith(f"?token={lab.token}")
    assert Path(copy).parent == lab.copy.parent and PASSWORD not in Path(copy).read_text()

    kernel = lab.kernel_for(Path(copy), output)
    assert lab.execute(kernel, "import os; print(os.environ.get('PGPASSWORD'))").strip() == PASSWORD
    injected = next(
        c.source for c in nbformat.read(copy, as_version=4).cells if "injected-parameters" in c.metadata.tags
    )
    connect = "db = __import__('psycopg').connect(dsn); print(db.info.user); db.close()"
    assert lab.execute(kernel, f"{injected}\n{connect}").strip() == "autolytiq_admin"  # the password from the env


def test_saves_are_sealed_once_per_pause_and_what_is_pending_when_the_lab_stops(tcp_dsn, tmp_path):
    output = tmp_path / "output"
    args = ["db-connection-pool-exhausted", "--incident", INCIDENT, "-p", "dsn", tcp_dsn, "--seal-after", "1"]
    lab: OpenLab = start(*args, "--output-dir", str(output), "--port", "0", log=tmp_path / "lab.log")
    folder = output / INCIDENT
    try:
        for count in range(1, 21):  # a save storm: twenty saves in a few seconds
            notebook = nbformat.read(lab.copy, as_version=4)
            notebook.cells[1].execution_count = count
            notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text=f"PGPASSWORD={PASSWORD}\n")]  # oops
            nbformat.write(notebook, lab.copy)
            lab.save(lab.copy, output)
        deadline = time.monotonic() + 60
        while not runfiles.evidence_files(folder) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # a second seal, if the storm made one, would come within the pause
        assert len(runfiles.evidence_files(folder)) == 1

        [evidence] = runfiles.evidence_files(folder)
        sealed = folder / evidence.name.replace(".evidence.json", ".ipynb")
        before = sealed.read_bytes()
        assert (
            lab.api("PUT", f"contents/{INCIDENT}/{sealed.name}", {"type": "notebook", "content": {}}).status_code == 403
        )
        assert sealed.read_bytes() == before  # sealed evidence is not saved over from the lab

        lab.save(lab.copy, output)
    finally:
        assert lab.stop(signal.SIGINT) == 0  # Ctrl-C at once, well within the pause
    records = [json.loads(path.read_text()) for path in runfiles.evidence_files(folder)]
    assert sorted(r["session"]["seal"] for r in records) == [1, 2]
    sealed = [path for path in folder.iterdir() if path.is_file() and path != lab.copy]
    assert len(sealed) == 6 and all(PASSWORD not in path.read_text() for path in sealed)  # the lab scrubs it
    assert (
        "intact: 2 evidence files"
        in subprocess.run(
            [RUNBOOK, "verify", INCIDENT, "--output-dir", str(output)], capture_output=True, text=True
        ).stdout
    )

"""An engineer in a real browser: `runbook open` against the test PostgreSQL mid-incident, the working copy opened
in JupyterLab in Debian's chromium (driven by Playwright), every cell run from the Run menu, one cell edited and
run again, Ctrl-S; then the incident folder holds sealed evidence naming the diagnosis and the edited cell, and
`runbook verify` says intact."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from playwright.sync_api import expect, sync_playwright
from psycopg import sql

from labs import RUNBOOK, start
from runbooks import runfiles
from runbooks_sandbox.incidents import Pool, hold_pools

INCIDENT = "INC-9"
PASSWORD = "Tr0ub4dor-and-3"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's; `make setup` installs it
EDIT = "record(diagnosis.assess(usage, by_application.head(20), idle, idle_minutes))"
ALL_RAN = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim());
    return prompts.length > 0 && prompts.every(text => /^\\[\\d+\\]:$/.test(text));
}"""


def sealed(folder) -> list[dict]:
    """The incident's evidence records, in chain order."""
    records = [json.loads(path.read_text()) for path in runfiles.evidence_files(folder)]
    return sorted(records, key=lambda record: record["chain"]["sequence"])


@pytest.fixture
def browser():
    assert shutil.which(CHROMIUM), "chromium is missing: `make setup` installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_an_engineer_steps_through_edits_saves_and_the_evidence_is_sealed(pg, server, browser, tmp_path):
    with server.connect() as conn:
        conn.execute(sql.SQL("ALTER ROLE autolytiq_admin PASSWORD {}").format(sql.Literal(PASSWORD)))
    output = tmp_path / "output"
    with hold_pools(pg, [Pool("deal-service", "deal_service", 3, in_transaction=1)]):
        time.sleep(1.5)  # the sessions age past idle_minutes 0.02 (1.2 s)
        args = ["db-connection-pool-exhausted", "--incident", INCIDENT, "-p", "dsn", server.tcp_dsn(password=PASSWORD)]
        args += ["-p", "idle_minutes", "0.02", "--operator", "alice", "--seal-after", "1", "--port", "0"]
        lab = start(*args, "--output-dir", str(output), log=tmp_path / "lab.log")
        try:
            page = browser.new_page()
            page.goto(lab.url)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            lab.wait_for_browser_kernel(lab.copy)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            page.wait_for_function(ALL_RAN, timeout=120_000)

            findings = page.locator(".jp-Notebook .jp-Cell").nth(12)  # "## Findings" is 11; the injected cell is 2
            findings.scroll_into_view_if_needed()  # JupyterLab renders the editors of the cells in view only
            expect(findings.locator(".cm-content")).to_contain_text("record(diagnosis.assess(")
            findings.locator(".cm-content").click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(EDIT)
            page.keyboard.press("Control+Enter")
            expect(findings.locator(".jp-InputArea-prompt")).to_have_text("[11]:", timeout=60_000)  # 10 code cells
            page.keyboard.press("Control+s")

            folder = output / INCIDENT
            deadline = time.monotonic() + 90
            while not (seals := sealed(folder)) or not seals[-1]["session"]["edited"]:
                assert time.monotonic() < deadline, "no seal of the saved notebook within 90 s"
                time.sleep(0.5)
        finally:
            assert lab.stop() == 0, (tmp_path / "lab.log").read_text()

    record = sealed(folder)[-1]  # JupyterLab may have saved before too: the last seal is of the last save
    assert record["mode"] == "interactive" and record["operator"] == "alice"
    assert {"pool-usage", "top-application", "stale-idle-sessions"} <= {f["id"] for f in record["findings"]}
    [edited] = record["session"]["edited"]
    assert edited["cell"] == edited["runbook_cell"] == 12
    assert f"+{EDIT}" in edited["diff"]
    assert record["session"]["out_of_order"] == [12]  # run again after the cells below it
    assert record["status"] == "partial" and "cell 12 executed out of order" in record["session"]["reason"]
    assert all(PASSWORD not in path.read_text() for path in folder.iterdir() if path.is_file())

    verified = subprocess.run(
        [RUNBOOK, "verify", INCIDENT, "--output-dir", str(output)], capture_output=True, text=True
    )
    assert verified.returncode == 0 and f"{INCIDENT}: intact:" in verified.stdout

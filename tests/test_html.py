"""The HTML of a run as a person opens it: rendered by headless Chromium (Debian's `chromium`), its first screen
shows the summary, code is folded away, and what is shown reads in units and words, never a Python repr."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RUNBOOK = str(Path(sys.executable).parent / "runbook")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREEN = (1280, 800)  # the first screen of a laptop browser window
NS = "autolytiq-prod"

# Measures the page as laid out, and writes what it found into the DOM, which --dump-dom then prints.
PROBE = """
<script>
window.addEventListener("load", () => {
  const box = (el) => { const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom}; };
  const summary = document.getElementById("runbook-summary");
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    summary: summary ? box(summary) : null,
    findings: summary ? [...summary.querySelectorAll("li")].map((li) => ({...box(li), text: li.innerText})) : [],
    text: document.body.innerText,
    folded: [...document.querySelectorAll("details.runbook-code")].map((d) => d.open),
    page: document.documentElement.scrollHeight,
  });
  document.body.appendChild(out);
});
</script>
"""


def rendered(html: Path, tmp_path: Path) -> dict:
    """What headless Chromium lays out in a SCREEN-sized window: the summary's place, the visible text, the folds."""
    probe = tmp_path / "probe.html"
    probe.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--window-size={SCREEN[0]},{SCREEN[1]}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, result.stderr[-2000:]
    import html as html_module

    return json.loads(html_module.unescape(match.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make setup installs it)")
def test_the_first_screen_shows_the_summary_and_the_code_is_folded(prod, tmp_path):
    result = subprocess.run(
        [RUNBOOK, "run", "pod-oomkilled", *prod.runbook_args(NS), "--output-dir", str(tmp_path), "--incident", "I"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    evidence = Path(result.stdout.splitlines()[-1])
    html = evidence.with_name(evidence.name.replace(".evidence.json", ".html"))
    record = json.loads(evidence.read_text())
    page = rendered(html, tmp_path)

    height = SCREEN[1]
    assert page["summary"] and 0 <= page["summary"]["top"] < 100  # the summary opens the page
    critical = next(f for f in page["findings"] if f["text"].startswith("critical"))
    assert critical["bottom"] <= height  # the critical finding is on the first screen
    assert "1 container OOMKilled at its own limit" in critical["text"]
    shown = [f for f in page["findings"] if f["bottom"] <= height]
    assert len(shown) >= len(record["findings"])  # every finding is on the first screen
    assert page["text"].index("Findings: 1 critical, 1 warning, 2 info") < page["text"].index("Step 1")
    assert "previewed" in page["text"] and "set-memory on deployment/auth-service" in page["text"]

    assert page["folded"] and not any(page["folded"])  # every cell's code is there, folded
    for hidden in ("papermill_description", "diagnosis.", "import "):
        assert hidden not in page["text"]
    for repr_or_gap in ("datetime.", "Timedelta(", "Cadence(", "NaT", "NaN", "nan ->", "0 days "):
        assert repr_or_gap not in page["text"]
    assert "247Mi" in page["text"] and "256Mi" in page["text"] and "96.5 %" in page["text"]  # memory, shares
    assert "258998272" not in page["text"]


def test_the_summary_is_text_whatever_a_finding_says(tmp_path):
    """A finding's text from outside (a pod name, a log line) is escaped in the summary, never markup."""
    import datetime as dt

    import nbformat

    from runbooks import rendering
    from runbooks.evidence import Record

    now = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.timezone.utc)
    record = Record(
        "pod-oomkilled",
        "INC-1",
        now,
        now,
        "completed",
        None,
        {"kubeconfig": "", "context": "<b>ctx</b>", "namespace": "ns"},
        ({"id": "x", "summary": "<script>alert(1)</script> pod", "severity": "critical", "data": None},),
        (),
        (),
        {},
        None,
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## Step 1 — <i>look</i>")])
    html = rendering.html(notebook, record, "Pod <OOM>")
    summary = html[html.index('id="runbook-summary"') :]
    assert "<script>alert(1)</script>" not in summary and "&lt;script&gt;alert(1)&lt;/script&gt; pod" in summary
    assert "<h1>Pod &lt;OOM&gt;</h1>" in summary and "<b>ctx</b>" not in summary
    assert "Step 1 — &lt;i&gt;look&lt;/i&gt;" in summary

"""Text from outside never becomes markup: application names, log lines and alert labels an attacker chooses go
through real runs, and the executed notebook's HTML (what a review opens), each Markdown output as nbconvert would
render it, the text outputs and the post-incident review show them as text."""

from __future__ import annotations

import datetime as dt
import json
import time
from html.parser import HTMLParser

import nbformat
import pytest
from click.testing import CliRunner
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from runbooks import cli, escape
from runbooks.diagnoses import third_party_api_down, triage
from runbooks.evidence import Action, Finding
from runbooks_sandbox.incidents import Pool, hold_pools

IMG = "<img src=x onerror=alert(1)>"
MATH = "$\\href{javascript:alert(2)}{x}$"
LINK = "[y](javascript:alert(3))"
NS = "autolytiq-prod"


class Page(HTMLParser):
    """Every tag of an HTML document, and each piece of text with the tags and classes around it."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.texts: list[tuple[str, list[tuple[str, str]]]] = []
        self._open: list[tuple[str, str]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag not in ("img", "br", "hr", "meta", "link", "input", "source"):
            self._open.append((tag, attributes.get("class") or ""))

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        self.texts.append((data, list(self._open)))


def assert_no_markup_from(text: str, *hostile: str, math: bool = True) -> None:
    """No live tag, handler, script link or (`math`: in a page that loads MathJax) typesettable math came from
    the hostile strings; each is shown. Markdown escapes `$` as `\\$`, which renders as `$`: Markdown outputs
    are not what nbconvert puts in a page (it prefers the HTML each output also has), so `math=False` there."""
    page = Page(text)
    for tag, attributes in page.tags:
        assert not any(name.startswith("on") for name in attributes), (tag, attributes)
        assert not (tag == "img" and not attributes.get("src", "").startswith("data:image/")), (tag, attributes)
        assert not any("javascript:" in (value or "") for value in attributes.values()), (tag, attributes)
    shown = "".join(data for data, _ in page.texts)
    for h in hostile:
        assert h in shown or escape.plain(h) in shown, f"{h!r} is not shown as text"
    for data, around in page.texts if math else ():
        if "$\\href" in data:  # MathJax typesets math anywhere but in pre, code and tex2jax_ignore
            assert any(t in ("pre", "code", "script") or escape.NO_MATH in c.split() for t, c in around), around


def markdown_outputs(notebook: nbformat.NotebookNode) -> list[str]:
    return [
        o["data"]["text/markdown"]
        for cell in notebook.cells
        for o in cell.get("outputs", [])
        if "text/markdown" in o.get("data", {})
    ]


def test_hostile_application_names_stay_text_in_every_output_of_a_pool_exhaustion_run(server, run_runbook):
    pools = [
        Pool(IMG, "deal_service", 8, in_transaction=2),
        Pool(MATH, "customer_service", 5),
        Pool(LINK, "tax_service", 4),
    ]
    with hold_pools(server, pools):
        time.sleep(1.5)
        outcome = run_runbook("db-connection-pool-exhausted", "-p", "dsn", server.dsn(), "-p", "idle_minutes", "0.02")

    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.findings()["top-application"]["data"]["application"] == IMG
    html = outcome.evidence_path.with_name(outcome.evidence_path.name.replace(".evidence.json", ".html")).read_text()
    assert_no_markup_from(html, IMG, MATH, LINK)
    notebook = nbformat.read(outcome.evidence_path.with_name(outcome.evidence["artifacts"][0]["path"]), 4)
    rendered = [markdown2html_mistune(text) for text in markdown_outputs(notebook)]
    assert any(IMG in "".join(data for data, _ in Page(r).texts) for r in rendered)
    for r in rendered:
        assert_no_markup_from(r, math=False)

    # The post-incident review of that incident, Markdown and HTML.
    result = CliRunner().invoke(cli.main, ["report", "adhoc", "--output-dir", str(outcome.evidence_path.parents[1])])
    assert result.exit_code == 0, result.output
    review_md = outcome.evidence_path.with_name("review.md").read_text()
    assert_no_markup_from(markdown2html_mistune(review_md), IMG, LINK, math=False)
    review_html = outcome.evidence_path.with_name("review.html").read_text()
    assert "<script" not in review_html  # no MathJax there: a `$` is text
    assert_no_markup_from(review_html, IMG, LINK, math=False)


FENCE_BREAKERS = [
    "level=error msg=upstream\r```\r<img src=y onerror=alert(4)>",
    "```",
    "level=error path=/a\r````\r# error heading **bold** [z](javascript:alert(5))",
    "level=error ```` ``` \x1b[2J\x1b[31m terminal",
]


def test_log_lines_cannot_close_the_fence_they_are_shown_in(run_runbook, prod):
    now = dt.datetime.now(dt.timezone.utc)
    lines = [(now - dt.timedelta(seconds=30 - i), line) for i, line in enumerate(FENCE_BREAKERS)]
    prod.set_logs(NS, "api-gateway-7d9f8b6c5d-q7m4z", "gateway", current=lines)
    outcome = run_runbook("triage", *prod.runbook_args(NS))

    assert outcome.exit_code == 0, outcome.stderr
    html = outcome.evidence_path.with_name(outcome.evidence_path.name.replace(".evidence.json", ".html")).read_text()
    assert_no_markup_from(html, "<img src=y onerror=alert(4)>")
    page = Page(html)
    assert not any(tag in ("h1", "h2") and "error heading" in data for data, around in page.texts for tag, _ in around)
    notebook = nbformat.read(outcome.evidence_path.with_name(outcome.evidence["artifacts"][0]["path"]), 4)
    (errors,) = [t for t in markdown_outputs(notebook) if t.startswith("*") and t.endswith("```")]
    rendered = Page(markdown2html_mistune(errors))
    for data, around in rendered.texts:  # every log line stays inside the one code block
        if "level=error" in data or "error heading" in data:
            assert [t for t, _ in around if t == "pre"], (data, around)
    assert "\x1b" not in html and "\r" not in errors


def test_error_lines_and_drafts_show_any_line_as_text():
    lines = third_party_api_down.ErrorLines({IMG: ["taxrates.example timeout\r```", f"```\n{LINK}", "``````"]})
    drafts = triage.Drafts(slack_declared=f"INCIDENT\n```\n{IMG}\n", status_investigating=None)
    for shown in (lines, drafts):
        assert_no_markup_from(markdown2html_mistune(shown._repr_markdown_()), IMG, math=False)
        assert_no_markup_from(shown._repr_html_(), IMG)
        for data, around in Page(markdown2html_mistune(shown._repr_markdown_())).texts:
            if IMG in data and data.strip() != IMG:  # the heading names the dependency; the lines are code
                assert [t for t, _ in around if t in ("pre", "code")], (data, around)


@pytest.mark.parametrize("item", [Finding("x`y", f"{IMG} {MATH} {LINK}\r# h"), Action("a", "dry-run", IMG, LINK)])
def test_findings_and_actions_show_outside_words_as_text(item):
    assert_no_markup_from(item.html(), IMG)
    assert_no_markup_from(markdown2html_mistune(item.markdown()), IMG, math=False)
    assert "\r" not in item.text() and "\n" not in item.text()


def test_the_terminal_never_gets_control_sequences_from_evidence(tmp_path):
    folder = tmp_path / "INC-9"
    folder.mkdir()
    (folder / "20261126T031500Z-x\x1b[2J.evidence.json").write_text(json.dumps({"not": "evidence"}))
    result = CliRunner().invoke(cli.main, ["verify", "INC-9", "--output-dir", str(tmp_path)])
    assert "\x1b" not in result.output and "\\x1b[2J" in result.output

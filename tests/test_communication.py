"""The communication templates: every kind renders, known fields fill in, unknown ones stay visible."""

import re
from pathlib import Path

import pytest

from runbooks import communication

SOURCE_RUNBOOK = Path(__file__).resolve().parents[2] / "shared" / "seed" / "incident-response-runbook.md"


# The runbook's "Via Slack" escalation lists what to include; it has no template with placeholders of its own.
TEMPLATED = [kind for kind in communication.KINDS if kind != "slack-escalation"]


@pytest.mark.parametrize("kind", TEMPLATED)
def test_with_no_fields_every_placeholder_of_the_template_stays(kind):
    text = communication.render(kind)
    placeholders = re.findall(r"\[[^\]]+\]", text)
    assert placeholders, text
    if (
        SOURCE_RUNBOOK.exists()
    ):  # the empty rendering is the incident-response runbook's template, placeholder for placeholder
        document = SOURCE_RUNBOOK.read_text()
        for placeholder in placeholders:
            assert placeholder in document, placeholder


def test_fields_fill_in_and_lists_become_bullets():
    text = communication.render(
        "slack-update", incident="Checkout 5xx", severity="P2", known=["gateway 502s from payments"], actions=[]
    )
    assert "Incident: Checkout 5xx" in text and "Severity: P2" in text
    assert "- gateway 502s from payments\n" in text
    assert (
        "- [Action 1]" in text
    )  # nothing done yet: the incident-response runbook's placeholder, not an invented action
    assert "[Finding 1]" not in text


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown template"):
        communication.render("fax")


def test_the_escalation_includes_what_the_runbook_asks_for():
    # "@mention the escalation target. Include: Incident link, Current status, Why escalating, What help is needed"
    text = communication.render("slack-escalation")
    for line in ("@[escalation target]", "Incident: [Incident link]", "Current status: [Current status]"):
        assert line in text
    assert "Why escalating: [Why escalating]" in text and "Help needed: [What help is needed]" in text

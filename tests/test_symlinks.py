"""No write into an incident folder follows a symbolic link: names are predictable (a UTC second and a runbook),
so links planted at the names a run will use, at the incident log or at the review are never written through."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from runbooks import cli, runfiles, runner  # noqa: F401  (runner: its imports take seconds, not the run's claim)
from runbooks.alerts import routing, service
from serving import TOKEN, alert, notification

RUNBOOK = "db-connection-pool-exhausted"


def plant(folder, victim, runbook: str, seconds: int = 90) -> list:
    """Links to `victim` at every name a run of `runbook` starting within `seconds` would write."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    links = []
    for s in range(seconds):
        stem = f"{now + dt.timedelta(seconds=s):{runfiles.STAMP}}-{runbook}"
        for suffix in (runfiles.NOTEBOOK, runfiles.HTML, runfiles.EVIDENCE):
            (link := folder / f"{stem}{suffix}").symlink_to(victim)
            links.append(link)
    return links


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("precious\n")
    return path


def test_a_run_never_writes_through_links_planted_at_its_names(run_runbook, server, tmp_path, victim):
    links = plant(tmp_path / "INC-6", victim, RUNBOOK, seconds=40)
    # Names of the coming seconds partly free: a stem is taken only when all three of its names are.
    free = [links[9], links[12], links[13], links[15], links[16], links[17]]  # s3: notebook; s4: +HTML; s5: all
    for link in free:
        link.unlink()
    outcome = run_runbook(RUNBOOK, "-p", "dsn", server.dsn(), "--incident", "INC-6")

    assert victim.read_text() == "precious\n"
    assert outcome.exit_code == 0, outcome.stderr
    stem = outcome.evidence_path.name.removesuffix(runfiles.EVIDENCE)
    assert not [link for link in links if link.name.startswith(stem) and link.is_symlink()]  # s5, or past them all
    assert stem == links[17].name.removesuffix(runfiles.EVIDENCE) or stem > links[-1].name
    written = [outcome.evidence_path.with_name(a["path"]) for a in outcome.evidence["artifacts"]]
    for path in [outcome.evidence_path, *written]:
        assert path.is_file() and not path.is_symlink(), path


def test_a_link_at_the_review_is_replaced_not_followed(run_runbook, server, tmp_path, victim):
    outcome = run_runbook(RUNBOOK, "-p", "dsn", server.dsn(), "--incident", "INC-7")
    folder = outcome.evidence_path.parent
    for name in ("review.md", "review.html"):
        (folder / name).symlink_to(victim)
    result = CliRunner().invoke(cli.main, ["report", "INC-7", "--output-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious\n"
    assert not (folder / "review.md").is_symlink() and "Post-Incident Review" in (folder / "review.md").read_text()


def test_an_incident_folder_that_is_a_link_is_refused(run_runbook, server, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "INC-8").symlink_to(elsewhere)
    outcome = run_runbook(RUNBOOK, "-p", "dsn", server.dsn(), "--incident", "INC-8")
    assert outcome.exit_code == 2 and "is not a folder" in outcome.stderr
    assert list(elsewhere.iterdir()) == []


def test_the_incident_log_is_never_written_through_a_link(tmp_path, victim):
    output = tmp_path / "output"
    (output / "INC-9").mkdir(parents=True)
    (output / "INC-9" / "alerts.jsonl").symlink_to(victim)
    app = service.create_app(routing.load(), output, workers=1, token=TOKEN)
    client = TestClient(app)  # no lifespan: nothing runs, what the request leaves is read back
    response = client.post(
        "/alerts",
        json=notification(alert("PodOOMKilled", "00000000000000e1", incident="INC-9")),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 202 and response.json()["alerts"][0]["outcome"] == "queued"
    assert victim.read_text() == "precious\n"
    with pytest.raises(OSError):
        runfiles.append(output / "INC-9" / "alerts.jsonl", json.dumps({"x": 1}).encode())

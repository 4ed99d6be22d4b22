"""Secrets: one notion (redact), one path from the parameters to the run's own kernel, and out of everything a run
writes or says: notebooks, HTML, evidence, the error it returns, the command lines of what it starts."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml

from runbooks import catalog, redact, runner
from runbooks.errors import UsageError
from runbooks_sandbox.endpoints import serve_health

HOSTILE = 'pa"ss\\wörd-ä-7Q'  # a quote, a backslash and non-ASCII letters: JSON escapes each of them


def custom_runbook(tmp_path, *cells: str):
    """A runbook notebook of our own: a `dsn` parameter, then `cells`."""
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Secrets probe"),
            nbformat.v4.new_code_cell('dsn = ""  # connection string', metadata={"tags": ["parameters"]}),
            *(nbformat.v4.new_code_cell(c) for c in cells),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path = tmp_path / "secrets-probe.ipynb"
    nbformat.write(notebook, path)
    return catalog.load(path)


def written(folder) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def every_form(secret: str) -> list[str]:
    return [secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]]


def test_a_password_is_in_its_kernel_only_never_on_a_command_line_and_never_written_or_returned(tmp_path):
    book = custom_runbook(
        tmp_path,
        # What a careless cell, or a library's error, could do with it: print it, dump it as JSON, raise it.
        "import json, os\npassword = os.environ['PGPASSWORD']\nprint(password)\nprint(json.dumps({'p': password}))",
        # No process on the machine (a kernel, anything a run starts) has it on its command line.
        "import pathlib\n"
        "lines = [p.read_bytes() for p in pathlib.Path('/proc').glob('[0-9]*/cmdline') if p.exists()]\n"
        "assert not [c for c in lines if password.encode() in c], 'a command line holds the password'",
        "raise RuntimeError(f'could not log in with {password!r} ({password})')",
    )
    dsn = f"host=db.internal user=admin password='{HOSTILE.replace(chr(92), chr(92) * 2)}'"
    result = runner.run(book, {"dsn": dsn}, "INC-7", tmp_path / "out")

    assert result.status == "failed" and result.error.ename == "RuntimeError"  # the cell before did not fail
    assert "could not log in with" in result.error.evalue and redact.REDACTED in result.error.evalue
    everything = written(tmp_path / "out") + result.error.line()
    for form in every_form(HOSTILE):
        assert form not in everything, form
    evidence = json.loads(result.evidence_path.read_text())
    assert evidence["parameters"]["dsn"] == "user=admin host=db.internal"  # the rest of the record is intact
    assert evidence["status"] == "failed" and isinstance(evidence["findings"], list)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://admin:Zm9v/YmFy+c2VjcmV0@127.0.0.1:1/app",  # libpq reads host 'admin', port 'Zm9v'
        "postgresql://admin:pass word@127.0.0.1:1/app",
        "host=127.0.0.1 port=1 password=pass word-1234",
        "postgresql://admin@b:c@127.0.0.1:1/app",
        "postgresql://admin:pw-one-1234@127.0.0.1:1/app?password=pw-two-1234",
    ],
)
def test_a_dsn_whose_password_cannot_be_taken_out_safely_is_refused_and_nothing_is_written(run_runbook, tmp_path, dsn):
    outcome = run_runbook("db-connection-pool-exhausted", "-p", "dsn", dsn, "--incident", "INC-8")
    assert outcome.exit_code == 2 and outcome.evidence_path is None
    assert "cannot be read safely" in outcome.stderr and "Traceback" not in outcome.stderr
    assert not (tmp_path / "INC-8").exists()
    for part in ("Zm9v", "pass word", "pw-one", "b:c"):
        assert part not in outcome.stderr


@pytest.mark.parametrize("dsn", ["host=127.0.0.1 password=a", "postgresql://u:abc@127.0.0.1/db"])
def test_a_password_too_short_to_scrub_is_refused(run_runbook, tmp_path, dsn):
    outcome = run_runbook("db-connection-pool-exhausted", "-p", "dsn", dsn, "--incident", "INC-9")
    assert outcome.exit_code == 2 and "too short to be scrubbed" in outcome.stderr
    assert not (tmp_path / "INC-9").exists()


def test_scrubbing_works_on_the_parsed_record_not_its_json_text():
    record = {"apply": False, "ok": True, "note": 'said "pa\\"ss"', "list": ['x pa"ss y'], 'pa"ss': 1}
    assert redact.scrub(record, ['pa"ss']) == {
        "apply": False,
        "ok": True,
        "note": 'said "pa\\"ss"',  # the escaped form is a different text
        "list": [f"x {redact.REDACTED} y"],
        redact.REDACTED: 1,
    }
    notebook = {"outputs": [{"data": {"image/png": 'iVBORw0KGgo-pa"ss', "text/plain": 'pa"ss'}}]}
    assert redact.scrub(notebook, ['pa"ss'])["outputs"][0]["data"] == {
        "image/png": 'iVBORw0KGgo-pa"ss',  # base64 of a picture holds no text to scrub
        "text/plain": redact.REDACTED,
    }


def test_url_credentials_in_any_parameter_reach_the_probe_and_nothing_written(run_runbook, kube_api, tmp_path):
    kube_api.load("autolytiq-prod")
    password = "h3alth-pa55-Zq"
    with serve_health(200, basic_auth=("probe", password)) as health:
        url = health.url.replace("http://", f"http://probe:{password}@")
        params = tmp_path / "input" / "params.yaml"
        params.parent.mkdir()
        params.write_text(yaml.safe_dump({"dependencies": {"tax-rates": {"match": "taxrates", "health_url": url}}}))
        outcome = run_runbook("third-party-api-down", *kube_api.runbook_args("autolytiq-prod"), "-f", str(params))

    assert outcome.exit_code == 0, outcome.stderr
    assert health.requests == [("GET", "/health")] and health.refused == 0  # the credentials reached it
    files = written(outcome.evidence_path.parent)
    assert url.replace(password, redact.REDACTED) in files  # the probe table shows the URL, redacted
    assert password not in files + outcome.stdout + outcome.stderr


def test_one_notion_of_a_secret_for_parameters_environment_and_log_lines(monkeypatch):
    clean, secrets = redact.take(
        {
            "dsn": "postgresql://admin:pg-pass-123@db/app",
            "prometheus_url": "https://ops:prom-pass-456@prometheus:9090",
            "dependencies": {"tax": {"health_url": "https://tax.example/health?api_key=key-value-789&x=1"}},
            "namespace": "autolytiq-prod",
        }
    )
    assert clean["dsn"] == "user=admin dbname=app host=db"
    assert clean["prometheus_url"] == f"https://ops:{redact.REDACTED}@prometheus:9090"
    assert clean["dependencies"]["tax"]["health_url"] == f"https://tax.example/health?api_key={redact.REDACTED}&x=1"
    assert set(secrets.values) == {"pg-pass-123", "prom-pass-456", "key-value-789"}
    assert secrets.environment["PGPASSWORD"] == "pg-pass-123"
    for name, value in json.loads(secrets.environment[redact.CREDENTIALS_VARIABLE]).items():
        monkeypatch.setenv(redact.CREDENTIALS_VARIABLE, secrets.environment[redact.CREDENTIALS_VARIABLE])
        assert redact.reveal(name) == value and redact.REDACTED not in value
    assert "pg-pass" not in repr(secrets)

    monkeypatch.setenv("RUNBOOK_SEAL_KEY", "seal-key-0123456789")
    monkeypatch.setenv("RUNBOOK_WEBHOOK_TOKEN", "hook-token-0123456789")
    assert set(redact.kernel_environment({"PATH": "/bin", "RUNBOOK_SEAL_KEY": "x", "RUNBOOK_WEBHOOK_TOKEN": "y"})) == {
        "PATH"
    }
    assert redact.text("seal-key-0123456789 and hook-token-0123456789") == f"{redact.REDACTED} and {redact.REDACTED}"


@pytest.mark.parametrize(
    "line,secret",
    [
        ("boot secret_key=Sk3y-value-1 region=eu", "Sk3y-value-1"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG ok", "wJalrXUtnFEMI/K7MDENG"),
        ("aws_secret_access_key: abc123-def", "abc123-def"),
        ("DB_PASS=hunter2-pass loaded", "hunter2-pass"),
        ('{"apiToken": "t0k-en\\"x", "user": "bob"}', 't0k-en\\"x'),
        ('{"accessKey":"AKIA-123"}', "AKIA-123"),
    ],
)
def test_credential_names_in_log_lines(line, secret):
    redacted = redact.redact_line(line)
    assert secret not in redacted and redact.REDACTED in redacted


def test_ordinary_words_are_not_credential_names():
    for name in ("passenger", "keyboard", "monkey", "bypass_cache", "namespace"):
        assert not redact.is_credential_name(name), name
    for name in ("DB_PASS", "secret_key", "aws_secret_access_key", "apiKey", "JWT_SECRET", "pgpassword", "KEY"):
        assert redact.is_credential_name(name), name


def test_a_url_with_an_at_sign_in_its_path_is_refused():
    with pytest.raises(UsageError, match="percent-encode"):
        redact.take({"prometheus_url": "http://ops:pa/ss@prometheus:9090"})

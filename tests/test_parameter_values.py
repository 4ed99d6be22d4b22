"""Parameter values are plain JSON data from every source, checked all the way down; text parameters keep the
text typed; `--env` names a parameters file under parameters/ and nothing else."""

from __future__ import annotations

import base64

import pytest
import yaml

from runbooks import catalog
from runbooks.alerts import routing
from runbooks.errors import UsageError

# papermill writes a value it does not know as `"{value}"`: bytes of this shape close the string and call code.
PAYLOAD = b'"+__import__("pathlib").Path(__import__("os").environ["PWNED_AT"]).touch()+"'
BINARY = f"!!binary {base64.b64encode(PAYLOAD).decode()}"


def test_a_yaml_tag_inside_a_list_parameter_is_refused_before_any_kernel(run_runbook, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED_AT", str(marker))
    outcome = run_runbook("ssl-certificate-expired", "-p", "endpoints", f"[{BINARY}]", "--incident", "INC-3")
    assert outcome.exit_code == 2 and "not plain JSON data" in outcome.stderr, outcome.stderr
    assert "endpoints[0]" in outcome.stderr
    assert not marker.exists() and not (tmp_path / "INC-3").exists()


def test_a_yaml_tag_deep_in_a_parameter_file_is_refused_for_run_and_for_serve(run_runbook, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(f"dependencies:\n  tax:\n    match: tax\n    health_url: {BINARY}\n")
    outcome = run_runbook("third-party-api-down", "-f", str(params))
    assert outcome.exit_code == 2 and "'dependencies.tax.health_url'" in outcome.stderr
    with pytest.raises(UsageError, match="not plain JSON data"):
        routing.load(files=(params,))  # `runbook serve -f`: alert runs would take it otherwise


@pytest.mark.parametrize(
    "value",
    [b"bytes", {1: "x"}, [float("nan")], {"a": {"b": {1, 2}}}, [__import__("datetime").date(2026, 1, 1)]],
)
def test_only_plain_json_data_passes_the_check(value):
    book = catalog.find("third-party-api-down")
    with pytest.raises(UsageError):
        book.resolve({"dependencies": {"x": value}})


def test_a_text_parameter_keeps_the_text_typed_on_the_command_line(run_runbook, tmp_path):
    book = catalog.find("pod-oomkilled")
    values = book.resolve(book.from_cli([("namespace", "010"), ("selector", "yes"), ("window_minutes", "010")]))
    assert values["namespace"] == "010" and values["selector"] == "yes"  # YAML would make 8 and True
    assert values["window_minutes"] == 8  # a number parameter still reads YAML (010 octal)

    kubeconfig = tmp_path / "none.yaml"
    outcome = run_runbook("pod-oomkilled", "-p", "namespace", "010", "-p", "kubeconfig", str(kubeconfig))
    assert outcome.exit_code == 1  # no cluster there: still evidence, with the parameters as typed
    assert outcome.evidence["parameters"]["namespace"] == "010"


def test_a_number_in_a_file_for_a_text_parameter_is_its_text_but_true_is_refused():
    book = catalog.find("pod-oomkilled")
    assert book.resolve({"namespace": 8})["namespace"] == "8"
    with pytest.raises(UsageError, match="takes text, got True"):
        book.resolve({"namespace": True})


@pytest.mark.parametrize("env", ["../parameters/prod", "/etc/passwd", "prod/../prod", "alerts", ".hidden"])
def test_env_is_a_parameters_file_under_parameters_only(run_runbook, env):
    outcome = run_runbook("db-slow-queries", "--env", env)
    assert outcome.exit_code == 2 and "Traceback" not in outcome.stderr
    assert "known: prod, staging" in outcome.stderr


def test_the_routing_file_is_not_an_environment():
    assert "alerts" not in catalog.environments() and {"prod", "staging"} <= set(catalog.environments())
    with pytest.raises(UsageError, match="not a parameters file"):
        catalog.environment_layer("alerts", catalog.find("triage"))


def test_yaml_file_values_are_checked_like_every_other_layer(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"namespace": ["a"]}))
    with pytest.raises(UsageError, match=r"takes text, got \[.a.\]"):
        catalog.find("pod-oomkilled").resolve(catalog.read_yaml(params))

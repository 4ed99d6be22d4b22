"""Parameters as the `runbook` command reads, merges and checks them (no kernel involved)."""

import pytest

from runbooks import catalog
from runbooks.errors import UsageError


def test_parameters_cell_gives_types_defaults_and_help():
    book = catalog.find("db-slow-queries")
    params = book.parameters
    assert list(params) == [
        "dsn",
        "min_duration_seconds",
        "limit",
        "sample_seconds",
        "cancel_longer_than_seconds",
        "apply",
    ]
    assert (params["min_duration_seconds"].type, params["min_duration_seconds"].default) == ("float", 5)
    assert (params["limit"].type, params["limit"].default) == ("int", 10)
    assert (params["cancel_longer_than_seconds"].type, params["cancel_longer_than_seconds"].default) == (
        "Optional[float]",
        None,
    )
    assert (params["apply"].type, params["apply"].default) == ("bool", False)
    assert "PGPASSWORD" in params["dsn"].help


def test_pool_runbook_defaults_follow_the_runbook_document():
    params = catalog.find("db-connection-pool-exhausted").parameters
    assert params["idle_minutes"].default == 10
    assert params["apply"].default is False


def test_layers_merge_in_order_and_values_keep_their_types():
    book = catalog.find("db-slow-queries")
    values = book.resolve({"limit": 20, "min_duration_seconds": 1}, {"limit": 30}, {"apply": True})
    assert values["limit"] == 30
    assert values["min_duration_seconds"] == 1
    assert values["apply"] is True
    assert values["cancel_longer_than_seconds"] is None


@pytest.mark.parametrize(
    "name,value",
    [
        ("limit", "ten"),
        ("limit", 2.5),
        ("limit", True),
        ("apply", "yes please"),
        ("apply", 1),
        ("min_duration_seconds", "5s"),
        ("cancel_longer_than_seconds", "soon"),
    ],
)
def test_wrong_types_are_rejected(name, value):
    with pytest.raises(UsageError, match=name):
        catalog.find("db-slow-queries").resolve({name: value})


@pytest.mark.parametrize(
    "name,value",
    [
        ("min_duration_seconds", 2),
        ("min_duration_seconds", 2.5),
        ("cancel_longer_than_seconds", 30),
        ("cancel_longer_than_seconds", None),
        ("dsn", "host=/tmp port=5432"),
    ],
)
def test_right_types_are_accepted(name, value):
    assert catalog.find("db-slow-queries").resolve({name: value})[name] == value


def test_unknown_parameter_is_rejected_with_the_known_ones():
    with pytest.raises(UsageError, match=r"no parameter 'idle_minute'.*idle_minutes"):
        catalog.find("db-connection-pool-exhausted").resolve({"idle_minute": 5})


def test_unknown_runbook_names_the_known_ones():
    with pytest.raises(UsageError, match=r"unknown runbook 'db-pool'.*db-connection-pool-exhausted"):
        catalog.find("db-pool")


@pytest.mark.parametrize(
    "text,value",
    [
        ("true", True),
        ("false", False),
        ("2.5", 2.5),
        ("10", 10),
        ("null", None),
        ("host=/tmp port=5", "host=/tmp port=5"),
        ("postgresql://u@h:5/db", "postgresql://u@h:5/db"),
        ("[1, 2]", "[1, 2]"),
    ],
)
def test_cli_values_are_yaml_scalars(text, value):
    assert catalog.parse_cli_value(text) == value


def test_a_number_given_for_a_string_stays_the_string_typed():
    assert catalog.find("db-slow-queries").resolve({"dsn": 5432})["dsn"] == "5432"


def test_environment_file_applies_shared_defaults_and_its_runbook_section():
    slow = catalog.environment_layer("prod", catalog.find("db-slow-queries"))
    pool = catalog.environment_layer("prod", catalog.find("db-connection-pool-exhausted"))
    assert "autolytiq-prod" in slow["dsn"] and slow["limit"] == 20
    assert set(pool) == {"dsn"}


def test_unknown_environment_is_rejected():
    with pytest.raises(UsageError, match=r"unknown environment 'qa'.*prod"):
        catalog.environment_layer("qa", catalog.find("db-slow-queries"))


def test_list_and_dict_parameters_take_yaml_flow_collections():
    book = catalog.find("ssl-certificate-expired")
    assert book.resolve({"endpoints": "[a.example:443, b.example]"})["endpoints"] == ["a.example:443", "b.example"]
    with pytest.raises(UsageError, match=r"takes a list \(\[a, b\]\), got .a.example:443"):
        book.resolve({"endpoints": "a.example:443"})
    deps = catalog.find("third-party-api-down").resolve({"dependencies": "{tax: {match: tax, health_url: ''}}"})
    assert deps["dependencies"] == {"tax": {"match": "tax", "health_url": ""}}

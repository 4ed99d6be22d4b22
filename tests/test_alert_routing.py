"""parameters/alerts.yaml and routing: every alert of the incident-response runbook is routed, labels become
parameters only after their check, hostile values start nothing, incident ids are stable plain names."""

import json
from pathlib import Path

import pytest
import yaml

from runbooks import catalog, redact
from runbooks.alerts import routing, webhook
from runbooks.alerts.routing import Rejected
from runbooks.errors import UsageError
from serving import alert, notification

# The alerts the incident-response runbook's "Common Issues" name, and the runbook each must start.
SOURCE_RUNBOOK = {
    "HighErrorRate": "api-gateway-high-error-rate",
    "DatabaseConnectionPoolExhausted": "db-connection-pool-exhausted",
    "SlowDatabaseQueries": "db-slow-queries",
    "CriticalMemoryUsage": "pod-oomkilled",
    "HighAuthFailureRate": "jwt-validation-failures",
    "SSLCertificateExpired": "ssl-certificate-expired",
    "ThirdPartyAPIDown": "third-party-api-down",
}
HOSTILE = [
    "prod\nx = __import__('os').system('id')",
    "prod'; DROP TABLE deals; --",
    "api-gateway,tier!=frontend",
    "api-gateway)",
    "x=1",
    "prod ",
    "prod\n",
    "../../etc",
    "",
    "prod$(id)",
    "prod\u00e9",
]


@pytest.fixture(scope="module")
def routes():
    return routing.load()


def parse(payload):
    return webhook.parse(__import__("json").dumps(payload).encode())


def test_every_alert_of_the_runbook_document_routes_to_its_runbook(routes):
    assert {name: routes.routes[name].runbook for name in SOURCE_RUNBOOK} == SOURCE_RUNBOOK
    by_hand = {"service-investigation", "verify-recovery", "oncall-handoff"}  # after triage, after a fix, weekly
    assert set(routes.books) == {b.name for b in catalog.runbooks()} - by_hand


def test_namespace_and_selector_come_from_labels_after_their_checks(routes):
    hit = alert("CriticalMemoryUsage", "0000000000000001", namespace="autolytiq-prod", app="auth-service", pod="x")
    assert routes.routes["CriticalMemoryUsage"].parameters(parse(notification(hit)).alerts[0]) == {
        "namespace": "autolytiq-prod",
        "selector": "app=auth-service",
    }


def test_a_missing_label_leaves_the_lower_layers_in_charge(routes):
    hit = alert("CriticalMemoryUsage", "0000000000000001")
    a = parse(notification(hit)).alerts[0]
    assert routes.routes["CriticalMemoryUsage"].parameters(a) == {}
    assert routes.parameters("pod-oomkilled", {})["selector"] == ""


def test_numbers_are_converted_and_kept_in_range(routes):
    route = routes.routes["SlowDatabaseQueries"]
    ok = parse(notification(alert("SlowDatabaseQueries", "0000000000000001", threshold_seconds="2.5"))).alerts[0]
    assert route.parameters(ok) == {"min_duration_seconds": 2.5}
    assert routes.parameters("db-slow-queries", route.parameters(ok))["min_duration_seconds"] == 2.5
    for bad in ["1e9", "-1", "100000", "5; SELECT 1", "nan", "0x10"]:
        hit = parse(notification(alert("SlowDatabaseQueries", "0000000000000001", threshold_seconds=bad))).alerts[0]
        with pytest.raises(Rejected, match="threshold_seconds"):
            route.parameters(hit)


def test_a_list_parameter_gets_the_value_as_one_item(routes):
    hit = alert("SSLCertificateExpired", "0000000000000001", endpoint="api.autolytiq.com:443")
    values = routes.routes["SSLCertificateExpired"].parameters(parse(notification(hit)).alerts[0])
    assert values == {"endpoints": ["api.autolytiq.com:443"]}
    assert routes.parameters("ssl-certificate-expired", values)["endpoints"] == ["api.autolytiq.com:443"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    "name,label",
    [
        ("CriticalMemoryUsage", "namespace"),
        ("CriticalMemoryUsage", "app"),
        ("ThirdPartyAPIDown", "service"),
        ("SSLCertificateExpired", "endpoint"),
    ],
)
def test_hostile_label_values_are_rejected_naming_the_label(routes, name, label, value):
    hit = parse(notification(alert(name, "0000000000000001", **{label: value}))).alerts[0]
    with pytest.raises(Rejected, match=f"label '{label}'"):
        routes.routes[name].parameters(hit)


@pytest.mark.parametrize("value", ["Prod", "a" * 64, "-prod", "prod-", "prod.eu", "prod_eu"])
def test_namespaces_must_be_dns_labels(routes, value):
    hit = parse(notification(alert("HighErrorRate", "0000000000000001", namespace=value))).alerts[0]
    with pytest.raises(Rejected, match="DNS-1123 label"):
        routes.routes["HighErrorRate"].parameters(hit)


@pytest.mark.parametrize("value", ["autolytiq-prod", "a", "a" * 63, "x1-2-3"])
def test_kubernetes_names_pass(routes, value):
    hit = parse(notification(alert("HighErrorRate", "0000000000000001", namespace=value))).alerts[0]
    assert routes.routes["HighErrorRate"].parameters(hit) == {"namespace": value}


def test_label_values_allow_what_kubernetes_allows_and_no_more():
    check = routing.CHECKS["label-value"]
    for ok in ["auth-service", "Auth_Service.v2", "a", "a" * 63]:
        assert check.pattern.fullmatch(ok) and len(ok) <= check.max_length
    for bad in ["-auth", "auth-", "auth service", "auth,x", "a=b", "a!", "(a)"]:
        assert not check.pattern.fullmatch(bad)


def test_incident_id_is_the_group_alertname_and_a_hash_of_the_group_key():
    first = parse(notification(alert("HighErrorRate", "0000000000000001")))
    later = parse(notification(alert("HighErrorRate", "0000000000000001"), alert("HighErrorRate", "0000000000000002")))
    ids = {routing.incident_id(n, a) for n in (first, later) for a in n.alerts}
    assert len(ids) == 1
    (only,) = ids
    assert only.startswith("HighErrorRate-") and len(only) == len("HighErrorRate-") + 8
    other = parse(notification(alert("HighErrorRate", "0000000000000001"), group_key='{}:{alertname="Other"}'))
    assert routing.incident_id(other, other.alerts[0]) != only


def test_incident_label_names_the_folder_only_when_it_is_a_plain_name():
    good = parse(notification(alert("HighErrorRate", "0000000000000001", incident="INC-1234")))
    assert routing.incident_id(good, good.alerts[0]) == "INC-1234"
    for bad in ["../x", ".hidden", "a/b", "INC 1", "x" * 65, ""]:
        n = parse(notification(alert("HighErrorRate", "0000000000000001", incident=bad)))
        assert routing.incident_id(n, n.alerts[0]).startswith("HighErrorRate-")


def test_group_labels_without_alertname_still_give_a_plain_name():
    payload = notification(alert("HighErrorRate", "0000000000000001"), group_key='{}:{cluster="eu/1"}')
    payload["groupLabels"] = {"cluster": "eu/1"}
    n = parse(payload)
    assert routing.incident_id(n, n.alerts[0]).startswith("alerts-")
    payload["groupLabels"] = {"alertname": "../../etc/passwd"}
    n = parse(payload)
    assert "/" not in routing.incident_id(n, n.alerts[0]) and not routing.incident_id(n, n.alerts[0]).startswith(".")


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "routes_data,message",
    [
        ({"routes": {"X": {"runbook": "nope"}}}, "unknown runbook 'nope'"),
        (
            {
                "routes": {
                    "X": {"runbook": "db-slow-queries", "parameters": {"apply": {"label": "a", "check": "dns-label"}}}
                }
            },
            "cannot set 'apply'",
        ),
        (
            {
                "routes": {
                    "X": {"runbook": "db-slow-queries", "parameters": {"rows": {"label": "a", "check": "integer"}}}
                }
            },
            "has no parameter 'rows'",
        ),
        (
            {
                "routes": {
                    "X": {"runbook": "db-slow-queries", "parameters": {"limit": {"label": "a", "check": "regex"}}}
                }
            },
            "routes.X.parameters.limit.check",
        ),
        (
            {"routes": {"X": {"runbook": "db-slow-queries", "parameters": {"limit": {"check": "integer"}}}}},
            "routes.X.parameters.limit",
        ),
        (
            {
                "routes": {
                    "X": {
                        "runbook": "db-slow-queries",
                        "parameters": {"limit": {"label": "a", "check": "integer", "template": "{}0"}},
                    }
                }
            },
            "a template applies to text checks",
        ),
        (
            {
                "routes": {
                    "X": {
                        "runbook": "pod-oomkilled",
                        "parameters": {"selector": {"label": "a", "check": "label-value", "template": "app={0}"}},
                    }
                }
            },
            "routes.X.parameters.selector.template",
        ),
        ({"rules": {}}, "top level"),
    ],
)
def test_a_wrong_routing_file_is_refused_at_load(tmp_path, routes_data, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        routing.load(write(tmp_path, "alerts.yaml", routes_data))


def test_a_file_parameter_applies_to_every_routed_runbook_that_takes_it(tmp_path):
    params = write(tmp_path, "p.yaml", {"dsn": "host=db.internal", "namespace": "autolytiq-staging"})
    loaded = routing.load(files=(params,))
    assert loaded.base["db-slow-queries"]["dsn"] == "host=db.internal"
    assert loaded.base["pod-oomkilled"]["namespace"] == "autolytiq-staging"
    assert "dsn" not in loaded.base["pod-oomkilled"]


@pytest.mark.parametrize(
    "data,message",
    [
        ({"dns": "host=x"}, "no routed runbook takes 'dns'"),
        ({"limit": "ten"}, "parameter 'limit' takes a whole number"),
        ({"apply": True}, "runs started by alerts only preview"),
    ],
)
def test_wrong_file_parameters_are_refused_at_load(tmp_path, data, message):
    with pytest.raises(UsageError, match=message):
        routing.load(files=(write(tmp_path, "p.yaml", data),))


def test_a_dsn_password_is_kept_for_the_runs_to_take_out_and_never_shown(tmp_path):
    params = write(tmp_path, "p.yaml", {"dsn": "host=db.internal user=admin password=s3cret-pw dbname=autolytiq"})
    loaded = routing.load(files=(params,))
    assert "s3cret-pw" not in repr(loaded)
    parameters = loaded.parameters("db-connection-pool-exhausted", {})
    clean, secrets = redact.take(parameters)  # what runner.run does with them
    assert secrets.values == ("s3cret-pw",) and secrets.environment["PGPASSWORD"] == "s3cret-pw"
    assert "password" not in clean["dsn"] and "dbname=autolytiq" in clean["dsn"]


def test_a_dsn_that_cannot_be_read_safely_is_refused_at_load(tmp_path):
    params = write(tmp_path, "p.yaml", {"dsn": "postgresql://admin:Zm9v/YmFy@db.internal/autolytiq"})
    with pytest.raises(UsageError, match="cannot be read safely"):
        routing.load(files=(params,))


def test_the_cluster_label_picks_the_kubeconfig_context_and_an_unmapped_cluster_starts_nothing(tmp_path):
    from runbooks.alerts import intake
    from runbooks.alerts.queue import Queue

    clusters = {"label": "k8s_cluster", "contexts": {"eu-1": "prod-eu-1", "us-2": "prod-us-2"}}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"clusters": clusters, "kubeconfig": "/etc/runbook/kubeconfig"}))
    routed = routing.load(files=(params,))
    sent = [
        alert("CriticalMemoryUsage", "00000000000000f1", namespace="autolytiq-prod", k8s_cluster="us-2"),
        alert("CriticalMemoryUsage", "00000000000000f2", namespace="autolytiq-prod", k8s_cluster="ap-9"),
        alert("CriticalMemoryUsage", "00000000000000f3", namespace="autolytiq-prod"),
        alert(
            "SlowDatabaseQueries", "00000000000000f4", k8s_cluster="eu-1"
        ),  # a runbook without `context`: routed as before
    ]
    queue = Queue(tmp_path / "q.sqlite3")
    outcomes = intake.receive(
        webhook.parse(json.dumps(notification(*sent)).encode()), routed, queue, tmp_path / "output"
    )
    assert [(o.outcome, o.runbook) for o in outcomes] == [
        ("queued", "pod-oomkilled"),
        ("unrouted", None),
        ("unrouted", None),
        ("queued", "db-slow-queries"),
    ]
    assert outcomes[1].reason == "k8s_cluster 'ap-9' has no kubeconfig context (clusters.contexts)"
    assert "no 'k8s_cluster' label" in outcomes[2].reason
    job = queue.claim()
    assert job.parameters["context"] == "prod-us-2" and routed.parameters(job.runbook, job.parameters)["context"] == (
        "prod-us-2"
    )
    assert "context" not in queue.claim().parameters
    logged = [json.loads(line) for line in next((tmp_path / "output").glob("*/alerts.jsonl")).read_text().splitlines()]
    assert {(e["state"], e["reason"]) for e in logged if e["fingerprint"] == "00000000000000f2"} == {
        ("unrouted", outcomes[1].reason)
    }


@pytest.mark.parametrize(
    "clusters, message",
    [
        ({"contexts": {}}, "clusters.contexts: {} should be non-empty"),
        ({"label": "a b", "contexts": {"x": "y"}}, "clusters.label"),
        ({"contexts": {"x": 3}}, "clusters.contexts.x: 3 is not of type 'string'"),
    ],
)
def test_a_wrong_cluster_mapping_is_refused_at_load(tmp_path, clusters, message):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"clusters": clusters}))
    with pytest.raises(UsageError, match=message.replace("{", r"\{").replace("}", r"\}")):
        routing.load(files=(params,))

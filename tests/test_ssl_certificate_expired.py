"""`runbook run ssl-certificate-expired` against real TLS servers on loopback and cert-manager Certificates.

A test CA signs two leaf certificates for localhost/127.0.0.1, one expired two days ago and one valid
for 90 days; each is served by a small `ssl` server thread on a free port. A closed port stands for an
unreachable endpoint. The Certificates come from the `certificate-expired` scenario.
"""

import datetime as dt

import pandas as pd
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from runbooks import tls
from runbooks.diagnoses import ssl_certificate_expired as diagnosis
from runbooks.kube import certmanager as certificates
from runbooks_sandbox import endpoints
from runbooks_sandbox.kubeapi import resources

RUNBOOK = "ssl-certificate-expired"
NS = "autolytiq-prod"
NOW = dt.datetime.now(dt.timezone.utc)


# --- a test PKI and TLS servers on loopback (runbooks_sandbox.endpoints, which the sandbox serves too)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    with endpoints.serve_pki(tmp_path_factory.mktemp("pki"), now=NOW) as served:
        yield served


@pytest.fixture
def incident(kube_api):
    kube_api.load("certificate-expired")
    return kube_api


@pytest.fixture
def cluster(incident):
    cluster = incident.connect(NS)
    yield cluster
    cluster.api.close()


def by_endpoint(table):
    return {row["endpoint"]: row for row in table.to_dict(orient="records")}


# --- endpoints


@pytest.mark.parametrize(
    "text, expected",
    [
        ("api.autolytiq.com:443", ("api.autolytiq.com", 443, "api.autolytiq.com")),
        ("api.autolytiq.com", ("api.autolytiq.com", 443, "api.autolytiq.com")),
        ("10.0.3.7:8443@api.autolytiq.com", ("10.0.3.7", 8443, "api.autolytiq.com")),
        ("[2001:db8::1]:443", ("2001:db8::1", 443, "2001:db8::1")),
        ("[2001:db8::1]@api.autolytiq.com", ("2001:db8::1", 443, "api.autolytiq.com")),
    ],
)
def test_endpoints_are_host_port_and_an_optional_servername(text, expected):
    endpoint = tls.parse_endpoint(text)
    assert (endpoint.host, endpoint.port, endpoint.servername) == expected
    assert tls.parse_endpoint(str(endpoint)) == endpoint


@pytest.mark.parametrize("text", ["", ":443", "host:https", "host:0", "host:70000", "a:b:c"])
def test_malformed_endpoints_are_refused(text):
    with pytest.raises(ValueError, match="expected host:port"):
        tls.parse_endpoint(text)


def test_expired_valid_and_unreachable_endpoints_with_the_test_ca_trusted(pki):
    table = tls.inspect([pki.expired, pki.valid, pki.closed], 14, 2, ca_file=str(pki.ca_file))
    rows = by_endpoint(table)
    assert list(table["endpoint"]) == [pki.expired, pki.valid, pki.closed]

    expired = rows[pki.expired]
    assert expired["status"] == "expired" and expired["days_left"] == -2
    assert expired["subject_cn"] == "localhost" and expired["sans"] == "localhost, 127.0.0.1"
    assert expired["issuer"] == "CN=Runbook Test CA"
    assert expired["trusted"] is False and expired["hostname_match"] is True
    assert expired["error"] == "certificate has expired"

    valid = rows[pki.valid]
    assert valid["status"] == "ok" and valid["days_left"] == 89
    assert valid["trusted"] is True and valid["hostname_match"] is True and pd.isna(valid["error"])

    closed = rows[pki.closed]
    assert closed["status"] == "unreachable" and closed["error"].startswith("connection refused")
    assert pd.isna(closed["subject_cn"]) and pd.isna(closed["trusted"]) and pd.isna(closed["days_left"])


def test_without_the_ca_file_the_test_ca_is_untrusted(pki):
    rows = by_endpoint(tls.inspect([pki.valid], 14, 2))
    assert rows[pki.valid]["status"] == "ok"  # dates only: trust is its own column
    assert rows[pki.valid]["trusted"] is False
    assert rows[pki.valid]["error"] == "unable to get local issuer certificate"


def test_a_servername_the_certificate_does_not_name(pki):
    port = pki.valid.rsplit(":", 1)[1]
    endpoint = f"127.0.0.1:{port}@www.example.org"
    row = by_endpoint(tls.inspect([endpoint], 14, 2, ca_file=str(pki.ca_file)))[endpoint]
    assert row["trusted"] is True and row["hostname_match"] is False
    assert row["error"] == "www.example.org is not among the certificate's names"


def test_a_certificate_expiring_within_warn_days(pki):
    rows = by_endpoint(tls.inspect([pki.valid], 100, 2, ca_file=str(pki.ca_file)))
    assert rows[pki.valid]["status"] == "expiring"


@pytest.mark.parametrize(
    "name, matches",
    [
        ("api.autolytiq.io", True),
        ("API.Autolytiq.io.", True),
        ("autolytiq.io", True),
        ("a.b.autolytiq.io", False),
        ("autolytiq.com", False),
        ("10.0.0.1", True),
        ("10.0.0.2", False),
    ],
)
def test_hostname_matching_follows_rfc_6125(name, matches):
    certificate, _ = endpoints.leaf(
        endpoints.new_ca(),
        NOW,
        NOW + dt.timedelta(days=1),
        names=("autolytiq.io", "*.autolytiq.io"),
        addresses=("10.0.0.1",),
    )
    assert tls.names_host(certificate, name) is matches


def test_findings_name_the_expired_untrusted_and_unreachable_endpoints(pki):
    table = tls.inspect([pki.expired, pki.valid, pki.closed], 14, 2, ca_file=str(pki.ca_file))
    findings = {f.id: f for f in diagnosis.assess_endpoints(table, 14)}
    assert findings["expired-endpoints"].data["endpoints"] == [pki.expired]
    assert findings["expired-endpoints"].severity == "critical"
    assert findings["expired-endpoints"].data["not_after"][pki.expired] < NOW
    assert findings["expiring-endpoints"].data["endpoints"] == []
    assert findings["untrusted-endpoints"].data["endpoints"] == [pki.expired]
    assert findings["unreachable-endpoints"].data["endpoints"] == [pki.closed]


# --- cert-manager


def test_certificates_and_the_one_not_ready(cluster):
    listed = certificates.list_certificates(cluster)
    assert listed.note is None
    rows = {r["name"]: r for r in listed.frame.to_dict(orient="records")}
    assert rows["api-gateway-tls"]["ready"] == "False" and rows["api-gateway-tls"]["reason"] == "Expired"
    assert rows["api-gateway-tls"]["days_left"] == -2 and rows["api-gateway-tls"]["issuing"] == "False (Failed)"
    assert rows["dashboard-tls"]["ready"] == "True" and rows["dashboard-tls"]["days_left"] == 59
    findings = {f.id: f for f in diagnosis.assess_certificates(listed, 14)}
    assert findings["certificates-not-ready"].data["certificates"] == ["api-gateway-tls"]
    assert findings["certificates-not-ready"].data["reasons"] == {"api-gateway-tls": "Expired"}
    assert findings["certificates-expiring"].data["certificates"] == ["api-gateway-tls"]
    assert findings["certificates-expiring"].data["renewal_overdue"] == ["api-gateway-tls"]
    assert diagnosis.to_renew(listed, []) == ["api-gateway-tls"]
    assert diagnosis.to_renew(listed, ["dashboard-tls"]) == ["dashboard-tls"]
    events = certificates.related_events(cluster, ["api-gateway-tls", "dashboard-tls"])
    assert "acme-challenge" in " ".join(events["message"])


def test_without_cert_manager_a_note_and_no_exception(cluster, monkeypatch):
    monkeypatch.setattr(resources, "RESOURCES", [r for r in resources.RESOURCES if r["plural"] != "certificates"])
    listed = certificates.list_certificates(cluster)
    assert listed.frame.empty and "cert-manager" in listed.note
    assert "cert-manager" in listed._repr_html_()
    findings = diagnosis.assess_certificates(listed, 14)
    assert [(f.id, f.severity, f.data["certificates"]) for f in findings] == [
        ("certificates-not-ready", "info", []),
        ("certificates-expiring", "info", []),
    ]
    [action] = certificates.renew(cluster, ["api-gateway-tls"], apply=False)
    assert action.result == "dry run refused: HTTP 404 Not Found"


def test_dry_run_renewal_stores_nothing(cluster, incident):
    before = incident.get(*_certificate("api-gateway-tls"))
    [action] = certificates.renew(cluster, ["api-gateway-tls"], apply=False)
    assert action.mode == "dry-run" and action.target == "certificate/api-gateway-tls in autolytiq-prod"
    assert action.result.startswith("accepted by server-side dry run; would set condition Issuing=True")
    assert incident.get(*_certificate("api-gateway-tls")) == before
    [patch] = [r for r in incident.requests if r.method == "PATCH"]
    assert patch.path.endswith("/certificates/api-gateway-tls/status") and patch.dry_run
    assert patch.content_type == "application/merge-patch+json"


def test_renewal_sets_issuing_and_keeps_the_other_conditions(cluster, incident):
    [action] = certificates.renew(cluster, ["api-gateway-tls"], apply=True)
    assert action.mode == "applied" and "replacing Issuing=False (Failed)" in action.result
    conditions = {c["type"]: c for c in incident.get(*_certificate("api-gateway-tls"))["status"]["conditions"]}
    assert conditions["Issuing"]["status"] == "True" and conditions["Issuing"]["reason"] == "ManuallyTriggered"
    assert conditions["Issuing"]["message"] == "Certificate re-issuance manually triggered"
    assert conditions["Issuing"]["observedGeneration"] == 2
    assert conditions["Ready"]["reason"] == "Expired"
    # Asked again while it is being issued: nothing is sent.
    writes = len([r for r in incident.requests if r.method != "GET"])
    [again] = certificates.renew(cluster, ["api-gateway-tls"], apply=True)
    assert again.result.startswith("already being issued")
    assert len([r for r in incident.requests if r.method != "GET"]) == writes


def test_a_status_changed_since_it_was_read_is_not_overwritten(cluster, incident):
    stale = incident.get(*_certificate("api-gateway-tls"))
    incident.add({**stale, "status": {**stale["status"], "revision": 2}})  # cert-manager wrote meanwhile
    api = cluster.custom
    with pytest.raises(ApiException) as refused:
        api.patch_namespaced_custom_object_status(
            "cert-manager.io",
            "v1",
            NS,
            "certificates",
            "api-gateway-tls",
            certificates.renewal_patch(stale, NOW),
            _content_type=certificates.MERGE_PATCH,
        )
    assert refused.value.status == 409


def _certificate(name):
    return "certificates", name, NS, "cert-manager.io"


# --- the notebook


def _run(run_runbook, incident, pki, tmp_path, *args):
    parameters = tmp_path / "endpoints.yaml"
    parameters.write_text(
        yaml.safe_dump(
            {"endpoints": [pki.expired, pki.valid, pki.closed], "ca_file": str(pki.ca_file), "timeout_seconds": 2}
        )
    )
    return run_runbook(RUNBOOK, *incident.runbook_args(NS), "-f", str(parameters), *args)


def test_runbook_names_what_expired_and_changes_nothing(run_runbook, incident, pki, tmp_path):
    before = incident.list("certificates", NS, "cert-manager.io")
    outcome = _run(run_runbook, incident, pki, tmp_path)
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()
    assert findings["expired-endpoints"]["data"]["endpoints"] == [pki.expired]
    assert findings["expiring-endpoints"]["data"]["endpoints"] == []
    assert findings["untrusted-endpoints"]["data"]["endpoints"] == [pki.expired]
    assert findings["unreachable-endpoints"]["data"]["endpoints"] == [pki.closed]
    assert findings["certificates-not-ready"]["data"]["certificates"] == ["api-gateway-tls"]
    actions = outcome.evidence["actions"]
    assert [(a["mode"], a["target"]) for a in actions] == [("dry-run", "certificate/api-gateway-tls in autolytiq-prod")]
    assert all(r.method == "GET" or r.dry_run for r in incident.requests)
    assert incident.list("certificates", NS, "cert-manager.io") == before
    for path in outcome.evidence_path.parent.iterdir():  # the notebook, its HTML, the evidence file
        text = path.read_text()
        assert pki.key_pem.splitlines()[1] not in text and "PRIVATE KEY" not in text, path.name


def test_runbook_with_apply_renews_exactly_the_expired_certificate(run_runbook, incident, pki, tmp_path):
    dashboard = incident.get(*_certificate("dashboard-tls"))
    outcome = _run(run_runbook, incident, pki, tmp_path, "-p", "apply", "true")
    assert outcome.exit_code == 0, outcome.stderr
    [action] = outcome.evidence["actions"]
    assert action["mode"] == "applied" and action["target"] == "certificate/api-gateway-tls in autolytiq-prod"
    issuing = [
        c for c in incident.get(*_certificate("api-gateway-tls"))["status"]["conditions"] if c["type"] == "Issuing"
    ]
    assert [(c["status"], c["reason"]) for c in issuing] == [("True", "ManuallyTriggered")]
    assert incident.get(*_certificate("dashboard-tls")) == dashboard
    writes = [r for r in incident.requests if r.method != "GET"]
    assert [(r.method, r.path.rsplit("/", 2)[-2]) for r in writes] == [("PATCH", "api-gateway-tls")]


# --- chains, strictness and certificates kept in another namespace


@pytest.fixture(scope="module")
def real_world_pki(tmp_path_factory):
    """A private root CA with an intermediate that expired yesterday, signing a valid leaf (sent with the
    intermediate, as servers send chains); and a leaf of the root without an Authority Key Identifier."""
    folder = tmp_path_factory.mktemp("chains")
    root = endpoints.new_ca("Autolytiq Root CA", NOW)
    stale = endpoints.intermediate(
        root, NOW - dt.timedelta(days=400), NOW - dt.timedelta(days=1), "Autolytiq Issuing CA 1"
    )
    leaf = endpoints.leaf(stale, NOW - dt.timedelta(days=10), NOW + dt.timedelta(days=80))
    bare = endpoints.leaf(root, NOW - dt.timedelta(days=10), NOW + dt.timedelta(days=80), authority_key_id=False)
    chained = endpoints.write(folder, "chained", *leaf, chain=[stale[0]])
    no_aki = endpoints.write(folder, "no-aki", *bare)
    ca_file = endpoints.write_certificate(folder / "root.crt", root[0])
    with endpoints.tls_server(*chained[:2]) as chained_port, endpoints.tls_server(*no_aki[:2]) as bare_port:
        yield {"ca_file": str(ca_file), "chained": f"localhost:{chained_port}", "no_aki": f"localhost:{bare_port}"}


def test_an_expired_intermediate_makes_the_endpoint_expired(real_world_pki):
    table = by_endpoint(tls.inspect([real_world_pki["chained"]], 14, 2, real_world_pki["ca_file"], now=NOW))
    row = table[real_world_pki["chained"]]
    assert row["not_after"] > NOW  # the leaf itself is valid for 80 days ...
    assert row["status"] == "expired" and row["days_left"] < 0  # ... its intermediate is not
    assert "Autolytiq Issuing CA 1 is expired" in row["error"] and row["chain"].startswith("Autolytiq Issuing CA 1")
    assert row["trusted"] is False  # OpenSSL agrees: certificate has expired
    findings = {f.id: f for f in diagnosis.assess_endpoints(pd.DataFrame([row]), 14)}
    assert findings["expired-endpoints"].data["endpoints"] == [real_world_pki["chained"]]
    assert "Autolytiq Issuing CA 1" in findings["expired-endpoints"].summary


def test_strict_x509_is_reported_apart_from_trust(real_world_pki):
    """Python 3.13 verifies with VERIFY_X509_STRICT by default: a leaf without Authority Key Identifier fails
    there and passes everywhere else; `trusted` keeps the lenient verdict, `strict` the strict one."""
    table = by_endpoint(tls.inspect([real_world_pki["no_aki"]], 14, 2, real_world_pki["ca_file"], now=NOW))
    row = table[real_world_pki["no_aki"]]
    assert (row["status"], row["trusted"], row["strict"]) == ("ok", True, False)
    assert "Authority Key Identifier" in row["error"]
    findings = {f.id: f for f in diagnosis.assess_endpoints(pd.DataFrame([row]), 14)}
    assert findings["untrusted-endpoints"].data["endpoints"] == []
    assert findings["strict-x509"].severity == "warning" and "Python 3.13" in findings["strict-x509"].summary
    lenient = tls.verifying_context(real_world_pki["ca_file"])
    assert not lenient.verify_flags & tls.STRICT  # whatever this Python's default


ELSEWHERE = {
    "namespace": "istio-system",
    "objects": [
        {
            "kind": "Certificate",
            "metadata": {"name": "public-gateway", "creationTimestamp": {"ago": "200d"}},
            "spec": {
                "secretName": "public-gateway-credential",
                "dnsNames": ["*.autolytiq.io", "autolytiq.io"],
                "issuerRef": {"kind": "ClusterIssuer", "name": "letsencrypt-prod", "group": "cert-manager.io"},
            },
            "status": {
                "notBefore": {"ago": "92d"},
                "notAfter": {"ago": "1d"},
                "renewalTime": {"ago": "31d"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "Expired",
                        "message": "Certificate expired 1 day ago",
                    }
                ],
            },
        },
        {
            "kind": "Certificate",
            "metadata": {"name": "internal-grafana"},
            "spec": {"secretName": "grafana-tls", "dnsNames": ["grafana.internal"], "issuerRef": {"name": "internal"}},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending"}]},
        },
    ],
}


def test_a_certificate_in_another_namespace_covering_the_endpoint_is_found_and_renewed_there(incident, cluster):
    incident.load(ELSEWHERE)
    found = certificates.list_certificates(cluster, hosts=tls.hosts(["api.autolytiq.io:443", "127.0.0.1:443"]))
    refs = list(found.frame["ref"])
    assert "istio-system/public-gateway" in refs and "istio-system/internal-grafana" not in refs
    assert found.partial is None
    assert "istio-system/public-gateway" in diagnosis.to_renew(found, [])
    [action] = certificates.renew(cluster, ["istio-system/public-gateway"], apply=False)
    assert action.target == "certificate/public-gateway in istio-system" and action.mode == "dry-run"
    [patch] = [r for r in incident.requests if r.method == "PATCH"]
    assert patch.path.startswith("/apis/cert-manager.io/v1/namespaces/istio-system/") and patch.dry_run


def test_not_allowed_to_search_other_namespaces_is_said_so(incident, cluster):
    incident.load(ELSEWHERE)
    incident.server.forbid("certificates", group="cert-manager.io", verb="list", namespace="")
    found = certificates.list_certificates(cluster, hosts=("api.autolytiq.io",))
    assert set(found.frame["ref"]) == {"api-gateway-tls", "dashboard-tls"}  # the namespace's own
    assert "not searched" in found.partial and "HTTP 403" in found.partial
    not_ready = diagnosis.assess_certificates(found, 14)[0]
    assert "not searched" in not_ready.summary and not_ready.data["note"] == found.partial

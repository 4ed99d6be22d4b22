"""cert-manager Certificates: Ready or not, when they expire, when cert-manager meant to renew them; `cmctl renew`.

What `kubectl get certificate -n NS` and `cmctl status certificate NAME` show, one row per Certificate
(cert-manager.io/v1). When the cluster does not serve that resource (cert-manager not installed) or the
runbook may not list it, the result carries a note instead of rows, and the caller goes on.

The certificate an endpoint serves often lives in another namespace than the application's: an Istio ingress
gateway reads its Secret from istio-system, a shared ingress from its own. Given the endpoints' host names,
Certificates anywhere in the cluster whose dnsNames (or commonName) cover one of them are listed too (`ref`
`namespace/name`); when listing across namespaces is not allowed, `partial` says so.

Renewal writes what `cmctl renew` writes: the status condition Issuing=True, reason ManuallyTriggered,
through the /status subresource. cert-manager then issues the certificate again; its Secret, and the
certificate being served, stay in place until the new one is signed. The patch carries the
resourceVersion just read, so a status cert-manager changed in between is not overwritten (HTTP 409).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from kubernetes.client.exceptions import ApiException

from .. import display, escape
from ..evidence import Action
from ..tls import days_left, dns_name_matches
from . import events
from .cluster import REQUEST_TIMEOUT, Cluster

GROUP, VERSION, PLURAL = "cert-manager.io", "v1", "certificates"
RESOURCE = f"{PLURAL}.{GROUP}/{VERSION}"
MERGE_PATCH = "application/merge-patch+json"  # custom resources take no strategic merge patch
RENEWAL = {
    "type": "Issuing",
    "status": "True",
    "reason": "ManuallyTriggered",
    "message": "Certificate re-issuance manually triggered",
}
RELATED_KINDS = {"Certificate", "CertificateRequest", "Order", "Challenge"}  # named after their Certificate
COLUMNS = [
    "ref",
    "namespace",
    "name",
    "secret_name",
    "dns_names",
    "issuer",
    "ready",
    "reason",
    "message",
    "issuing",
    "not_after",
    "renewal_time",
    "days_left",
    "renewal_overdue",
]


@dataclass(frozen=True)
class Certificates:
    frame: pd.DataFrame  # COLUMNS; empty when `note` says why nothing could be listed
    note: str | None = None
    partial: str | None = None  # what could not be searched (other namespaces), when something was listed

    def _repr_html_(self) -> str:
        if self.note:
            return f'<p class="{escape.NO_MATH}"><b>Note:</b> {escape.html(self.note)}</p>'
        partial = f'<p class="{escape.NO_MATH}"><b>Note:</b> {escape.html(self.partial)}</p>' if self.partial else ""
        return partial + display.frame_html(self.frame)


def list_certificates(cluster: Cluster, now: dt.datetime | None = None, hosts: tuple[str, ...] = ()) -> Certificates:
    """The namespace's Certificates, and those in any namespace covering one of `hosts`. `days_left`: whole days
    to status.notAfter, negative once expired."""
    empty = pd.DataFrame(columns=COLUMNS)
    try:
        listing = cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, PLURAL, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as e:
        if e.status == 404:
            return Certificates(
                empty,
                f"this cluster does not serve {RESOURCE} (is cert-manager installed?): "
                "no Certificates to check; the endpoint checks stand on their own",
            )
        if e.status == 403:
            return Certificates(empty, f"not allowed to list {RESOURCE} in {cluster.namespace} (HTTP 403)")
        raise
    items, partial = list(listing["items"]), None
    if hosts:
        elsewhere, partial = _covering(cluster, hosts)
        items += elsewhere
    now = now or dt.datetime.now(dt.timezone.utc)
    frame = pd.DataFrame([_row(item, now, cluster.namespace) for item in items], columns=COLUMNS)
    return Certificates(frame.astype({"days_left": "Int64"}), partial=partial)


def related_events(cluster: Cluster, refs: list[str]) -> pd.DataFrame:
    """Events about these Certificates (`name`, or `namespace/name`) and the CertificateRequests, Orders and
    Challenges issued for them, each read in its Certificate's namespace."""
    found = []
    for namespace, names in _by_namespace(cluster, refs).items():
        items = cluster.core.list_namespaced_event(namespace, _request_timeout=REQUEST_TIMEOUT).items
        found += [
            e
            for e in items
            if e.involved_object.kind in RELATED_KINDS
            and any(e.involved_object.name == n or e.involved_object.name.startswith(f"{n}-") for n in names)
        ]
    return events.frame(found)


def renew(cluster: Cluster, refs: list[str], apply: bool, now: dt.datetime | None = None) -> list[Action]:
    """`cmctl renew` for each Certificate (`name`, or `namespace/name`): server-side dry run unless `apply`."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return [
        _renew(cluster.in_namespace(namespace), name, apply, now)
        for namespace, names in _by_namespace(cluster, refs).items()
        for name in names
    ]


def _covering(cluster: Cluster, hosts: tuple[str, ...]) -> tuple[list[dict], str | None]:
    """Certificates outside the runbook's namespace covering one of `hosts`; a note when not listable."""
    try:
        listing = cluster.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        if e.status not in (401, 403):
            raise
        return [], (
            f"Certificates in other namespaces not searched for {', '.join(hosts)}: listing {RESOURCE} across "
            f"namespaces is not allowed (HTTP {e.status}); an ingress gateway's certificate often lives there"
        )
    return [
        item
        for item in listing["items"]
        if item["metadata"].get("namespace") != cluster.namespace and _covers(item, hosts)
    ], None


def _covers(certificate: dict, hosts: tuple[str, ...]) -> bool:
    spec = certificate.get("spec") or {}
    names = [*(spec.get("dnsNames") or []), *([spec["commonName"]] if spec.get("commonName") else [])]
    return any(dns_name_matches(name, host) for name in names for host in hosts)


def _by_namespace(cluster: Cluster, refs: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for ref in refs:
        namespace, _, name = ref.rpartition("/")
        grouped.setdefault(namespace or cluster.namespace, []).append(name)
    return grouped


def renewal_patch(certificate: dict, now: dt.datetime) -> dict:
    """A merge patch of the status setting Issuing=True (ManuallyTriggered), the other conditions kept.

    A merge patch replaces lists whole, so the patch carries every condition; its resourceVersion makes
    the server refuse it (409) if the status changed since `certificate` was read.
    """
    meta = certificate["metadata"]
    issuing = {
        **RENEWAL,
        "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "observedGeneration": meta.get("generation", 1),
    }
    conditions = [c for c in (certificate.get("status") or {}).get("conditions") or [] if c.get("type") != "Issuing"]
    return {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": {"conditions": [*conditions, issuing]}}


def _renew(cluster: Cluster, name: str, apply: bool, now: dt.datetime) -> Action:
    target = f"certificate/{name} in {cluster.namespace}"
    mode = "applied" if apply else "dry-run"
    args = (GROUP, VERSION, cluster.namespace, PLURAL, name)
    try:
        live = cluster.custom.get_namespaced_custom_object(*args, _request_timeout=REQUEST_TIMEOUT)
        before = _condition(live, "Issuing")
        if before.get("status") == "True":
            return Action(
                "renew-certificate",
                mode,
                target,
                f"already being issued (Issuing=True, {before.get('reason')}); nothing sent",
            )
        cluster.custom.patch_namespaced_custom_object_status(
            *args,
            renewal_patch(live, now),
            dry_run=None if apply else "All",
            _content_type=MERGE_PATCH,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as e:
        return Action(
            "renew-certificate", mode, target, f"{'failed' if apply else 'dry run refused'}: HTTP {e.status} {e.reason}"
        )
    change = "set condition Issuing=True (ManuallyTriggered)" + (
        f", replacing Issuing={before.get('status')} ({before.get('reason')})" if before else ""
    )
    if apply:
        return Action("renew-certificate", mode, target, f"{change}: cert-manager issues the certificate again")
    return Action("renew-certificate", mode, target, f"accepted by server-side dry run; would {change}")


def _row(certificate: dict, now: dt.datetime, home: str) -> dict:
    spec, status = certificate.get("spec") or {}, certificate.get("status") or {}
    ready, issuing = _condition(certificate, "Ready"), _condition(certificate, "Issuing")
    issuer = spec.get("issuerRef") or {}
    not_after, renewal_time = _time(status.get("notAfter")), _time(status.get("renewalTime"))
    namespace, name = certificate["metadata"].get("namespace") or home, certificate["metadata"]["name"]
    return {
        "ref": name if namespace == home else f"{namespace}/{name}",
        "namespace": namespace,
        "name": name,
        "secret_name": spec.get("secretName"),
        "dns_names": ", ".join(spec.get("dnsNames") or []),
        "issuer": f"{issuer.get('kind', 'Issuer')}/{issuer.get('name')}",
        "ready": ready.get("status"),
        "reason": ready.get("reason"),
        "message": ready.get("message"),
        "issuing": f"{issuing['status']} ({issuing.get('reason')})" if issuing else None,
        "not_after": not_after,
        "renewal_time": renewal_time,
        "days_left": days_left(not_after, now) if not_after else None,
        "renewal_overdue": renewal_time is not None and renewal_time < now,
    }


def _condition(certificate: dict, kind: str) -> dict:
    conditions = (certificate.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

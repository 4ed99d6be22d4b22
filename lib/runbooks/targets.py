"""What a run looks at, in words, from its parameters: the cluster and namespace, the database, the URLs.

Read from the parameters as run (passwords already taken out) and, for an empty `kubeconfig`/`context`/`namespace`
or `dsn`, from where the run looks for them (the kubeconfig file, the PG* variables). Never a password: a `dsn` is
shown as host, port, database and user; a URL without its user information.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

_URLS = (
    ("prometheus_url", "Prometheus"),
    ("alertmanager_url", "Alertmanager"),
    ("jwks_url", "JWKS"),
)


def looked_at(parameters: dict[str, Any]) -> list[str]:
    """`Kubernetes: context sandbox (https://127.0.0.1:6443), namespace autolytiq-prod`, `PostgreSQL: ...`, ..."""
    lines = []
    if {"kubeconfig", "context", "namespace"} <= parameters.keys():
        lines.append(
            f"Kubernetes: {kubernetes(parameters['kubeconfig'], parameters['context'], parameters['namespace'])}"
        )
    if "dsn" in parameters:
        lines.append(f"PostgreSQL: {database(parameters['dsn'] or '')}")
    for name, what in _URLS:
        if parameters.get(name):
            lines.append(f"{what}: {url(parameters[name])}")
    if parameters.get("endpoints"):
        lines.append(f"TLS endpoints: {', '.join(map(str, parameters['endpoints']))}")
    if isinstance(parameters.get("dependencies"), dict) and parameters["dependencies"]:
        lines.append(f"Dependencies: {', '.join(map(str, parameters['dependencies']))}")
    return lines


def kubernetes(kubeconfig: str, context: str, namespace: str) -> str:
    """`context sandbox (https://127.0.0.1:6443), namespace autolytiq-prod`, as runbooks.kube.cluster.connect
    would choose them; `in-cluster` in a pod; what is unknown is said so."""
    path = Path(kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config").expanduser()
    server = ""
    try:
        config = yaml.safe_load(path.read_text()) or {}
        context = context or config.get("current-context", "")
        entry = next((c.get("context") or {} for c in config.get("contexts") or [] if c.get("name") == context), {})
        namespace = namespace or entry.get("namespace", "") or "default"
        clusters = config.get("clusters") or []
        server = next(
            (
                url((c.get("cluster") or {}).get("server", ""))
                for c in clusters
                if c.get("name") == entry.get("cluster")
            ),
            "",
        )
    except (OSError, yaml.YAMLError, AttributeError, TypeError):
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return f"in-cluster, namespace {namespace or 'of the pod'}"
        return f"no kubeconfig at {path}"
    return f"context {context or '(none)'}{f' ({server})' if server else ''}, namespace {namespace}"


def database(dsn: str) -> str:
    """`db.internal:5432, database autolytiq, user autolytiq_admin`; the PG* variables' for an empty dsn."""
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.errors import ProgrammingError

    try:
        given = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except ProgrammingError:
        return "(a connection string libpq cannot read)"
    host = given.get("host") or os.environ.get("PGHOST") or "the local socket"
    port = given.get("port") or os.environ.get("PGPORT") or "5432"
    where = f"{host}:{port}" if not host.startswith("/") else f"socket {host} port {port}"
    dbname = given.get("dbname") or os.environ.get("PGDATABASE") or ""
    user = given.get("user") or os.environ.get("PGUSER") or ""
    return where + (f", database {dbname}" if dbname else "") + (f", user {user}" if user else "")


def url(text: str) -> str:
    """The URL without user information (`https://user:pw@host/x` -> `https://host/x`)."""
    parts = urlsplit(str(text))
    if not parts.netloc or "@" not in parts.netloc:
        return str(text)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()

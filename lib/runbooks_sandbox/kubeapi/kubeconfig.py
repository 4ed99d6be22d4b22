"""Write a kubeconfig that points the official client and kubectl at a test server."""

from pathlib import Path

import yaml


def write_kubeconfig(path, server_url, context="test", namespace=None, token="test-token"):
    """Write a one-cluster, one-user, one-context kubeconfig to path; return the path."""
    context_entry = {"cluster": context, "user": context}
    if namespace:
        context_entry["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": context_entry}],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path

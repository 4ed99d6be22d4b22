"""Runs started by Alertmanager: `runbook serve`.

- `webhook.py`  the webhook payload (version 4): its shape, checked, as frozen dataclasses
- `routing.py`  `parameters/alerts.yaml`: alert name -> runbook, labels -> checked parameters, incident ids
- `queue.py`    the durable queue (SQLite under the output folder): one row per alert, deduplicated
- `intake.py`   what happens to each alert of a notification: queued, duplicate, unrouted, rejected, resolved
- `telemetry.py` what GET /metrics shows (prometheus_client)
- `workers.py`  the bounded pool of threads that run queued alerts through `runner.run`
- `service.py`  the HTTP side (Starlette): POST /alerts, GET /healthz, /runs, /metrics
"""

"""Messages that are sent, not only drafted: Slack, the status page and PagerDuty.

`runbook comms INC --kind KIND --post` and the escalations of `runbook serve` send through here. Which channels
exist, and in which environment variables their secrets are, is `parameters/integrations.yaml` (config): a channel
not configured there, or whose variable is not set, is skipped with a line saying so, never an error.

    slack        an incoming webhook: POST {"text": ...}; the webhook URL is the secret      (slack.py)
    statuspage   Atlassian Statuspage REST API: create, then update, the page's incident     (statuspage.py)
    pagerduty    PagerDuty Events API v2: trigger, acknowledge, resolve; dedup_key = incident (pagerduty.py)

Each message is one `Delivery` (deliver.py): what was sent (the text, or for a channel marked `private` only its
SHA-256), where (never a secret), the receiver's answer and every attempt. A post that times out, cannot connect
or is answered 408/420/429/5xx is retried with a doubling backoff (honouring Retry-After), then recorded as
failed; other 4xx answers are not retried: the API refused the request itself and would refuse it again.
"""

from .config import CHANNELS, Integrations, load
from .deliver import Delivery

__all__ = ["CHANNELS", "Delivery", "Integrations", "load"]

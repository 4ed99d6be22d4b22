"""A JSON Web Key Set (RFC 7517): which key ids (`kid`) an issuer publishes, read with one GET.

Tokens signed with RS256/ES256 name their key in the header's `kid`; a validator finds it in the issuer's key
set (`/.well-known/jwks.json`, or the `jwks_uri` of its OpenID configuration), which it caches. The keys
themselves are public; only their ids, types and algorithms are kept here. A URL that does not answer, or answers
something that is not a key set, is a KeySet with `error` saying why, never an exception.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from . import __version__

USER_AGENT = f"runbooks/{__version__} (jwks)"
MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class KeySet:
    url: str
    kids: tuple[str, ...] = ()
    algorithms: dict[str, str] = field(default_factory=dict)  # kid -> alg (or kty when no alg is given)
    error: str | None = None  # why no key set could be read


def fetch(url: str, timeout: float) -> KeySet:
    """The key ids of the key set at `url` (one GET, at most MAX_BYTES read)."""
    if not url:
        return KeySet(url, error="no jwks_url given")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BYTES)
    except urllib.error.HTTPError as e:
        e.close()
        return KeySet(url, error=f"HTTP {e.code}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        return KeySet(url, error=" ".join(str(reason).split())[:300] or type(reason).__name__)
    try:
        keys = json.loads(body)["keys"]
        listed = [(str(k["kid"]), str(k.get("alg") or k.get("kty") or "?")) for k in keys if "kid" in k]
    except (ValueError, KeyError, TypeError):
        return KeySet(url, error="the answer is not a JSON Web Key Set (no keys list)")
    return KeySet(url, tuple(kid for kid, _ in listed), dict(listed))

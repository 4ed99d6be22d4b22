"""TLS endpoints: the certificate each one presents, its dates, whether its chain verifies, whether it names the host.

What `openssl s_client -connect HOST:PORT -servername NAME | openssl x509 -noout -dates` shows, for a list of
endpoints.

An endpoint is `host:port`, or `host:port@servername` when the name to ask for (SNI) and to find in
the certificate differs from the address connected to, e.g. `10.0.3.7:443@api.autolytiq.com` to look
at one ingress replica. Port 443 when left out; IPv6 addresses in brackets: `[2001:db8::1]:443`.

Each endpoint gets three handshakes and nothing else is sent:
1. without verification, so that an expired, self-signed or otherwise untrusted certificate is still read,
   with every certificate the server presents (the chain: an expired intermediate fails clients as surely as
   an expired leaf, so `status` is the worst of the chain and `error` names the certificate);
2. with verification against the system trust store (plus the CAs in `ca_file`, for private CAs), the
   hostname check left off and without OpenSSL's strict X.509 checks: does the chain verify, and if not,
   OpenSSL's reason (`trusted`);
3. the same with strict X.509 checks (VERIFY_X509_STRICT, which Python 3.13 turns on by default): certificates
   of private CAs often lack what they require (an Authority Key Identifier, a critical basicConstraints), and
   strict clients refuse them while others accept them (`strict`, reported apart from `trusted`).
The hostname is matched here against the certificate's subjectAltNames, as browsers and Python's ssl do
(RFC 6125: `*` only as the whole left-most label, IP addresses only against IP SANs, no subject-CN fallback).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from . import units

DEFAULT_PORT = 443
PARALLEL_PROBES = 8
COLUMNS = [
    "endpoint",
    "subject_cn",
    "sans",
    "issuer",
    "not_before",
    "not_after",
    "days_left",
    "status",
    "trusted",
    "strict",
    "hostname_match",
    "error",
    "chain",
    "chain_not_after",
    "sha256",
]
STRICT = getattr(ssl, "VERIFY_X509_STRICT", 0x20)


@dataclass(frozen=True)
class Endpoint:
    host: str  # what is connected to: a DNS name or an IP address
    port: int
    servername: str  # sent as SNI and matched against the certificate

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" + (f"@{self.servername}" if self.servername != self.host else "")


@dataclass(frozen=True)
class Probe:
    """What the two handshakes with one endpoint gave."""

    endpoint: Endpoint
    der: bytes | None  # the leaf certificate as presented; None when no handshake succeeded
    error: str | None = None  # why no certificate could be read
    trusted: bool | None = None  # the chain verifies; None when the verifying handshake failed otherwise
    verify_error: str | None = None  # why it does not
    chain: tuple[bytes, ...] = ()  # every certificate presented after the leaf (DER), in the order sent
    strict: bool | None = None  # the chain verifies with strict X.509 checks too; None when not tried
    strict_error: str | None = None


def parse_endpoint(text: str) -> Endpoint:
    """`host[:port][@servername]`; ValueError for anything else."""
    address, _, servername = text.strip().partition("@")
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:
        host, port = address, ""
    if ":" in host and not _is_ip(host):
        host = ""
    if not host or (port and not port.isdigit()) or not 0 < int(port or DEFAULT_PORT) < 65536:
        raise ValueError(f"endpoint {text!r}: expected host:port or host:port@servername")
    return Endpoint(host, int(port or DEFAULT_PORT), servername or host)


def hosts(endpoints: list[str]) -> tuple[str, ...]:
    """The host names the endpoints are checked for (their servernames), IP addresses left out."""
    names = (parse_endpoint(e).servername for e in endpoints)
    return tuple(dict.fromkeys(n for n in names if not _is_ip(n)))


def verifying_context(ca_file: str = "", strict: bool = False) -> ssl.SSLContext:
    """The system trust store, plus the CAs in `ca_file` (PEM) if given; hostname checked separately; OpenSSL's
    strict X.509 checks on or off whatever this Python's default (3.13 turns them on)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    context.check_hostname = False
    context.verify_flags = (context.verify_flags | STRICT) if strict else (context.verify_flags & ~STRICT)
    return context


def reading_context() -> ssl.SSLContext:
    """Accepts any certificate: for reading it, never for trusting it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def probe(endpoint: Endpoint, timeout: float, verifying: ssl.SSLContext, strict: ssl.SSLContext | None = None) -> Probe:
    """Read the certificate and its chain without verification, then verify the chain in a second handshake, and
    with strict X.509 checks in a third (when `strict` is given and the second verified)."""
    try:
        der, chain = _handshake(endpoint, timeout, reading_context())
    except (OSError, ValueError) as e:
        return Probe(endpoint, None, error=_describe(e, endpoint, timeout))
    try:
        _handshake(endpoint, timeout, verifying)
    except ssl.SSLCertVerificationError as e:
        return Probe(endpoint, der, trusted=False, verify_error=e.verify_message or str(e), chain=chain)
    except (OSError, ValueError) as e:
        why = f"verifying handshake failed: {_describe(e, endpoint, timeout)}"
        return Probe(endpoint, der, verify_error=why, chain=chain)
    if strict is None:
        return Probe(endpoint, der, trusted=True, chain=chain)
    try:
        _handshake(endpoint, timeout, strict)
    except ssl.SSLCertVerificationError as e:
        return Probe(endpoint, der, trusted=True, chain=chain, strict=False, strict_error=e.verify_message or str(e))
    except (OSError, ValueError):
        return Probe(endpoint, der, trusted=True, chain=chain)
    return Probe(endpoint, der, trusted=True, chain=chain, strict=True)


def probe_all(endpoints: list[Endpoint], timeout: float, ca_file: str = "") -> list[Probe]:
    """Every endpoint probed, a few at a time, in the order given."""
    verifying, strict = verifying_context(ca_file), verifying_context(ca_file, strict=True)
    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_PROBES, len(endpoints)))) as pool:
        return list(pool.map(lambda e: probe(e, timeout, verifying, strict), endpoints))


def inspect(
    endpoints: list[str], warn_days: float, timeout_seconds: float, ca_file: str = "", now: dt.datetime | None = None
) -> pd.DataFrame:
    """One row per endpoint (COLUMNS). Status: expired, expiring (within warn_days), ok, not yet valid, unreachable.

    `days_left`: whole days to notAfter (see days_left), negative exactly when the certificate has expired.
    `error` says why an endpoint is unreachable, or why its certificate is not trusted for its name.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    probes = probe_all([parse_endpoint(e) for e in endpoints], timeout_seconds, ca_file)
    frame = pd.DataFrame([row(p, warn_days, now) for p in probes], columns=COLUMNS)
    return frame.astype({"days_left": "Int64"})


def row(result: Probe, warn_days: float, now: dt.datetime) -> dict:
    if result.der is None:
        return {
            **dict.fromkeys(COLUMNS),
            "endpoint": str(result.endpoint),
            "status": "unreachable",
            "error": result.error,
        }
    certificate = x509.load_der_x509_certificate(result.der)
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    matches = names_host(certificate, result.endpoint.servername)
    problems = [result.verify_error] if result.verify_error else []
    if not matches:
        problems.append(f"{result.endpoint.servername} is not among the certificate's names")
    chain = [x509.load_der_x509_certificate(der) for der in result.chain]
    status = _status(now, not_before, not_after, warn_days)
    for other in chain:  # the worst certificate of the chain decides, the leaf first
        other_status = _status(now, other.not_valid_before_utc, other.not_valid_after_utc, warn_days)
        if _RANK[other_status] > _RANK[status]:
            status = other_status
            problems.append(
                f"the chain's certificate {_common_name(other.subject) or other.subject.rfc4514_string()} is "
                f"{other_status} (notAfter {units.when(other.not_valid_after_utc)})"
            )
    if result.strict is False:
        problems.append(f"refused with strict X.509 checks (as Python 3.13+ clients do): {result.strict_error}")
    return {
        "endpoint": str(result.endpoint),
        "subject_cn": _common_name(certificate.subject),
        "sans": ", ".join(_alt_names(certificate)),
        "issuer": certificate.issuer.rfc4514_string(),
        "not_before": not_before,
        "not_after": not_after,
        "days_left": days_left(min([not_after, *(c.not_valid_after_utc for c in chain)]), now),
        "status": status,
        "trusted": result.trusted,
        "strict": result.strict,
        "hostname_match": matches,
        "error": "; ".join(problems) or None,
        "chain": "; ".join(
            f"{_common_name(c.subject) or c.subject.rfc4514_string()} until {c.not_valid_after_utc:%Y-%m-%d}"
            for c in chain
        )
        or None,
        "chain_not_after": min((c.not_valid_after_utc for c in chain), default=None),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(":"),
    }


def days_left(not_after: dt.datetime, now: dt.datetime) -> int:
    """Whole days until `not_after`, cut toward zero; negative once it has passed (-1 during the first day)."""
    days = int((not_after - now) / dt.timedelta(days=1))
    return min(days, -1) if not_after <= now else days


def names_host(certificate: x509.Certificate, name: str) -> bool:
    """Whether the certificate's subjectAltNames cover `name` (a DNS name or an IP address)."""
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        host = name.rstrip(".").lower()
        return any(_dns_matches(pattern, host) for pattern in sans.get_values_for_type(x509.DNSName))
    return address in sans.get_values_for_type(x509.IPAddress)


_RANK = {"ok": 0, "expiring": 1, "not yet valid": 2, "expired": 3}


def dns_name_matches(pattern: str, host: str) -> bool:
    """Whether a certificate's DNS name (`api.example.com`, `*.example.com`) covers `host` (RFC 6125)."""
    return _dns_matches(pattern, host.rstrip(".").lower())


def _status(now: dt.datetime, not_before: dt.datetime, not_after: dt.datetime, warn_days: float) -> str:
    if now < not_before:
        return "not yet valid"
    if now >= not_after:
        return "expired"
    return "expiring" if not_after - now < dt.timedelta(days=warn_days) else "ok"


def _handshake(endpoint: Endpoint, timeout: float, context: ssl.SSLContext) -> tuple[bytes, tuple[bytes, ...]]:
    """The leaf certificate and the rest of the chain the server presented (DER)."""
    with (
        socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=endpoint.servername) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
        presented = _presented_chain(tls)
    if certificate is None:  # only before the handshake, which wrap_socket has done
        raise ssl.SSLError("the server presented no certificate")
    return certificate, tuple(der for der in presented if der != certificate)


def _presented_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """Every certificate the server sent, as DER: SSLSocket.get_unverified_chain() (Python 3.13), else the same
    method of the underlying _ssl object (3.10-3.12), else the leaf only."""
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return [bytes(der) for der in public() or []]
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if private is None:
        return []
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in private() or []]  # type: ignore[attr-defined]


def _describe(error: Exception, endpoint: Endpoint, timeout: float) -> str:
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {endpoint.host}: {error.strerror}"
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused by {endpoint.host}:{endpoint.port}"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {error.reason or error}"
    return " ".join(str(error).split()) or type(error).__name__


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _dns_matches(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern.startswith("*."):
        label, _, parent = host.partition(".")
        return bool(label) and "." in pattern[2:] and parent == pattern[2:]
    return pattern == host


def _common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def _alt_names(certificate: x509.Certificate) -> list[str]:
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*sans.get_values_for_type(x509.DNSName), *map(str, sans.get_values_for_type(x509.IPAddress))]

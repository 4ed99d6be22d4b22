"""Endpoints on loopback for the sandbox and the tests: TLS servers with a private CA's certificates, health checks.

- `new_ca`, `leaf`, `write`: a CA and leaf certificates for localhost/127.0.0.1 (EC P-256, `cryptography`),
  valid over the dates asked for, written as PEM files.
- `tls_server(cert, key)`: completes TLS handshakes with that certificate on 127.0.0.1 at a free port.
- `serve_pki(folder)`: a CA file, an expired and a valid endpoint served, and a closed port: a `Pki`.
- `closed_port()`: a loopback port nothing listens on (connections are refused).
- `serve_health(status)`: an HTTP endpoint answering every request with `status`; it records what it received.

Every server runs in a daemon thread and stops when its `with` block ends.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "Runbook Test CA"
CA_USAGE = x509.KeyUsage(  # what a CA's certificate may sign
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


# --- certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_ca(common_name: str = CA_NAME, now: dt.datetime | None = None):
    """A self-signed CA valid from a year before `now` to a year after: (certificate, private key)."""
    now = now or _now()
    key = _key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=365))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def intermediate(
    ca, not_before: dt.datetime, not_after: dt.datetime, common_name: str = "Runbook Test Intermediate CA"
):
    """An intermediate CA signed by `ca`, valid from `not_before` to `not_after`: (certificate, private key)."""
    ca_certificate, ca_key = ca
    key = _key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return certificate, key


def leaf(
    ca,
    not_before: dt.datetime,
    not_after: dt.datetime,
    names=("localhost",),
    addresses=("127.0.0.1",),
    authority_key_id: bool = True,
):
    """A server certificate signed by `ca` for DNS `names` and IP `addresses`: (certificate, private key).

    `authority_key_id=False` leaves out the Authority Key Identifier, as many private CAs' tooling does: clients
    with strict X.509 checks (Python 3.13's default) refuse such a certificate, others accept it."""
    ca_certificate, ca_key = ca
    key = _key()
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if authority_key_id:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def write_certificate(path: Path, certificate) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def write(folder: Path, stem: str, certificate, key, chain=()) -> tuple[Path, Path, str]:
    """`<stem>.crt` (the certificate, then the `chain` the server sends after it) and `<stem>.key` (unencrypted
    PKCS#8, mode 0600) in folder: (cert path, key path, key PEM)."""
    cert_path, key_path = write_certificate(folder / f"{stem}.crt", certificate), folder / f"{stem}.key"
    with cert_path.open("ab") as out:
        for other in chain:
            out.write(other.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.touch(mode=0o600)
    key_path.write_bytes(key_pem)
    return cert_path, key_path, key_pem.decode()


# --- TLS servers


@contextmanager
def tls_server(cert_path: Path, key_path: Path) -> Iterator[int]:
    """Completes TLS handshakes on 127.0.0.1:<free port>, one connection at a time, until the block ends; yields the
    port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except OSError:  # the client refused the certificate, or hung up
                conn.close()

    thread = threading.Thread(target=serve, name=f"tls-{Path(cert_path).stem}", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def closed_port() -> int:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


@dataclass(frozen=True)
class Pki:
    """What `serve_pki` serves. Endpoints are written the way the ssl-certificate-expired runbook takes them."""

    ca_file: Path
    expired: str  # 127.0.0.1:<port>@localhost: expired two days ago
    valid: str  # localhost:<port>: 90 days left
    closed: str  # 127.0.0.1:<port>: refused
    key_pem: str  # one of the private keys, to look for in output files

    @property
    def endpoints(self) -> list[str]:
        return [self.expired, self.valid, self.closed]


@contextmanager
def serve_pki(folder: Path, ca_name: str = CA_NAME, now: dt.datetime | None = None) -> Iterator[Pki]:
    """A CA (`folder/ca.crt`) and two endpoints it signed, served until the block ends: one expired
    two days before `now` (issued 92 days before), one valid from a day before `now` for 90 days."""
    now = now or _now()
    folder.mkdir(parents=True, exist_ok=True)
    ca = new_ca(ca_name, now)
    ca_file = write_certificate(folder / "ca.crt", ca[0])
    expired = write(folder, "expired", *leaf(ca, now - dt.timedelta(days=92), now - dt.timedelta(days=2)))
    valid = write(folder, "valid", *leaf(ca, now - dt.timedelta(days=1), now + dt.timedelta(days=90)))
    with ExitStack() as stack:
        expired_port = stack.enter_context(tls_server(*expired[:2]))
        valid_port = stack.enter_context(tls_server(*valid[:2]))
        yield Pki(
            ca_file,
            f"127.0.0.1:{expired_port}@localhost",
            f"localhost:{valid_port}",
            f"127.0.0.1:{closed_port()}",
            expired[2],
        )


# --- HTTP health endpoints


@dataclass
class HealthEndpoint:
    url: str
    status: int
    requests: list = field(default_factory=list)  # (method, path) of every request received
    refused: int = 0  # requests answered 401: without the credentials `basic_auth` asks for


@contextmanager
def serve_health(
    status: int,
    body: str | None = None,
    content_type: str = "application/json",
    basic_auth: tuple[str, str] | None = None,
) -> Iterator[HealthEndpoint]:
    """An HTTP server on a free loopback port answering every request with `status` (and `body`, else a small
    JSON status), until the block ends; with `basic_auth` (user, password), 401 to a request without those
    credentials."""
    endpoint = HealthEndpoint("", status)
    answer = body.encode() if body is not None else None
    expected = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode() if basic_auth else None

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            endpoint.requests.append((self.command, self.path))
            if expected and self.headers.get("Authorization") != expected:
                endpoint.refused += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", "Basic")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = (
                answer if answer is not None else b'{"status": "ok"}' if status < 400 else b'{"status": "unavailable"}'
            )
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/health"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"health-{status}", daemon=True
    )
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

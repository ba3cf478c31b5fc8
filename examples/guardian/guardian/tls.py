"""The optional HTTPS listener of the API process and the certificate it serves.

TLS is on when ``<data-dir>/tls/cert.pem`` and ``key.pem`` exist (``guardian serve --tls`` issues
a self-signed pair when they are missing). The API process then also serves its app over HTTPS
on the API host, on the port recorded in ``tls/port`` (ephemeral the first time, reused after a
restart). It re-reads the pair whenever the files change, so a re-issued certificate reaches new
connections without a restart. The listener serves a private copy of the pair staged in
``tls/.staging`` (mode 0700), inside the data dir so that an API process killed before it could
clean up leaves nothing outside the instance's own files; the next API process clears it.
:func:`served_certificate` reads the certificate a listener really presents, through a TLS
handshake.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from guardian.paths import DataDir

log = logging.getLogger("guardian.tls")
DAY_S = 86_400.0
DEFAULT_VALID_DAYS = 365


def tls_dir(data_dir: DataDir) -> Path:
    """Directory of the certificate, its key and the listener's port."""
    return data_dir.root / "tls"


def cert_path(data_dir: DataDir) -> Path:
    """PEM certificate the listener serves."""
    return tls_dir(data_dir) / "cert.pem"


def key_path(data_dir: DataDir) -> Path:
    """PEM private key of the certificate (mode 0600)."""
    return tls_dir(data_dir) / "key.pem"


def staging_dir(data_dir: DataDir) -> Path:
    """Private directory (mode 0700) holding the copy of the pair the listener really serves."""
    return tls_dir(data_dir) / ".staging"


def port_path(data_dir: DataDir) -> Path:
    """File holding the HTTPS port the listener is bound to."""
    return tls_dir(data_dir) / "port"


@dataclass(frozen=True)
class CertInfo:
    """What matters of one certificate: expiry, serial and fingerprint."""

    not_after: float
    serial: str
    sha256: str

    def days_left(self, now: float | None = None) -> float:
        """Days until the certificate expires (negative once expired)."""
        return (self.not_after - (time.time() if now is None else now)) / DAY_S

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """Return the public JSON shape."""
        return {
            "not_after": self.not_after,
            "days_left": round(self.days_left(now), 3),
            "serial": self.serial,
            "sha256": self.sha256,
        }


def cert_info(der: bytes) -> CertInfo:
    """Decode a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    return CertInfo(
        not_after=cert.not_valid_after_utc.timestamp(),
        serial=format(cert.serial_number, "x"),
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def file_cert_info(path: Path) -> CertInfo:
    """Decode the PEM certificate stored at ``path``."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert_info(cert.public_bytes(serialization.Encoding.DER))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically with mode 0600."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def issue_self_signed(data_dir: DataDir, valid_days: float) -> CertInfo:
    """Issue a fresh key and a self-signed certificate for 127.0.0.1/localhost; install both."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guardian local HTTPS")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    tls_dir(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(
        key_path(data_dir),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_private(cert_path(data_dir), cert.public_bytes(serialization.Encoding.PEM))
    return cert_info(cert.public_bytes(serialization.Encoding.DER))


def ensure_certificate(data_dir: DataDir, valid_days: float = DEFAULT_VALID_DAYS) -> bool:
    """Issue a self-signed pair if none is installed; return whether one was issued."""
    if cert_path(data_dir).exists() and key_path(data_dir).exists():
        return False
    issue_self_signed(data_dir, valid_days)
    return True


def served_certificate(host: str, port: int, timeout_s: float = 2.0) -> CertInfo:
    """Handshake with ``host:port`` and decode the certificate it presents."""
    context = ssl.create_default_context()
    # Reading what is served, expired or self-signed included: nothing is trusted or sent.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout_s) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the listener presented no certificate")
    return cert_info(der)


def listener_port(data_dir: DataDir) -> int | None:
    """Return the HTTPS port recorded by the listener, if TLS is configured."""
    try:
        return int(port_path(data_dir).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def status(data_dir: DataDir, min_days: float, host: str = "127.0.0.1") -> dict[str, Any]:
    """Report the served certificate (a real handshake); ``ok`` if it lasts ``min_days``."""
    port = listener_port(data_dir)
    if port is None or not cert_path(data_dir).exists():
        return {"enabled": False, "ok": True, "min_days": min_days}
    try:
        served = served_certificate(host, port)
    except (OSError, ValueError) as exc:
        return {"enabled": True, "port": port, "ok": False, "error": str(exc)[:200]}
    return {
        "enabled": True,
        "port": port,
        "min_days": min_days,
        "served": served.to_json(),
        "ok": served.days_left() >= min_days,
    }


def _file_key(data_dir: DataDir) -> tuple[int, ...] | None:
    """Identity of the installed pair (inode, size, mtime of both), None if incomplete."""
    try:
        parts = [path.stat() for path in (cert_path(data_dir), key_path(data_dir))]
    except OSError:
        return None
    return tuple(v for st in parts for v in (st.st_ino, st.st_size, st.st_mtime_ns))


class TlsListener:
    """Serves ``app`` over HTTPS from a thread of the API process while a pair is installed."""

    def __init__(self, app: Any, data_dir: DataDir, host: str, poll_s: float = 0.5) -> None:
        """Bind to the app and the data dir; ``start`` begins watching for a certificate."""
        self.app = app
        self.data_dir = data_dir
        self.host = host
        self.poll_s = poll_s
        self.server: Any = None
        self.port: int | None = None
        self._loaded: tuple[int, ...] | None = None
        self._rejected: tuple[int, ...] | None = None
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self._serve: threading.Thread | None = None
        # The pair is served from a private copy: files replaced while being read (a key
        # already new, its certificate not yet) never reach the live TLS context.
        self._staging = staging_dir(data_dir)

    def start(self) -> None:
        """Clear a copy a killed predecessor left; watch the data dir for a pair in a thread."""
        shutil.rmtree(self._staging, ignore_errors=True)
        self._watch = threading.Thread(target=self._run, name="tls-watch", daemon=True)
        self._watch.start()

    def stop(self) -> None:
        """Stop the watcher, remove the staged copy, then stop the listener."""
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=5)
        # First: the live context holds the pair in memory, and the supervisor may kill this
        # process (parent-death signal) while the listener drains.
        shutil.rmtree(self._staging, ignore_errors=True)
        if self.server is not None:
            self.server.should_exit = True
        if self._serve is not None:
            self._serve.join(timeout=5)

    def _run(self) -> None:
        """Poll until stopped; errors are logged and retried at the next poll."""
        while not self._stop.is_set():
            try:
                self.tick()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                key = _file_key(self.data_dir)
                if key != self._rejected:  # once per state of the files, not every poll
                    self._rejected = key
                    log.error(
                        "TLS listener: cannot use the installed pair", extra={"error": str(exc)}
                    )
            self._stop.wait(self.poll_s)

    def tick(self) -> None:
        """Start the listener once a pair exists; reload the pair when its files change."""
        current = _file_key(self.data_dir)
        if current is None or current == self._loaded:
            return
        cert, key = self._stage()
        if self.server is None:
            self._start_server(cert, key)
        elif self.server.config.ssl is not None:
            self.server.config.ssl.load_cert_chain(cert, key)
            log.warning("TLS certificate reloaded", extra={"port": self.port})
        else:
            return  # the server is still loading its config: reload at the next poll
        self._loaded = current

    def _stage(self) -> tuple[Path, Path]:
        """Copy the installed pair to the private staging dir and check that it matches."""
        self._staging.mkdir(mode=0o700, exist_ok=True)
        self._staging.chmod(0o700)  # mkdir's mode is masked by the umask
        fresh = []
        for source in (cert_path(self.data_dir), key_path(self.data_dir)):
            target = self._staging / f"{source.name}.new"
            _write_private(target, source.read_bytes())
            fresh.append(target)
        # A half-written or mismatched pair raises here, before it replaces the staged one.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(fresh[0], fresh[1])
        cert, key = self._staging / "cert.pem", self._staging / "key.pem"
        fresh[0].replace(cert)
        fresh[1].replace(key)
        return cert, key

    def _bind(self) -> socket.socket:
        """Bind the recorded port if it is free, else an ephemeral one; record the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        preferred = listener_port(self.data_dir)
        try:
            sock.bind((self.host, preferred or 0))
        except OSError:
            sock.bind((self.host, 0))
        self.port = int(sock.getsockname()[1])
        if preferred != self.port:
            tmp = port_path(self.data_dir).with_name(f".port.tmp{os.getpid()}")
            tmp.write_text(f"{self.port}\n", encoding="ascii")
            tmp.replace(port_path(self.data_dir))
        return sock

    def _start_server(self, cert: Path, key: Path) -> None:
        """Run a uvicorn server on the bound socket in its own thread and event loop."""
        import uvicorn  # noqa: PLC0415 - only the API process serves

        sock = self._bind()
        config = uvicorn.Config(
            self.app,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            lifespan="off",
            log_config=None,
            access_log=False,
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self._serve = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="tls-serve", daemon=True
        )
        self._serve.start()
        log.info("TLS listener serving", extra={"port": self.port})

"""Signing keys and DSSE envelopes of in-toto statements: make a key pair, sign, read and check envelopes.

The envelope format, its pre-authentication encoding and the signatures are securesystemslib's
(`dsse.Envelope`, `CryptoSigner`, `SSlibKey`); the statements are in-toto-attestation's Statement v1.
A key id is securesystemslib's default: the sha256 of the public key's canonical description, so the
same PEM file always names the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from google.protobuf import json_format
from google.protobuf.message import Error as ProtobufError
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from harness.errors import HarnessError, UsageError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
PRIVATE_KEY_NAME = "certify-signing.key"
PUBLIC_KEY_NAME = "certify-signing.pub.pem"


class AttestationError(HarnessError):
    """An attestation file or envelope is unreadable, malformed or not signed by a trusted key (exit 1)."""

    exit_code = 1


class KeyFileError(UsageError):
    """A key file cannot be read or is not an ed25519 key in PEM form (exit 2)."""


@dataclass(frozen=True)
class SignedStatement:
    """One envelope of an attestation file whose signature checked out, with its statement as a dict."""

    line: int
    statement: dict[str, Any]
    payload_sha256: str
    keyids: tuple[str, ...]

    @property
    def predicate_type(self) -> str:
        """The statement's predicateType."""
        return str(self.statement.get("predicateType", ""))

    @property
    def predicate(self) -> dict[str, Any]:
        """The statement's predicate."""
        value = self.statement.get("predicate")
        return value if isinstance(value, dict) else {}


def generate_keypair(out_dir: Path) -> tuple[Path, Path, str]:
    """Write a new ed25519 key pair into out_dir (private key 0600); refuse to overwrite either file."""
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            msg = f"{path}: already exists; keygen never overwrites a key"
            raise UsageError(msg, hint="choose another --out directory or remove the old pair yourself")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"{out_dir}: cannot create the key directory: {exc.strerror}"
        raise UsageError(msg) from None
    private_key = Ed25519PrivateKey.generate()
    signer = CryptoSigner(private_key)
    public_pem = private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    try:
        _write_new(private_path, signer.private_bytes, 0o600)
        try:
            _write_new(public_path, public_pem, 0o644)
        except BaseException:
            private_path.unlink(missing_ok=True)
            raise
    except OSError as exc:
        msg = f"{exc.filename or out_dir}: cannot write the key: {exc.strerror}"
        raise UsageError(msg) from None
    return private_path, public_path, signer.public_key.keyid


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create a file that must not exist yet, with its permissions set before any byte is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _read_key_file(path: Path, what: str) -> bytes:
    """The bytes of a key file, or a KeyFileError naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        msg = f"{path}: {what} not found"
        raise KeyFileError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot read the {what}: {exc.strerror}"
        raise KeyFileError(msg) from None


def load_signer(path: Path) -> CryptoSigner:
    """A signer for the ed25519 private key in a PEM (PKCS#8) file; the key stays in this process only."""
    return signer_from_pem(_read_key_file(path, "signing key"), str(path))


def signer_from_pem(data: bytes, where: str) -> CryptoSigner:
    """A signer for an ed25519 private key given as PEM bytes (a file's or an environment variable's)."""
    try:
        private_key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if isinstance(exc, TypeError) else "not a PEM private key"
        msg = f"{where}: cannot use as a signing key: {reason}"
        raise KeyFileError(msg, hint="make one with `certify keygen --out DIR`") from None
    if not isinstance(private_key, Ed25519PrivateKey):
        msg = f"{where}: not an ed25519 private key ({type(private_key).__name__})"
        raise KeyFileError(msg, hint="make one with `certify keygen --out DIR`")
    return CryptoSigner(private_key)


def load_public_key(path: Path) -> SSlibKey:
    """The ed25519 public key in a PEM (SubjectPublicKeyInfo) file."""
    data = _read_key_file(path, "public key")
    try:
        public_key = load_pem_public_key(data)
    except ValueError:
        msg = f"{path}: not a PEM public key"
        raise KeyFileError(msg, hint="pass the .pub.pem file `certify keygen` wrote, never the private key") from None
    if not isinstance(public_key, Ed25519PublicKey):
        msg = f"{path}: not an ed25519 public key ({type(public_key).__name__})"
        raise KeyFileError(msg)
    return SSlibKey.from_crypto(public_key)


def trusted_keys(key_files: list[Path], key_dir: Path | None) -> list[Key]:
    """Every public key named on the command line plus every *.pem of a trusted-keys directory."""
    paths = list(key_files)
    if key_dir is not None:
        if not key_dir.is_dir():
            msg = f"--trusted-keys {key_dir}: not a directory"
            raise KeyFileError(msg)
        found = sorted(key_dir.glob("*.pem"))
        if not found:
            msg = f"--trusted-keys {key_dir}: no *.pem public key in it"
            raise KeyFileError(msg)
        paths += found
    return [load_public_key(path) for path in paths]


def sign_statement(statement: Statement, signer: CryptoSigner) -> str:
    """One line of an attestation file: the statement validated, serialised and signed in a DSSE envelope."""
    statement.validate()
    payload = json.dumps(json_format.MessageToDict(statement.pb), sort_keys=True, separators=(",", ":"))
    envelope = Envelope(payload.encode("utf-8"), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return json.dumps(envelope.to_dict(), sort_keys=True, separators=(",", ":"))


def read_envelopes(path: Path, keys: list[Key] | None) -> list[SignedStatement]:
    """Every envelope of an attestation file, signatures checked against keys (None: not checked)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        msg = f"{path}: missing"
        raise AttestationError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: unreadable: {exc}"
        raise AttestationError(msg) from None
    if not any(line.strip() for line in lines):
        msg = f"{path}: holds no envelope"
        raise AttestationError(msg)
    return [_read_line(path, number, line, keys) for number, line in enumerate(lines, 1) if line.strip()]


def _read_line(path: Path, number: int, line: str, keys: list[Key] | None) -> SignedStatement:
    """One envelope line: parsed, its signature checked, its payload read as an in-toto Statement v1."""
    where = f"{path.name} line {number}"
    try:
        envelope = Envelope.from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError, AttributeError, FormatError) as exc:
        msg = f"{where}: not a DSSE envelope ({type(exc).__name__}: {str(exc)[:120]})"
        raise AttestationError(msg) from None
    if envelope.payload_type != PAYLOAD_TYPE:
        msg = f"{where}: payloadType is {envelope.payload_type!r}, not {PAYLOAD_TYPE}"
        raise AttestationError(msg)
    keyids: tuple[str, ...] = ()
    if keys is not None:
        try:
            keyids = tuple(sorted(envelope.verify(keys, 1)))
        except (VerificationError, ValueError):
            signed_by = ", ".join(sorted(envelope.signatures)) or "nobody"
            msg = f"{where}: no valid signature by a trusted key (signed by key id {signed_by})"
            raise AttestationError(msg) from None
    try:
        proto = json_format.Parse(envelope.payload.decode("utf-8"), statement_pb2.Statement())
        Statement.copy_from_pb(proto).validate()
    except (ProtobufError, UnicodeDecodeError, ValueError) as exc:
        msg = f"{where}: payload is not an in-toto Statement v1 ({str(exc)[:120]})"
        raise AttestationError(msg) from None
    return SignedStatement(number, json.loads(envelope.payload), hashlib.sha256(envelope.payload).hexdigest(), keyids)

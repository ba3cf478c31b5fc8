"""Task payloads sealed at rest: AES-256-GCM under a key file readable by its owner only (0600).

The key is ``<data-dir>/keys/payload.key`` (its directory 0700), made on first use, unless
``GUARDIAN_PAYLOAD_KEY_FILE`` names another file — in production keep it off the data volume, so a
copied database or backup alone reveals no payload. A sealed value is ``aesgcm1:`` + base64 of
nonce and ciphertext; a value without the prefix (a row written before sealing, or one a fault
injector plants directly) is read as it is.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from guardian.errors import StoreError

PREFIX = "aesgcm1:"
KEY_ENV = "GUARDIAN_PAYLOAD_KEY_FILE"
KEY_BYTES = 32
NONCE_BYTES = 12
_AAD = b"guardian task payload"
_LOCK = threading.Lock()
_SEALS: dict[Path, PayloadSeal] = {}


def key_path(db_path: Path) -> Path:
    """Where the payload key of the database at ``db_path`` lives."""
    named = os.environ.get(KEY_ENV)
    return Path(named) if named else db_path.parent / "keys" / "payload.key"


def _load_or_create(path: Path) -> bytes:
    """Read the key; when absent make it first (0600, published atomically: first one wins)."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, AESGCM.generate_key(bit_length=KEY_BYTES * 8))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            with contextlib.suppress(FileExistsError):  # another process published its key first
                os.link(tmp, path)
        finally:
            tmp.unlink()
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise StoreError(
            f"payload key {path} holds {len(key)} bytes, not a {KEY_BYTES}-byte AES key"
        )
    return key


class PayloadSeal:
    """Seals and opens the task payloads of one database."""

    def __init__(self, key: bytes) -> None:
        """Use a 32-byte AES-256 key."""
        self._aead = AESGCM(key)

    def seal(self, text: str) -> str:
        """Return the stored form of a payload's JSON text."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode(), _AAD)
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def unseal(self, stored: str) -> str:
        """Return a payload's JSON text from its stored form (unprefixed: a plaintext row)."""
        if not stored.startswith(PREFIX):
            return stored
        raw = base64.b64decode(stored[len(PREFIX) :])
        try:
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _AAD).decode()
        except InvalidTag as exc:
            raise StoreError("a task payload does not open with this payload key") from exc


def for_database(db_path: Path) -> PayloadSeal:
    """Return the (cached) seal of the database at ``db_path``."""
    path = key_path(db_path).absolute()
    with _LOCK:
        if path not in _SEALS:
            _SEALS[path] = PayloadSeal(_load_or_create(path))
        return _SEALS[path]

"""Task payloads are sealed at rest (guardian/sealing.py): AES-GCM under a 0600 key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from guardian import sealing
from guardian.errors import StoreError
from guardian.store import NewTask, Store


def test_payload_is_not_in_the_database_files_but_reads_back(tmp_path: Path) -> None:
    """A submitted payload is absent from every file on disk, yet get() returns it unchanged."""
    store = Store(tmp_path / "guardian.db")
    (task,) = store.submit_many([NewTask("orchestrate", {"note": "plain-canary-7f3"})])
    task_id = task.id
    assert store.get(task_id).payload == {"note": "plain-canary-7f3"}
    assert not [
        p for p in tmp_path.rglob("*") if p.is_file() and b"plain-canary-7f3" in p.read_bytes()
    ]
    (stored,) = store.conn.execute("SELECT payload FROM tasks").fetchone()
    assert stored.startswith(sealing.PREFIX)


def test_key_file_is_owner_only_and_shared_by_every_store(tmp_path: Path) -> None:
    """The key is made once, 0600 in a 0700 dir; a second connection opens the payloads."""
    first = Store(tmp_path / "guardian.db")
    (task,) = first.submit_many([NewTask("compute", {"n": 1})])
    task_id = task.id
    key = tmp_path / "keys" / "payload.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert (
        sealing.PayloadSeal(key.read_bytes()).unseal(
            first.conn.execute("SELECT payload FROM tasks").fetchone()[0]
        )
        == '{"n": 1}'
    )
    assert Store(tmp_path / "guardian.db").get(task_id).payload == {"n": 1}


def test_plaintext_rows_read_as_they_are_and_a_wrong_key_is_a_store_error(tmp_path: Path) -> None:
    """An unprefixed row reads as is; a payload sealed under another key is refused."""
    seal = sealing.PayloadSeal(bytes(32))
    assert seal.unseal('{"a": 1}') == '{"a": 1}'
    other = sealing.PayloadSeal(bytes(range(32))).seal('{"a": 1}')
    with pytest.raises(StoreError, match="does not open"):
        seal.unseal(other)


def test_key_file_of_the_wrong_size_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key file that is not a 32-byte key is a StoreError naming it."""
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"short")
    monkeypatch.setenv(sealing.KEY_ENV, str(bad))
    with pytest.raises(StoreError, match=r"bad\.key holds 5 bytes"):
        sealing.for_database(tmp_path / "other.db")

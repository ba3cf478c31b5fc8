"""S7 in gate PB (gates/playbooks/at_rest.py): a canary written through the API, searched for on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gates.playbooks.at_rest import check_name, judge_at_rest, search
from gates.playbooks.config import AtRestCheck, AtRestStore, Request

STORE = AtRestStore(
    name="notes",
    paths=("state.db",),
    write=Request(method="POST", path="/api/notes", body={"text": "{canary}"}),
    read=Request(path="/api/notes/{id}"),
)
NAME = check_name("notes")


def _record(**overrides: Any) -> dict[str, Any]:
    """A stored, read-back and searched canary record with no hit, fields replaced."""
    record: dict[str, Any] = {
        "store": "notes",
        "canary": "certify-canary-x",
        "write": {"status": 201, "body": {"id": "1"}, "error": None},
        "read": {"status": 200, "body": {"text": "certify-canary-x"}},
        "read_back": True,
        "paths": {"state.db": ["state.db"]},
        "search": {"files": 3, "bytes": 900, "hits": [], "skipped": []},
    }
    return {**record, **overrides}


def _judged(record: dict[str, Any] | None, store: AtRestStore = STORE) -> tuple[str, list[str]]:
    """The S7 sub-check of one store and the reasons."""
    checks: dict[str, str] = {}
    reasons: list[str] = []
    judge_at_rest(AtRestCheck(stores=(store,)), {"at_rest": [record] if record else []}, checks, reasons)
    return checks[NAME], reasons


def test_search_finds_plain_and_utf16_and_skips_large_files(tmp_path: Path) -> None:
    """search() reports each file holding the canary in UTF-8 or UTF-16, and files too large to read."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "plain.db").write_bytes(b"\x00head certify-canary-q tail")
    (tmp_path / "sub" / "wide.log").write_bytes("x certify-canary-q".encode("utf-16-le"))
    (tmp_path / "clean.bin").write_bytes(b"nothing here")
    (tmp_path / "big.bin").write_bytes(b"0" * 2048)
    found = search(tmp_path, "certify-canary-q", max_file_bytes=1024)
    assert sorted(map(tuple, found["hits"])) == [("plain.db", "utf-8"), ("sub/wide.log", "utf-16-le")]
    assert found["skipped"] == ["big.bin"]
    assert found["files"] == 3


def test_canary_absent_from_every_searched_file_passes() -> None:
    """Stored (read back), store path present, every file searched, no hit: PASS."""
    assert _judged(_record())[0] == "PASS"


def test_plaintext_canary_fails_naming_the_file() -> None:
    """A hit in a sensitive store FAILs with the file and the encoding."""
    status, reasons = _judged(_record(search={"files": 3, "bytes": 9, "hits": [["db-wal", "utf-8"]], "skipped": []}))
    assert status == "FAIL"
    assert "db-wal (utf-8)" in reasons[0]


def test_store_declared_not_sensitive_passes_but_says_where() -> None:
    """A store declared not sensitive passes with the hit and the declared reason in the reasons."""
    store = STORE.model_copy(update={"sensitive": False, "reason": "public notes"})
    status, reasons = _judged(_record(search={"files": 1, "bytes": 9, "hits": [["db", "utf-8"]], "skipped": []}), store)
    assert status == "PASS"
    assert "public notes" in reasons[0]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"write": {"status": 422, "body": {"detail": "no"}, "error": None}, "read": None}, "did not take the canary"),
        ({"read_back": False}, "not read back"),
        ({"paths": {"state.db": []}}, "match no file"),
        ({"search": {"files": 0, "bytes": 0, "hits": [], "skipped": []}}, "no file"),
        ({"search": {"files": 2, "bytes": 9, "hits": [], "skipped": ["huge.db"]}}, "huge.db"),
    ],
)
def test_unproven_canary_is_inconclusive_never_pass(overrides: dict[str, Any], needle: str) -> None:
    """A refused write, no read-back, a missing store path or an unsearched file is INCONCLUSIVE with the reason."""
    record = _record(**overrides)
    if record.get("read") is None:
        del record["read"]
    status, reasons = _judged(record)
    assert status == "INCONCLUSIVE"
    assert needle in reasons[0]


def test_store_with_no_record_is_inconclusive() -> None:
    """A declared store the governance instance never wrote to is INCONCLUSIVE."""
    assert _judged(None)[0] == "INCONCLUSIVE"

"""S6 in gate PB (gates/playbooks/audit_chain.py): the harness recomputes the target's audit chain itself."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gates.playbooks.audit_chain import CHECK, judge_chain, verify_chain
from gates.playbooks.config import AuditChain

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "audit" / "guardian-chain.json"
CHAIN = AuditChain(database="guardian.db", query="SELECT ...", material=("text", "repr", "text", "text", "text"))


def rows() -> list[list[Any]]:
    """Three entries written by guardian's own AuditLog, as the declared query reads them."""
    return copy.deepcopy(json.loads(FIXTURE.read_text(encoding="utf-8"))["rows"])


def test_an_untouched_chain_written_by_the_target_verifies() -> None:
    """The harness's own recomputation of guardian's entry hashes matches every stored hash."""
    assert verify_chain(CHAIN, rows()) == (True, "3 audit entries recomputed, chain intact")


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (7, '{"outcome": "healed", "playbook": "other"}', "seq 2: stored hash"),
        (5, "someone-else", "seq 2: stored hash"),
        (4, 1.5, "seq 2: stored hash"),
    ],
)
def test_one_edited_record_breaks_the_chain_at_its_seq(column: int, value: Any, expected: str) -> None:
    """Editing the detail, actor or timestamp of one record FAILs, naming that record's seq."""
    edited = rows()
    edited[1][column] = value
    intact, why = verify_chain(CHAIN, edited)
    assert intact is False
    assert why.startswith(expected)


def test_a_deleted_middle_record_breaks_the_link() -> None:
    """Deleting an entry between two others breaks the next entry's prev_hash link."""
    edited = rows()
    del edited[1]
    intact, why = verify_chain(CHAIN, edited)
    assert intact is False
    assert why.startswith("seq 3: prev_hash")


def test_a_rehashed_edit_still_breaks_the_next_link() -> None:
    """An edited record whose own hash is recomputed leaves the next entry's prev_hash pointing at the old hash."""
    edited = rows()
    edited[1][2] = "f" * 64
    assert verify_chain(CHAIN, edited)[0] is False


def test_the_governance_check_records_pass_fail_or_inconclusive() -> None:
    """judge_chain adds PASS for an intact chain, FAIL with the reason for an edit, INCONCLUSIVE for no rows."""
    for record, status in (
        ({"audit_chain": {"rows": rows()}}, "PASS"),
        ({"audit_chain": {"rows": [*rows()[:1], [2, "x", "y", "x", 1.0, "a", "b", "{}"]]}}, "FAIL"),
        ({"audit_chain": {"error": "no database matches guardian.db"}}, "INCONCLUSIVE"),
    ):
        checks: dict[str, str] = {}
        reasons: list[str] = []
        judge_chain(CHAIN, record, checks, reasons)
        assert checks[CHECK] == status
        assert (status == "PASS") == (not reasons)
    checks = {}
    judge_chain(None, {}, checks, [])
    assert checks == {}

"""The envelopes are standard DSSE over in-toto Statement v1: checked here without securesystemslib or the harness."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.harness.attest_packs import ATTESTATIONS, keygen, signed_pack, tiny_target


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding, written from the spec (github.com/secure-systems-lab/dsse, protocol.md)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 " + str(len(kind)).encode() + b" " + kind + b" " + str(len(payload)).encode() + b" " + payload


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ed25519PublicKey]:
    """A signed release pack of the tiny target and the public key, loaded by cryptography alone."""
    base = tmp_path_factory.mktemp("interop")
    keys = keygen(base / "keys")
    pack = signed_pack(tiny_target(base), base / "pack", keys)
    public = load_pem_public_key(keys.public.read_bytes())
    assert isinstance(public, Ed25519PublicKey)
    return pack, public


def _envelopes(pack: Path) -> list[dict]:
    """Every envelope of the pack's attestation file, as plain JSON."""
    return [json.loads(line) for line in (pack / ATTESTATIONS).read_text().splitlines()]


def test_every_signature_verifies_with_cryptography_over_an_independent_pae(signed: tuple) -> None:
    """Each envelope's ed25519 signature checks out with cryptography over a PAE computed in this test."""
    pack, public = signed
    envelopes = _envelopes(pack)
    assert len(envelopes) == 2
    for envelope in envelopes:
        assert envelope["payloadType"] == "application/vnd.in-toto+json"
        assert len(envelope["signatures"]) == 1
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
        public.verify(signature, _pae(envelope["payloadType"], payload))


def test_a_changed_payload_byte_fails_the_independent_check(signed: tuple) -> None:
    """The independent check is not vacuous: one changed payload byte makes cryptography reject the signature."""
    pack, public = signed
    envelope = _envelopes(pack)[0]
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[10] ^= 1
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(envelope["signatures"][0]["sig"]), _pae(envelope["payloadType"], bytes(payload)))


def test_payloads_are_statement_v1_with_the_named_predicates_and_digests(signed: tuple) -> None:
    """Payloads are in-toto Statement v1; the summary's inputAttestations are the sha256 of the gate payloads."""
    pack, _ = signed
    payloads = [base64.b64decode(envelope["payload"]) for envelope in _envelopes(pack)]
    statements = [json.loads(payload) for payload in payloads]
    assert {s["_type"] for s in statements} == {"https://in-toto.io/Statement/v1"}
    gate, summary = statements
    assert gate["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    assert gate["predicate"]["result"] == "PASSED"
    assert summary["predicateType"] == "https://slsa.dev/verification_summary/v1"
    assert summary["predicate"]["inputAttestations"][0]["digest"]["sha256"] == hashlib.sha256(payloads[0]).hexdigest()
    subjects = {s["name"]: s["digest"] for s in summary["subject"]}
    assert subjects["manifest.json"]["sha256"] == hashlib.sha256((pack / "manifest.json").read_bytes()).hexdigest()
    run = json.loads((pack / "run.json").read_text())
    assert summary["predicate"]["policy"]["digest"]["sha256"] == run["policy"]["sha256"]
    assert subjects[run["target"]["name"]] == {"gitCommit": run["target"]["commit"]}

"""Signed packs: forgeries that `certify verify` alone accepts are caught by `certify verify --key`, file named."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.attestation import load_signer
from tests.harness.attest_packs import ATTESTATIONS, Keys, certify, keygen, signed_pack, tiny_target
from tests.harness.packs import certify_env


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | Keys]:
    """Two key pairs and, for the tiny target, two signed release packs and a signed ci pack."""
    base = tmp_path_factory.mktemp("attest")
    target = tiny_target(base)
    keys, other = keygen(base / "keys"), keygen(base / "other-keys")
    return {
        "keys": keys,
        "other": other,
        "release": signed_pack(target, base / "release", keys),
        "release2": signed_pack(target, base / "release2", keys),
        "ci": signed_pack(target, base / "ci", keys, mode="ci"),
    }


def _copy(pack: Path, dest: Path) -> Path:
    """A copy of a pack to tamper with."""
    return Path(shutil.copytree(pack, dest))


def _verify_with(pack: Path, keys: Keys) -> tuple[int, str]:
    """certify verify PACK --key PUB: exit code and everything printed."""
    done = certify("verify", str(pack), "--key", str(keys.public))
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout + done.stderr


def test_signed_pack_verifies_and_names_key_policy_and_verdict(world: dict) -> None:
    """A signed pack verifies with its key and the output names the key id, the policy digest and the verdict."""
    code, out = _verify_with(world["release"], world["keys"])
    assert code == 0, out
    policy_sha = json.loads((world["release"] / "run.json").read_text())["policy"]["sha256"]
    keyid = load_signer(world["keys"].private).public_key.keyid
    assert keyid in out
    assert f"policy sha256 {policy_sha}" in out
    assert "verification summary PASSED (mode release)" in out


def _forge(pack: Path, *extra: str) -> None:
    """Run the forger (tests/harness/attest_forge.py) on a pack, with the test plugins loaded."""
    forger = [sys.executable, "-m", "tests.harness.attest_forge", str(pack), *extra]
    subprocess.run(forger, env=certify_env(), check=True, capture_output=True, timeout=120)


def test_consistently_rerendered_verdict_is_caught_only_by_the_signature(world: dict, tmp_path: Path) -> None:
    """A verdict edited with results, manifest and certificate re-rendered passes a hash check but not --key."""
    pack = _copy(world["release"], tmp_path / "forged")
    _forge(pack)
    stripped = _copy(pack, tmp_path / "forged-unsigned")
    (stripped / ATTESTATIONS).unlink()
    plain = certify("verify", str(stripped))
    assert plain.returncode == 0, plain.stdout + plain.stderr  # the hashes alone cannot tell
    assert "unsigned: no attestations.intoto.jsonl" in plain.stdout
    assert "verified" not in plain.stdout + plain.stderr
    code, out = _verify_with(stripped, world["keys"])
    assert code == 1
    assert f"{ATTESTATIONS}: missing: the pack is unsigned" in out
    code, out = _verify_with(pack, world["keys"])
    assert code == 1
    assert f"{ATTESTATIONS} line 2 (verification summary): signs manifest.json with digest" in out
    assert f"{ATTESTATIONS} line 1 (gate ID): signs gates/ID/identity.json" in out
    assert "predicate.result" in out


def test_forged_pack_resigned_by_the_forger_is_refused(world: dict, tmp_path: Path) -> None:
    """The forger re-signing the consistent forgery with their own key is refused by the auditor's key."""
    pack = _copy(world["release"], tmp_path / "forged-resigned")
    _forge(pack, str(world["other"].private))
    plain = certify("verify", str(pack))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "signatures were NOT checked" in plain.stdout
    assert "verified" not in plain.stdout + plain.stderr
    code, out = _verify_with(pack, world["keys"])
    assert code == 1
    assert f"{ATTESTATIONS} line 1: no valid signature by a trusted key" in out


def test_attestations_of_another_run_are_caught(world: dict, tmp_path: Path) -> None:
    """Another run's attestation file, signed by the same trusted key, does not match this pack."""
    pack = _copy(world["release"], tmp_path / "swapped")
    shutil.copy(world["release2"] / ATTESTATIONS, pack / ATTESTATIONS)
    code, out = _verify_with(pack, world["keys"])
    assert code == 1
    assert "(verification summary): signs manifest.json with digest" in out


def test_statement_signed_by_an_untrusted_key_is_refused(world: dict) -> None:
    """A pack verified against a key that did not sign it fails and names the attestation line."""
    code, out = _verify_with(world["release"], world["other"])
    assert code == 1
    assert f"{ATTESTATIONS} line 1: no valid signature by a trusted key" in out


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("truncated", lambda data: data[: len(data) // 2]),
        ("garbage", lambda data: b"this is not json\n"),
        ("empty", lambda data: b""),
        ("bad-base64", lambda data: data.replace(b'"payload":"', b'"payload":"!!', 1)),
    ],
)
def test_truncated_or_garbage_envelopes_are_named(world: dict, tmp_path: Path, name: str, damage: object) -> None:
    """A truncated, garbage, empty or undecodable attestation file fails verify with the file named."""
    pack = _copy(world["release"], tmp_path / name)
    path = pack / ATTESTATIONS
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    code, out = _verify_with(pack, world["keys"])
    assert code == 1
    assert ATTESTATIONS in out


def _summary_claiming_release(pack: Path) -> tuple[list[str], dict]:
    """The attestation lines of a ci pack and its summary envelope with a payload edited to claim release mode."""
    lines = (pack / ATTESTATIONS).read_text().splitlines()
    envelope = json.loads(lines[-1])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicate"]["mode"] == "ci"
    assert statement["predicate"]["verificationResult"] == "FAILED"
    statement["predicate"].update(mode="release", verificationResult="PASSED")
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return lines, envelope


def test_ci_summary_edited_to_claim_release_is_caught(world: dict, tmp_path: Path) -> None:
    """A ci pack's summary edited to say release/PASSED no longer matches its signature."""
    pack = _copy(world["ci"], tmp_path / "ci-edited")
    lines, envelope = _summary_claiming_release(pack)
    (pack / ATTESTATIONS).write_text("\n".join([*lines[:-1], json.dumps(envelope)]) + "\n")
    code, out = _verify_with(pack, world["keys"])
    assert code == 1
    assert f"{ATTESTATIONS} line {len(lines)}: no valid signature by a trusted key" in out


def test_ci_summary_resigned_with_another_key_is_refused(world: dict, tmp_path: Path) -> None:
    """Re-signing the edited ci summary with a key the auditor does not trust is refused."""
    from securesystemslib.dsse import Envelope  # noqa: PLC0415

    pack = _copy(world["ci"], tmp_path / "ci-resigned")
    lines, edited = _summary_claiming_release(pack)
    envelope = Envelope(base64.b64decode(edited["payload"]), edited["payloadType"], {})
    envelope.sign(load_signer(world["other"].private))
    (pack / ATTESTATIONS).write_text("\n".join([*lines[:-1], json.dumps(envelope.to_dict())]) + "\n")
    code, out = _verify_with(pack, world["keys"])
    assert code == 1
    assert f"{ATTESTATIONS} line {len(lines)}: no valid signature by a trusted key" in out
    # Trusting both keys, the signature passes but the claim still disagrees with the pack.
    both = certify("verify", str(pack), "--key", str(world["keys"].public), "--key", str(world["other"].public))
    assert both.returncode == 1
    assert "predicate.mode" in both.stdout
    assert "predicate.verificationResult" in both.stdout


def test_ci_summary_never_passes(world: dict) -> None:
    """A ci run's verification summary says FAILED and names the ci mode."""
    statement = json.loads(
        base64.b64decode(json.loads((world["ci"] / ATTESTATIONS).read_text().splitlines()[-1])["payload"])
    )
    assert statement["predicate"]["verificationResult"] == "FAILED"
    assert statement["predicate"]["mode"] == "ci"
    assert statement["predicate"]["verifiedLevels"] == ["RELEASE_HARNESS_CI_MODE"]

"""certify keygen, --sign-key / $CERTIFY_SIGN_KEY and verify-attestation: one-line errors, exit codes, no key leaks."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from tests.harness.attest_packs import ATTESTATIONS, Keys, certify, keygen, signed_pack, tiny_target


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny target, two key pairs and an unsigned pack."""
    base = tmp_path_factory.mktemp("attest-cli")
    target = tiny_target(base)
    return {
        "base": base,
        "target": target,
        "keys": keygen(base / "keys"),
        "other": keygen(base / "other"),
        "unsigned": signed_pack(target, base / "unsigned", None),
    }


def _one_error_line(done: object, code: int, *names: str) -> None:
    """The process exited with code, printed one error line naming each of names, and no traceback."""
    assert done.returncode == code, done.stdout + done.stderr  # type: ignore[attr-defined]
    errors = [line for line in done.stderr.splitlines() if line.startswith("certify: error:")]  # type: ignore[attr-defined]
    assert len(errors) == 1, done.stderr  # type: ignore[attr-defined]
    for name in names:
        assert name in errors[0]
    assert "Traceback" not in done.stderr  # type: ignore[attr-defined]


def test_keygen_writes_a_private_key_only_its_owner_reads(world: dict) -> None:
    """Keygen writes the private key 0600 and a PEM public key."""
    keys: Keys = world["keys"]
    assert stat.S_IMODE(keys.private.stat().st_mode) == 0o600
    assert keys.public.read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_keygen_refuses_to_overwrite(world: dict) -> None:
    """A second keygen into the same directory exits 2 naming the key and leaves both files unchanged."""
    keys: Keys = world["keys"]
    before = keys.private.read_bytes(), keys.public.read_bytes()
    done = certify("keygen", "--out", str(keys.private.parent))
    _one_error_line(done, 2, str(keys.private))
    assert (keys.private.read_bytes(), keys.public.read_bytes()) == before


@pytest.mark.parametrize("kind", ["missing", "public-key", "garbage"])
def test_bad_sign_key_is_one_line_exit_2_and_no_pack(world: dict, kind: str) -> None:
    """A missing, public or garbage --sign-key exits 2 naming the file, before any pack is written."""
    key = {
        "missing": world["base"] / "nope.key",
        "public-key": world["keys"].public,
        "garbage": world["base"] / "garbage.key",
    }[kind]
    if kind == "garbage":
        key.write_text("not a key\n")
    out = world["base"] / f"pack-{kind}"
    done = certify("run", "--target", str(world["target"]), "--out", str(out), "--sign-key", str(key))
    _one_error_line(done, 2, str(key))
    assert not out.exists()


def _private_key_body(keys: Keys) -> str:
    """The base64 body of the private key PEM (what a leak would contain)."""
    return "".join(line for line in keys.private.read_text().splitlines() if not line.startswith("-----"))


@pytest.mark.parametrize("form", ["path", "pem"])
def test_sign_key_from_the_environment_signs_and_never_leaks(world: dict, form: str) -> None:
    """$CERTIFY_SIGN_KEY (a path or the PEM itself) signs the run; the key is in no pack file and no output."""
    keys: Keys = world["keys"]
    value = str(keys.private) if form == "path" else keys.private.read_text()
    out = world["base"] / f"env-{form}"
    done = certify("run", "--target", str(world["target"]), "--out", str(out), CERTIFY_SIGN_KEY=value)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"signed: {out / ATTESTATIONS}" in done.stdout
    body = _private_key_body(keys)
    raw = base64.b64decode(body)[-32:]  # the ed25519 seed at the end of the PKCS#8 structure
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert body.encode() not in data, path
            assert raw not in data, path
            assert b"PRIVATE KEY" not in data, path
    assert body not in done.stdout + done.stderr
    verified = certify("verify", str(out), "--key", str(keys.public))
    assert verified.returncode == 0, verified.stdout


def test_unsigned_pack_says_unsigned_never_verified(world: dict) -> None:
    """An unsigned pack verifies its hashes and says 'unsigned'; with --key it fails, naming the missing file."""
    done = certify("verify", str(world["unsigned"]))
    assert done.returncode == 0
    assert "unsigned" in done.stdout
    assert "verified" not in done.stdout + done.stderr
    keyed = certify("verify", str(world["unsigned"]), "--key", str(world["keys"].public))
    assert keyed.returncode == 1
    assert f"{ATTESTATIONS}: missing: the pack is unsigned" in keyed.stdout


def test_verify_attestation_checks_the_file_alone(world: dict, tmp_path: Path) -> None:
    """verify-attestation: 0 with the right key and certificate, 1 with another key or an edited one, 2 no key."""
    pack = signed_pack(world["target"], tmp_path / "pack", world["keys"])
    emailed = tmp_path / "emailed.intoto.jsonl"
    emailed.write_bytes((pack / ATTESTATIONS).read_bytes())
    good = certify("verify-attestation", str(emailed), "--key", str(world["keys"].public))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "verification_summary/v1" in good.stdout
    assert "PASSED, mode release" in good.stdout
    wrong = certify("verify-attestation", str(emailed), "--key", str(world["other"].public))
    assert wrong.returncode == 1
    assert "emailed.intoto.jsonl line 1: no valid signature by a trusted key" in wrong.stdout
    certificate = tmp_path / "production_readiness_certificate.md"
    certificate.write_bytes((pack / certificate.name).read_bytes())
    with_key = ("verify-attestation", str(emailed), "--key", str(world["keys"].public))
    held = certify(*with_key, "--subject", str(certificate))
    assert held.returncode == 0, held.stdout + held.stderr
    assert "1 --subject file(s) match their signed sha256" in held.stdout
    certificate.write_text(certificate.read_text().replace("CERTIFIED", "CERTIFIED (edited)", 1))
    edited = certify(*with_key, "--subject", str(certificate))
    assert edited.returncode == 1
    assert f"FAILED: {certificate}: sha256" in edited.stdout
    _one_error_line(certify("verify-attestation", str(emailed)), 2, "--key")
    _one_error_line(certify("verify-attestation", str(emailed), "--key", str(world["keys"].private)), 2, "key")


def test_trusted_keys_directory(world: dict, tmp_path: Path) -> None:
    """--trusted-keys DIR trusts every *.pem in it; an empty directory is a one-line exit 2."""
    pack = signed_pack(world["target"], tmp_path / "pack", world["keys"])
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    _one_error_line(certify("verify", str(pack), "--trusted-keys", str(trusted)), 2, str(trusted))
    for name, keys in (("a.pem", world["other"]), ("b.pem", world["keys"])):
        (trusted / name).write_bytes(keys.public.read_bytes())
    done = certify("verify", str(pack), "--trusted-keys", str(trusted))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signatures good" in done.stdout

"""`certify keygen`, `certify verify-attestation`, and the signing/key options of `run` and `verify`."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.evidence import ATTESTATIONS

# securesystemslib and protobuf are imported by the commands that use them, not at `certify`
# start-up: every command pays only for what it needs, and start-up (where a SIGTERM must still end
# in "interrupted", exit 130) stays as short as before attestations.
if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner, Key

    from harness.attestation import SignedStatement
    from harness.verify import VerifyReport

#: The environment variable a run reads the signing key (a path, or the PEM itself) from without --sign-key.
SIGN_KEY_ENV = "CERTIFY_SIGN_KEY"

VERIFY_EXIT_CODES = """exit codes:
  0    every envelope is signed by a trusted key and is an in-toto Statement v1
  1    an envelope is missing, malformed, or not signed by a trusted key (the line printed names it)
  2    a key file cannot be read or is not an ed25519 public key
"""


def add_attest_parsers(sub: Any) -> None:
    """Register `certify keygen` and `certify verify-attestation` on the CLI's sub-parsers."""
    keygen = sub.add_parser(
        "keygen",
        help="write an ed25519 key pair for signing packs",
        description=f"Write {ATTESTATIONS} signing keys: certify-signing.key (private, 0600, PEM PKCS#8) and "
        "certify-signing.pub.pem (public, give it to auditors). Never overwrites a key.",
    )
    keygen.add_argument("--out", type=Path, required=True, help="directory for the key pair")
    check = sub.add_parser(
        "verify-attestation",
        help="check a signed attestation file alone (no pack needed)",
        epilog=VERIFY_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Check every DSSE envelope of an {ATTESTATIONS} file against trusted public keys and "
        "print what each statement says. It does not re-check the pack: use `certify verify PACK --key` for that.",
    )
    check.add_argument("file", type=Path, help=f"an {ATTESTATIONS} file")
    add_key_arguments(check)
    check.add_argument(
        "--subject",
        type=Path,
        action="append",
        default=[],
        help="a file you were given with it (the certificate, say): its name and sha256 must be a signed subject; "
        "repeatable",
    )


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """--key PUB.pem (repeatable) and --trusted-keys DIR."""
    parser.add_argument(
        "--key", type=Path, action="append", default=[], help="a trusted ed25519 public key (PEM); repeatable"
    )
    parser.add_argument("--trusted-keys", type=Path, default=None, help="a directory of trusted *.pem public keys")


def add_sign_key_argument(parser: argparse.ArgumentParser) -> None:
    """--sign-key FILE of `certify run`."""
    parser.add_argument(
        "--sign-key",
        type=Path,
        default=None,
        help=f"sign the pack with this ed25519 private key (PEM) into {ATTESTATIONS} "
        f"(default: ${SIGN_KEY_ENV}, a path or the PEM itself; unset: the pack is unsigned)",
    )


def run_signer(args: argparse.Namespace) -> CryptoSigner | None:
    """The signer a run asked for (--sign-key, else $CERTIFY_SIGN_KEY), loaded before any gate runs.

    The variable is removed from this process's environment once read, so no child ever sees it.
    """
    from_env = os.environ.pop(SIGN_KEY_ENV, "")
    if args.sign_key is None and not from_env:
        return None
    from harness.attestation import load_signer, signer_from_pem  # noqa: PLC0415 - see the imports above

    if args.sign_key is not None:
        return load_signer(args.sign_key)
    if from_env.lstrip().startswith("-----BEGIN"):
        return signer_from_pem(from_env.encode("utf-8"), f"${SIGN_KEY_ENV}")
    return load_signer(Path(from_env))


def _keys(args: argparse.Namespace) -> list[Key] | None:
    """The trusted keys named by --key / --trusted-keys, or None when neither was given."""
    from harness.attestation import trusted_keys  # noqa: PLC0415 - see the imports above

    if not args.key and args.trusted_keys is None:
        return None
    return trusted_keys(list(args.key), args.trusted_keys)


def keygen_command(args: argparse.Namespace) -> int:
    """Certify keygen --out DIR."""
    from harness.attestation import generate_keypair  # noqa: PLC0415 - see the imports above

    private_path, public_path, keyid = generate_keypair(args.out)
    print(f"private key: {private_path} (0600; keep it secret: a CI secret, never the repository)")
    print(f"public key:  {public_path} (give it to auditors: certify verify PACK --key {public_path})")
    print(f"key id:      {keyid}")
    return 0


def verify_attestation_command(args: argparse.Namespace) -> int:
    """Certify verify-attestation FILE --key PUB.pem: the envelopes alone."""
    from harness.attestation import PAYLOAD_TYPE, AttestationError, read_envelopes  # noqa: PLC0415

    keys = _keys(args)
    if keys is None:
        msg = "verify-attestation: give at least one --key PUB.pem or --trusted-keys DIR"
        raise UsageError(msg)
    try:
        signed = read_envelopes(args.file, keys)
    except AttestationError as exc:
        print(f"FAILED: {exc.message}")
        return 1
    for statement in signed:
        predicate = statement.predicate
        what = predicate.get("gate") or predicate.get("resourceUri", "")
        result = predicate.get("verificationResult") or predicate.get("status")
        extra = ""
        if "policy" in predicate:
            digest = predicate["policy"].get("digest", {}).get("sha256", "")
            extra = f", mode {predicate.get('mode')}, policy sha256 {digest}"
        print(f"line {statement.line}: {statement.predicate_type} {what}: {result}{extra}")
    problems = [problem for path in args.subject if (problem := _subject_problem(path, signed))]
    if problems:
        print(*(f"FAILED: {problem}" for problem in problems), sep="\n")
        return 1
    keyids = sorted({keyid for statement in signed for keyid in statement.keyids})
    subjects = f"; {len(args.subject)} --subject file(s) match their signed sha256" if args.subject else ""
    print(
        f"ok: {len(signed)} {PAYLOAD_TYPE} envelope(s) in {args.file}, signatures checked, signed by key id "
        f"{', '.join(keyids)}{subjects}; the pack itself was not re-checked (certify verify PACK --key)"
    )
    return 0


def _subject_problem(path: Path, signed: list[SignedStatement]) -> str | None:
    """Why a file is not a signed subject (by its name and sha256) of any statement; None when it is."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        msg = f"--subject {path}: cannot read it: {exc.strerror}"
        raise UsageError(msg) from None
    named = [
        subject.get("digest", {}).get("sha256")
        for statement in signed
        for subject in statement.statement.get("subject", [])
        if str(subject.get("name", "")).rsplit("/", 1)[-1] == path.name
    ]
    if digest in named:
        return None
    if not named:
        return f"{path}: no statement signs a file named {path.name}"
    return f"{path}: sha256 {digest} is not the signed one ({', '.join(sorted(map(str, named)))})"


def check_signatures(args: argparse.Namespace, report: VerifyReport) -> None:
    """Add to `certify verify`'s report what the pack's attestations say, or that the pack is unsigned."""
    keys = _keys(args)
    if not (args.pack / ATTESTATIONS).is_file():
        if keys is not None:
            report.problems.append(f"{ATTESTATIONS}: missing: the pack is unsigned, and a trusted key was given")
        else:
            report.notes.append(f"unsigned: no {ATTESTATIONS}, no signature checked (hashes and verdicts only)")
        return
    from harness.attest_pack import check_pack  # noqa: PLC0415 - protobuf and friends load only for signed packs

    try:
        found = check_pack(args.pack, keys)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        report.problems.append(f"{ATTESTATIONS}: cannot be checked against the pack: {type(exc).__name__}: {exc}")
        return
    report.problems += found.problems
    if found.problems:
        return
    summary = (
        f"policy sha256 {found.policy_sha256}; verification summary {found.verification_result} (mode {found.mode})"
    )
    if keys is None:
        report.notes.append(
            f"signed, but the signatures were NOT checked (no --key / --trusted-keys); "
            f"{found.statements} statements match the pack; {summary}"
        )
    else:
        report.notes.append(
            f"signatures good: {found.statements} statements signed by trusted key id {', '.join(found.keyids)} "
            f"and matching the pack; {summary}"
        )

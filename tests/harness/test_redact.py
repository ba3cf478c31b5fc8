"""Tests for harness.redact: the environment allow-list and the scrubber every pack write goes through."""

from __future__ import annotations

import pytest

from harness.redact import REDACTED, Redactor, allowed_env, looks_secret

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDKEY"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
ENVIRON = {
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "DATABASE_PASSWORD": "correct-horse-battery",
    "HOME": "/home/builder",
    "TMPDIR": "/tmp",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "SHORT_TOKEN": "abc",
}
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "-----END RSA PRIVATE KEY-----\n"
)
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"


@pytest.fixture
def redactor() -> Redactor:
    """A redactor that has learnt the secrets of ENVIRON."""
    return Redactor(ENVIRON)


def test_allowed_env_keeps_only_allow_listed_names() -> None:
    """Allow-listed names (exact or CERTIFY_* glob) are kept; everything else is dropped."""
    environ = {
        "CI": "true", "GITHUB_SHA": "a3f" * 13 + "a", "CERTIFY_MODE": "fast", "LANG": "C.UTF-8",
        "HOME": "/home/builder", "PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "USER": "builder",
    }
    assert allowed_env(environ) == {
        "CERTIFY_MODE": "fast", "CI": "true", "GITHUB_SHA": "a3f" * 13 + "a", "LANG": "C.UTF-8",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CERTIFY_TOKEN", "short"),
        ("CERTIFY_DB_PASSWORD", "hunter2"),
        ("PIP_INDEX_URL", "https://deploy:s3cr3tvalue@pypi.example.com/simple"),
        ("CERTIFY_UPLOAD", AWS_KEY_ID),
        ("CERTIFY_BLOB", "Zx9Qw3Er7Ty1Ui5Op0As8Df2Gh6Jk4Lz"),
    ],
    ids=["secret-name", "password-name", "credentials-in-url", "aws-key-id", "high-entropy"],
)
def test_allowed_env_redacts_secret_looking_values(name: str, value: str) -> None:
    """An allow-listed variable whose name or value looks like a credential is recorded as [REDACTED]."""
    assert allowed_env({name: value}) == {name: REDACTED}


def test_allowed_env_keeps_ordinary_values() -> None:
    """Ordinary allow-listed values (paths, a commit sha, a number) are recorded verbatim."""
    environ = {
        "VIRTUAL_ENV": "/home/builder/.venvs/target-0123456789abcdef",
        "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        "SOURCE_DATE_EPOCH": "1700000000",
        "PIP_INDEX_URL": "https://pypi.org/simple",
    }
    assert allowed_env(environ) == environ


def test_looks_secret_by_name_and_by_value() -> None:
    """Names like *_TOKEN and values like AKIA… are secret; a plain path under an innocent name is not."""
    assert looks_secret("GITHUB_TOKEN", "x")
    assert looks_secret("ANYTHING", AWS_KEY_ID)
    assert not looks_secret("TMPDIR", "/tmp")
    assert not looks_secret("LANG", "C.UTF-8")


def test_redactor_scrubs_planted_environment_secret_from_text(redactor: Redactor) -> None:
    """A secret value from the environment disappears from text wherever it appears."""
    text = f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}\nconnecting with correct-horse-battery\n"
    scrubbed = redactor.text(text)
    assert AWS_SECRET not in scrubbed
    assert "correct-horse-battery" not in scrubbed
    assert scrubbed == f"export AWS_SECRET_ACCESS_KEY={REDACTED}\nconnecting with {REDACTED}\n"


def test_redactor_scrubs_planted_environment_secret_from_bytes(redactor: Redactor) -> None:
    """A secret value from the environment disappears from UTF-8 bytes."""
    data = f"token: {AWS_SECRET}\n".encode()
    assert redactor.data(data) == f"token: {REDACTED}\n".encode()


def test_redactor_scrubs_secret_shaped_tokens_not_in_the_environment(redactor: Redactor) -> None:
    """AKIA key ids, private-key headers, GitHub tokens and URL credentials are scrubbed by shape."""
    github = "ghp_" + "A1b2C3d4E5" * 4
    text = f"id={AWS_KEY_ID}\n{PEM}gh={github}\nurl=https://u:pw@host/simple\n"
    scrubbed = redactor.text(text)
    assert AWS_KEY_ID not in scrubbed
    assert "-----BEGIN RSA PRIVATE KEY-----" not in scrubbed
    assert github not in scrubbed
    assert "u:pw@" not in scrubbed
    assert redactor.data(text.encode()) == scrubbed.encode()


def test_redactor_scrubs_the_body_of_a_private_key(redactor: Redactor) -> None:
    """The base64 body of a PEM private key is scrubbed along with its header."""
    assert "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun" not in redactor.text(PEM)


def test_redactor_leaves_ordinary_text_untouched(redactor: Redactor) -> None:
    """Paths like /tmp, $HOME and PATH entries, and short non-secret values are not redacted."""
    text = "wrote /tmp/report.json from /home/builder/src using /usr/local/bin/python (LANG=C.UTF-8, abc)\n"
    assert redactor.text(text) == text
    assert redactor.data(text.encode()) == text.encode()


def test_short_values_are_not_learnt_even_under_secret_names() -> None:
    """Values shorter than 8 characters are not scrubbed everywhere (they would erase ordinary words)."""
    assert Redactor({"API_TOKEN": "abc"}).text("abc abcdef") == "abc abcdef"


def test_longer_secret_containing_a_shorter_one_is_replaced_whole() -> None:
    """When one secret contains another, the longer one is replaced as a whole."""
    redactor = Redactor({"A_TOKEN": "secretvalue", "B_TOKEN": "secretvalue-and-more"})
    assert redactor.text("x secretvalue-and-more y") == f"x {REDACTED} y"


def test_binary_is_unchanged_except_exact_secret_bytes(redactor: Redactor) -> None:
    """Binary data (NUL bytes) keeps every byte, secret-shaped or not, except exact known secrets."""
    binary = PNG_HEADER + AWS_KEY_ID.encode() + b"\x00/tmp\x00" + bytes(range(256))
    assert redactor.data(binary) == binary
    planted = PNG_HEADER + AWS_SECRET.encode() + b"\x00\xff"
    assert redactor.data(planted) == PNG_HEADER + REDACTED.encode() + b"\x00\xff"


def test_invalid_utf8_is_treated_as_binary(redactor: Redactor) -> None:
    """Bytes that are not UTF-8 are not decoded (no replacement characters appear), only exact secrets go."""
    data = b"\xff\xfe" + AWS_KEY_ID.encode() + b" " + AWS_SECRET.encode()
    assert redactor.data(data) == b"\xff\xfe" + AWS_KEY_ID.encode() + b" " + REDACTED.encode()

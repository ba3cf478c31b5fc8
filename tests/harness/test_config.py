"""Tests for harness.config: every bad certify.toml is one readable ConfigError, never a crash."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import CONFIG_NAME, json_schema, load_config, parse_config
from harness.errors import ConfigError
from tests.conftest import RunCertify

REPO = Path(__file__).resolve().parents[2]
STANDARD_POLICY_FILE = REPO / "harness" / "policies" / "standard.toml"

HYPOTHESIS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

VALID_TOML = """\
[target]
name = "svc"
packages = ["svc"]

[install]
command = []

[service]
command = ["{python}", "-m", "http.server", "{port}"]
startup_deadline_s = 5

[certificate]
required_gates = ["ID"]

[[waivers]]
gate = "ID"
finding = "dirty tree"
reason = "known"
owner = "me"
expires = 2030-01-01
"""
VALID: dict[str, Any] = tomllib.loads(VALID_TOML)

# (label, certify.toml text, key path the message must name, bad value the message must quote)
BAD_CONFIGS = [
    ("misspelt optional key", '[target]\nname = "svc"\npackags = ["svc"]\n', "target.packags", "['svc']"),
    (
        "wrong type",
        '[target]\nname = "svc"\n[service]\ncommand = ["x"]\nstartup_deadline_s = "soon"\n',
        "service.startup_deadline_s",
        "'soon'",
    ),
    ("missing required section", '[certificate]\nrequired_gates = ["ID"]\n', "target", "missing"),
    (
        "unknown required gate",
        '[target]\nname = "svc"\n[certificate]\nrequired_gates = ["ID", "G99"]\n',
        "certificate.required_gates",
        "G99",
    ),
    (
        "unknown placeholder",
        '[target]\nname = "svc"\n[service]\ncommand = ["{python}", "{prot}"]\n',
        "service",
        "{prot}",
    ),
    (
        "bad waiver date",
        '[target]\nname = "svc"\n[[waivers]]\ngate = "ID"\nfinding = "f"\nreason = "r"\nowner = "o"\n'
        'expires = "2024-13-45"\n',
        "waivers.0.expires",
        "'2024-13-45'",
    ),
    ("unknown gate table", '[target]\nname = "svc"\n[gates.ZZ]\n', "gates.ZZ", "{}"),
    ("unknown policy key", '[target]\nname = "svc"\n[gates.ID]\nallow_dirty = true\n', "gates.ID.allow_dirty", "True"),
    (
        "playbook api without inject",
        '[target]\nname = "svc"\n[gates.PB.api]\nlist_playbooks = { path = "/p" }\nincidents = { path = "/i" }\n',
        "gates.PB.api.inject",
        "missing required key",
    ),
]


def write_config(directory: Path, content: str | bytes) -> Path:
    """Write certify.toml into directory and return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    (directory / CONFIG_NAME).write_bytes(data)
    return directory


def config_error(directory: Path) -> ConfigError:
    """Load the config in directory and return the ConfigError it must raise."""
    with pytest.raises(ConfigError) as caught:
        load_config(directory)
    return caught.value


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    """A valid certify.toml loads, keeping its values and filling defaults for the rest."""
    config = load_config(write_config(tmp_path, VALID_TOML))
    assert config.target.name == "svc"
    assert config.install.command == ()
    assert config.service is not None
    assert config.service.startup_deadline_s == 5.0
    assert config.service.readiness == "/readyz"
    assert config.certificate.required_gates == ("ID",)
    assert config.waivers[0].expires.isoformat() == "2030-01-01"


@pytest.mark.parametrize(("label", "content", "key", "value"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_one_line_naming_file_key_and_value(
    tmp_path: Path, label: str, content: str, key: str, value: str
) -> None:
    """Each kind of schema mistake is a one-line ConfigError naming the file, the key path and the bad value."""
    del label
    directory = write_config(tmp_path, content)
    message = config_error(directory).message
    assert "\n" not in message
    assert message.startswith(f"{directory / CONFIG_NAME}: ")
    assert f": {key}: " in message
    assert value in message


def test_misspelt_required_key_names_the_misspelling(tmp_path: Path) -> None:
    """A misspelt required key is reported by its misspelt key path and value, not just as a missing key."""
    message = config_error(write_config(tmp_path, '[target]\nnmae = "x"\n')).message
    assert "target.nmae" in message
    assert "'x'" in message


def test_broken_toml_names_file_and_position(tmp_path: Path) -> None:
    """Text that is not TOML is a one-line ConfigError naming the file and where parsing stopped."""
    directory = write_config(tmp_path, '[target\nname = "svc"\n')
    message = config_error(directory).message
    assert message.startswith(f"{directory / CONFIG_NAME}: invalid TOML: ")
    assert "line 1" in message
    assert "\n" not in message


def test_non_utf8_bytes_name_file_and_offset(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a ConfigError naming the file and the byte offset."""
    directory = write_config(tmp_path, b'[target]\nname = "\xff"\n')
    message = config_error(directory).message
    assert message == f"{directory / CONFIG_NAME}: not UTF-8 text at byte 17"


def test_missing_file_has_a_hint(tmp_path: Path) -> None:
    """A directory without certify.toml is a ConfigError with a hint about --target."""
    error = config_error(tmp_path)
    assert error.message == f"{tmp_path / CONFIG_NAME}: not found"
    assert error.hint is not None
    assert "--target" in error.hint


def test_unreadable_config_path_is_a_config_error(tmp_path: Path) -> None:
    """A certify.toml that is a directory is a ConfigError, not an OSError."""
    (tmp_path / CONFIG_NAME).mkdir()
    assert "cannot read" in config_error(tmp_path).message


def test_several_errors_are_counted_on_the_same_line(tmp_path: Path) -> None:
    """When several keys are wrong the first is named and the rest are counted, still on one line."""
    content = '[target]\nname = "svc"\nnmae = 1\nsource = 2\nroot = 3\n'
    message = config_error(write_config(tmp_path, content)).message
    assert "(and 2 more errors)" in message
    assert "\n" not in message


def test_long_bad_value_is_shortened(tmp_path: Path) -> None:
    """A huge bad value is quoted shortened so the message stays one readable line."""
    content = f'[target]\nname = "svc"\nnote = "{"x" * 500}"\n'
    message = config_error(write_config(tmp_path, content)).message
    assert "..." in message
    assert len(message) < len(str(tmp_path)) + 200


def test_key_with_newline_still_gives_one_line(tmp_path: Path) -> None:
    """A quoted key containing a newline is still reported on a single line."""
    content = '[target]\nname = "svc"\n"na\\nme" = 1\n'
    assert "\n" not in config_error(write_config(tmp_path, content)).message


def test_deeply_nested_toml_is_a_config_error(tmp_path: Path) -> None:
    """A pathologically nested TOML array is reported as a ConfigError, not a RecursionError."""
    directory = write_config(tmp_path, "a = " + "[" * 3000 + "]" * 3000 + "\n")
    assert config_error(directory).message.startswith(str(directory / CONFIG_NAME))


def test_placeholder_inside_format_spec_is_checked() -> None:
    """An unknown placeholder hidden inside a format spec is rejected when the config is read."""
    data = copy.deepcopy(VALID)
    data["service"]["command"] = ["{python:{prot}}"]
    with pytest.raises(ConfigError, match="prot"):
        parse_config(data, "x.toml")


def test_bad_config_through_cli_is_exit_2_one_line_and_no_pack(tmp_path: Path, run_certify: RunCertify) -> None:
    """`certify run` on a bad certify.toml exits 2 with one error line, no traceback and no pack directory."""
    for label, content, key, _ in BAD_CONFIGS:
        target = write_config(tmp_path / label.replace(" ", "-"), content)
        out = tmp_path / f"{target.name}-pack"
        proc = run_certify("run", "--target", target, "--out", out)
        assert proc.returncode == 2, (label, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout
        lines = proc.stderr.splitlines()
        assert lines[0].startswith("certify: error: "), label
        assert key in lines[0], label
        assert all(line.startswith("hint: ") for line in lines[1:]), label
        assert len(lines) <= 2, label
        assert not out.exists(), label


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[target\n", "invalid TOML"),
        (b'[target]\nname = "\xff"\n', "not UTF-8"),
        (b'[target]\nname = "svc"\n[service]\ncommand = ["{prot}"]\n', "prot"),
    ],
    ids=["broken-toml", "non-utf8", "placeholder"],
)
def test_unparsable_config_through_cli(tmp_path: Path, run_certify: RunCertify, content: bytes, expected: str) -> None:
    """Unparsable or unfillable certify.toml exits 2 with one error line and creates no pack."""
    target = write_config(tmp_path / "target", content)
    out = tmp_path / "pack"
    proc = run_certify("run", "--target", target, "--out", out)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("certify: error: ") == 1
    assert expected in proc.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Property tests: whatever the input, the outcome is a config or a ConfigError.
# ---------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.dates(),
    st.datetimes(),
    st.times(),
)
toml_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
section_names = st.sampled_from(
    ["target", "install", "tests", "bootstrap", "service", "certificate", "waivers", "gates"]
)


def assert_parses_or_config_error(data: Any) -> None:
    """parse_config either returns a config or raises a ConfigError naming the source."""
    message = "x.toml: (parsed)"
    try:
        parse_config(data, "x.toml")
    except ConfigError as exc:
        message = exc.message
    assert message.startswith("x.toml: ")


@HYPOTHESIS
@given(data=st.dictionaries(st.one_of(section_names, st.text(max_size=12)), toml_like, max_size=6))
def test_arbitrary_data_is_config_or_config_error(data: dict[str, Any]) -> None:
    """Arbitrary nested dicts, lists and scalars never raise anything but ConfigError."""
    assert_parses_or_config_error(data)


@HYPOTHESIS
@given(data=toml_like)
def test_non_dict_top_level_is_config_error(data: Any) -> None:
    """Even a top level that is not a table gives a ConfigError, not a TypeError."""
    assert_parses_or_config_error(data)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path (dict keys and list indexes) inside a nested structure."""
    found: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with a few keys dropped, retyped or added."""
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["drop", "retype", "add"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "retype":
            parent[path[-1]] = draw(toml_like)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(toml_like)
        else:
            parent.append(draw(toml_like))
    return data


@HYPOTHESIS
@given(data=mutated_configs())
def test_mutated_valid_config_is_config_or_config_error(data: dict[str, Any]) -> None:
    """A valid config with keys dropped, retyped or added never raises anything but ConfigError."""
    assert_parses_or_config_error(data)


@pytest.fixture(scope="module")
def scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory whose certify.toml the property tests overwrite."""
    return tmp_path_factory.mktemp("config-fuzz")


def assert_loads_or_config_error(directory: Path) -> None:
    """load_config either returns a config or raises a ConfigError naming the file."""
    prefix = f"{directory / CONFIG_NAME}: "
    message = prefix + "(loaded)"
    try:
        load_config(directory)
    except ConfigError as exc:
        message = exc.message
    assert message.startswith(prefix)


@HYPOTHESIS
@given(content=st.text(max_size=300))
def test_arbitrary_text_is_config_or_config_error(scratch_dir: Path, content: str) -> None:
    """Any text as certify.toml loads or gives a ConfigError."""
    write_config(scratch_dir, content)
    assert_loads_or_config_error(scratch_dir)


@HYPOTHESIS
@given(content=st.binary(max_size=300))
def test_arbitrary_bytes_are_config_or_config_error(scratch_dir: Path, content: bytes) -> None:
    """Any bytes as certify.toml load or give a ConfigError."""
    write_config(scratch_dir, content)
    assert_loads_or_config_error(scratch_dir)


@HYPOTHESIS
@given(
    prefix=st.sampled_from(['[target]\nname = "svc"\n', VALID_TOML, ""]),
    body=st.text(alphabet='[]{}"=\n .,#abcnme0123-:', max_size=120),
)
def test_toml_shaped_text_is_config_or_config_error(scratch_dir: Path, prefix: str, body: str) -> None:
    """TOML-shaped noise after a valid start loads or gives a ConfigError."""
    write_config(scratch_dir, prefix + body)
    assert_loads_or_config_error(scratch_dir)


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


def test_json_schema_describes_the_tables() -> None:
    """The JSON Schema is an object schema with target, gates and certificate, and target required."""
    schema = json_schema()
    assert schema["title"] == "certify.toml"
    assert schema["type"] == "object"
    assert {"target", "gates", "certificate", "service", "waivers"} <= set(schema["properties"])
    assert "target" in schema["required"]
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_json_schema_is_a_valid_json_schema() -> None:
    """The schema passes the JSON Schema meta-schema and accepts the valid example config."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    example = json.loads(json.dumps(VALID, default=str))
    jsonschema.Draft202012Validator(schema).validate(example)


def test_schema_command_prints_parsable_json(run_certify: RunCertify) -> None:
    """`certify schema` exits 0 and prints the same JSON Schema json_schema() returns."""
    proc = run_certify("schema")
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout) == json.loads(json.dumps(json_schema()))


@pytest.mark.parametrize(
    ("of", "document"),
    [("config", REPO / "examples" / "guardian" / "certify.toml"), ("policy", STANDARD_POLICY_FILE)],
)
def test_written_schemas_accept_the_shipped_files(
    run_certify: RunCertify, tmp_path: Path, of: str, document: Path
) -> None:
    """`certify schema --out DIR` writes both schemas; guardian's certify.toml and the standard policy validate."""
    proc = run_certify("schema", "--json", "--out", tmp_path / "schemas")
    assert proc.returncode == 0, proc.stderr
    name = "certify.schema.json" if of == "config" else "policy.schema.json"
    schema = json.loads((tmp_path / "schemas" / name).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    # TOML dates (waivers' expires) reach an editor's validator as ISO date strings, as JSON has no date type.
    instance = json.loads(json.dumps(tomllib.loads(document.read_text("utf-8")), default=str))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    assert errors == []
    printed = run_certify("schema", "--of", of)
    assert json.loads(printed.stdout) == schema

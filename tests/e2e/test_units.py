"""Unit tests of the E2E gate's pure parts: pixel diff, browser candidates, CLI and visual judging."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

from e2e import browser
from e2e.pixeldiff import compare
from gates.e2e import CliJourney, E2EPolicy, Findings, judge_cli, judge_visuals, parse_junit
from harness.model import Status


def png(size: tuple[int, int], colour: tuple[int, int, int], box: tuple[int, int, int, int] | None = None) -> bytes:
    """A PNG of one colour, with an optional black box."""
    image = Image.new("RGB", size, colour)
    if box is not None:
        image.paste((0, 0, 0), box)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class FakeReader:
    """Evidence held in a dict, readable like `Evidence`."""

    def __init__(self, files: dict[str, Any]) -> None:
        """Keep the files (JSON values or text)."""
        self.files = files

    def exists(self, name: str) -> bool:
        """Whether the file is there."""
        return name in self.files

    def read_text(self, name: str) -> str:
        """Text of a file."""
        value = self.files[name]
        return value if isinstance(value, str) else json.dumps(value)

    def read_json(self, name: str) -> Any:
        """Parsed JSON of a file."""
        return json.loads(self.read_text(name))


def test_identical_images_do_not_differ() -> None:
    """The same screenshot twice: no differing pixel and no diff image."""
    same = png((40, 30), (200, 200, 200))
    result = compare(same, same, 24)
    assert (result.differing_pixels, result.ratio, result.diff_png) == (0, 0.0, None)


def test_changed_area_is_counted_and_drawn() -> None:
    """A 10x10 box that changed counts 100 pixels and yields a diff PNG; tolerance absorbs small shifts."""
    result = compare(png((40, 30), (200, 200, 200), (0, 0, 10, 10)), png((40, 30), (200, 200, 200)), 24)
    assert result.differing_pixels == 100
    assert result.ratio == 100 / 1200
    assert result.diff_png is not None
    assert result.diff_png.startswith(b"\x89PNG")
    assert compare(png((40, 30), (210, 200, 200)), png((40, 30), (200, 200, 200)), 24).differing_pixels == 0


def test_size_change_is_a_full_difference() -> None:
    """A screenshot of another size differs entirely (ratio 1)."""
    result = compare(png((40, 30), (1, 1, 1)), png((40, 31), (1, 1, 1)), 24)
    assert not result.same_size
    assert result.ratio == 1.0


def test_browser_setting_none_gives_no_candidate() -> None:
    """browser = "none" yields no candidate; a path is tried as given; auto tries Playwright's build first."""
    assert browser.candidates("none") == []
    assert browser.candidates("/opt/chrome") == ["/opt/chrome"]
    assert browser.candidates("auto")[0] == browser.BUNDLED


def test_cli_expectations_are_judged_from_stored_output() -> None:
    """A wrong exit code and a missing stdout pattern are FAIL reasons naming the journey."""
    policy = E2EPolicy(cli=(CliJourney(name="status", command=("x",), expect_exit=0, expect_stdout=("^ready",)),))
    reader = FakeReader(
        {
            "cli.json": [
                {"name": "status", "returncode": 4, "timed_out": False, "stdout": "runs/o", "stderr": "runs/e"}
            ],
            "runs/o": "not ready\n",
            "runs/e": "",
        }
    )
    found = Findings()
    judge_cli(reader, policy, found)
    assert found.statuses == [Status.FAIL]
    assert found.problems == [
        "CLI journey status exited 4, expected 0",
        "CLI journey status: stdout does not match /^ready/",
    ]


def test_missing_baseline_is_inconclusive_unless_allowed() -> None:
    """A visual checkpoint without a baseline blocks a PASS (INCONCLUSIVE) unless require_baselines is off."""
    visuals = [{"journey": "j", "name": "home", "compared": False, "why": "no baseline", "baseline_path": "b.png"}]
    strict, lenient = Findings(), Findings()
    judge_visuals(visuals, E2EPolicy(), strict)
    judge_visuals(visuals, E2EPolicy(require_baselines=False), lenient)
    assert strict.statuses == [Status.INCONCLUSIVE]
    assert lenient.statuses == []
    assert "no baseline" in lenient.notes[0]


def test_junit_outcomes() -> None:
    """Each test case's outcome and first message line are read from JUnit XML."""
    xml = (
        "<testsuites><testsuite><testcase classname='e2e.t' name='a'/>"
        "<testcase classname='e2e.t' name='b'><failure message='boom&#10;more'/></testcase>"
        "<testcase classname='e2e.t' name='c'><skipped message='n/a'/></testcase></testsuite></testsuites>"
    )
    assert parse_junit(xml) == [
        {"id": "e2e.t::a", "outcome": "passed", "message": ""},
        {"id": "e2e.t::b", "outcome": "failed", "message": "boom"},
        {"id": "e2e.t::c", "outcome": "skipped", "message": "n/a"},
    ]

"""The rendering environment beside visual baselines: recorded, read back, and named when a visual changes."""

from __future__ import annotations

from pathlib import Path

from e2e import rendering
from gates.e2e import E2EPolicy, Findings, judge_visuals
from harness.model import Status

THEN = {"browser": "Chromium 150.0.1", "fonts": {"Arial": "DejaVu Sans", "sans-serif": "DejaVu Sans"}}
NOW = {"browser": "Chromium 156.0.8078.114", "fonts": {"Arial": "Liberation Sans", "sans-serif": "DejaVu Sans"}}
CHANGED = [
    {
        "journey": "dashboard",
        "name": "dashboard",
        "compared": True,
        "same_size": True,
        "differing_pixels": 8531,
        "total_pixels": 1024000,
        "tolerance": 24,
        "diff": "e2e/dashboard/visual-dashboard.diff.png",
    }
]


def test_same_environment_says_nothing() -> None:
    """Baselines drawn by the same browser with the same fonts need no word on the environment."""
    assert rendering.difference(NOW, NOW) == ""


def test_other_browser_and_font_are_both_named() -> None:
    """Another Chromium and another font for a family are named, then and now, with what to do after review."""
    note = rendering.difference(THEN, NOW)
    assert "Chromium 150.0.1 then, Chromium 156.0.8078.114 now" in note
    assert "Arial -> DejaVu Sans then, Liberation Sans now" in note
    assert "sans-serif" not in note
    assert "python -m e2e.update_baselines" in note


def test_baselines_without_a_record_are_said_to_have_none() -> None:
    """Baselines with no rendering.json are reported as unrecorded, with how this run drew."""
    note = rendering.difference(None, NOW)
    assert note.startswith("the baselines record no rendering environment")
    assert "Chromium 156.0.8078.114 (Arial -> Liberation Sans, sans-serif -> DejaVu Sans)" in note


def test_a_run_without_a_record_says_nothing() -> None:
    """An older pack (or a run that drew nothing) has no environment of its own, so nothing is claimed."""
    assert rendering.difference(THEN, None) == ""


def test_visual_change_keeps_failing_and_names_the_environment() -> None:
    """A visual change beyond tolerance still FAILs; the environment note is one more reason beside it."""
    found = Findings()
    judge_visuals(CHANGED, E2EPolicy(), found, rendering.difference(THEN, NOW))
    assert found.statuses == [Status.FAIL]
    assert found.problems[0].startswith("visual change in dashboard/dashboard: 8531 of 1024000 pixels")
    assert found.problems[1].startswith("the baselines were drawn in another rendering environment")


def test_no_change_no_note() -> None:
    """Within tolerance, the environment is not mentioned even when it differs."""
    found = Findings()
    judge_visuals([{**CHANGED[0], "differing_pixels": 10}], E2EPolicy(), found, rendering.difference(THEN, NOW))
    assert found.statuses == [Status.PASS]
    assert found.problems == []


def test_record_round_trips_and_bad_records_are_none(tmp_path: Path) -> None:
    """A written record reads back equal; a missing, malformed or browserless one reads as None."""
    assert rendering.read_record(tmp_path) is None
    (tmp_path / rendering.RECORD).write_bytes(rendering.record_bytes(NOW))
    assert rendering.read_record(tmp_path) == NOW
    (tmp_path / rendering.RECORD).write_text("{not json", encoding="utf-8")
    assert rendering.read_record(tmp_path) is None
    (tmp_path / rendering.RECORD).write_text('{"fonts": {}}', encoding="utf-8")
    assert rendering.read_record(tmp_path) is None


def test_fonts_names_every_family() -> None:
    """Every family of FAMILIES gets a font name (or "unknown" where fontconfig cannot say)."""
    found = rendering.fonts()
    assert set(found) == set(rendering.FAMILIES)
    assert all(isinstance(name, str) and name for name in found.values())

"""The run's work dir: TMPDIR while the run lasts, the harness's environment back after, nothing left."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.lifecycle import target_env
from harness.workdir import WorkDir, mounts_under, remove_tree


def test_work_dir_is_tmpdir_while_open_and_gone_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TMPDIR, tempfile, children's XDG dirs and the extra variables point into the run until close; then as before."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("PIP_CACHE_DIR", raising=False)
    tempfile.tempdir = None
    work = WorkDir({"PIP_CACHE_DIR": str(tmp_path / "pip")})
    try:
        assert work.path.parent == tmp_path.resolve()
        assert os.environ["TMPDIR"] == str(work.tmp)
        assert os.environ["PIP_CACHE_DIR"] == str(tmp_path / "pip")
        left = Path(tempfile.mkdtemp(prefix="forgotten-"))
        assert left.parent == work.tmp
        child = target_env()
        assert child["TMPDIR"] == str(work.tmp)
        assert child["PIP_CACHE_DIR"] == str(tmp_path / "pip")
        assert Path(child["XDG_CONFIG_HOME"]).parent == Path(child["XDG_CACHE_HOME"]).parent == work.path
        assert os.environ.get("XDG_CACHE_HOME") != child["XDG_CACHE_HOME"]  # the harness's own caches stay put
    finally:
        work.close()
    assert "XDG_CONFIG_HOME" not in target_env()
    assert os.environ["TMPDIR"] == str(tmp_path)
    assert "PIP_CACHE_DIR" not in os.environ
    assert tempfile.gettempdir() == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_keep_leaves_the_work_dir_for_a_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """close(keep=True) restores the environment but keeps the directory."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None
    work = WorkDir()
    work.close(keep=True)
    assert work.tmp.is_dir()
    assert os.environ["TMPDIR"] == str(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root")
def test_remove_tree_unmounts_a_tmpfs_left_inside(tmp_path: Path) -> None:
    """A tmpfs still mounted in the tree (a chaos gate killed mid-experiment) is unmounted and removed."""
    data = tmp_path / "work" / "instances" / "G4-1" / "data"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)], check=True, timeout=10)
    (data / "guardian.db").write_text("x")
    assert mounts_under(tmp_path / "work") == [data]
    remove_tree(tmp_path / "work")
    assert not (tmp_path / "work").exists()
    assert mounts_under(tmp_path) == []

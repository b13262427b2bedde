"""A failed embedded chaos run says what its consumers said: the end of each region's log on
stderr (what a CI run's output keeps), or, with ``--keep DIR``, the whole working directory
copied before the run's temporary directory goes away."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.surfaces.commands.chaos import LOG_TAIL_LINES, _show_logs


def workdir_with_logs(tmp_path: Path) -> Path:
    workdir = tmp_path / "run"
    (workdir / "logs").mkdir(parents=True)
    (workdir / "georep.toml").write_text("[table]\n")
    lines = [f"line {i}" for i in range(LOG_TAIL_LINES + 10)]
    (workdir / "logs" / "eu-west-1.log").write_text("\n".join(lines) + "\n")
    (workdir / "logs" / "us-east-1.log").write_text("georep: replicating\nTraceback: boom\n")
    return workdir


def test_a_failed_run_prints_the_end_of_every_regions_consumer_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _show_logs(workdir_with_logs(tmp_path), keep=None)

    err = capsys.readouterr().err
    assert f"eu-west-1's consumers, the last {LOG_TAIL_LINES} of {LOG_TAIL_LINES + 10}" in err
    assert f"  line {LOG_TAIL_LINES + 9}\n" in err and "  line 9\n" not in err
    assert "us-east-1's consumers, the last 2 of 2" in err and "  Traceback: boom" in err


def test_keep_copies_the_whole_working_directory_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "kept"
    _show_logs(workdir_with_logs(tmp_path), keep=kept)

    assert "line 0" in (kept / "logs" / "eu-west-1.log").read_text()
    assert (kept / "georep.toml").exists()
    assert str(kept) in capsys.readouterr().err

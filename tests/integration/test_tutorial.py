"""The README's five-minute tutorial, run as written (only the port is changed): it must stay
true. Its shell blocks run in bash in a fresh folder, against `georep backend`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.adapters.backends._process import free_loopback_port, port_is_open

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def tutorial_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("### A five-minute tutorial") :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_the_readme_tutorial_runs_as_written(tmp_path: Path) -> None:
    first, *rest = tutorial_blocks()
    assert first.startswith("georep backend --port 8000")
    port = free_loopback_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    backend = subprocess.Popen(
        [sys.executable, "-m", "service.surfaces.cli", "backend", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_is_open(port):
            assert backend.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        script = "\n".join(rest).replace(":8000", f":{port}")
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            start_new_session=True,
            check=False,
        )
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=30)
    out = result.stdout + result.stderr
    assert "is not commutative" in out, out
    assert re.search(r"exit 1\s.*exit 0\s*$", result.stdout, flags=re.S), out
    assert "cart#1" in result.stdout, out
    assert '"items": ["book", "lamp"]' in result.stdout, out  # verify --show: what both hold
    # A plain boto3 delete in eu-west-1: get_item in us-east-1 returns no item (issue 22).
    assert "cart#2 in us-east-1: {'SS': ['pen']}" in result.stdout, out
    assert "cart#2 in us-east-1 after the delete: None" in result.stdout, out

"""A mutation check: plausible one-line bugs, each applied alone, each run against the tests
that should catch it. A test suite that lets a plausible bug live proves less than it seems.

    .venv/bin/python tools/mutation.py [--only ID,ID] [--json out.json] [--timeout 900]

Each mutant in tools/mutants.py names a file, an exact text that occurs once in it, what to
put instead, and the test files to run. The check works in a scratch copy of the tree (a git
worktree of HEAD plus the working tree's changes), never in the checkout itself, and runs each
mutant as ``pytest -x -q`` of its tests under ``timeout -k 30 <timeout>`` with the ``ci``
Hypothesis profile. A mutant is *killed* when the tests fail, *survived* when they pass, and
*broken* when it does not apply (its text is gone or ambiguous: fix the list). Printed: one
line per mutant and the score; survivors need a named test or an argument (why the mutant is
equivalent), written next to it in tools/mutants.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from mutants import MUTANTS, Mutant  # noqa: E402


def scratch_copy(into: Path) -> Path:
    """The tree as it is now (tracked and untracked files, not ignored ones) under ``into``."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    tree = into / "tree"
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = tree / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return tree


def run(mutant: Mutant, tree: Path, timeout: int) -> tuple[str, float, str]:
    path = tree / mutant.file
    original = path.read_text()
    if original.count(mutant.find) != 1:
        return "broken", 0.0, f"text occurs {original.count(mutant.find)} times"
    path.write_text(original.replace(mutant.find, mutant.replace))
    env = {**os.environ, "PYTHONPATH": str(tree), "HYPOTHESIS_PROFILE": "ci"}
    started = time.monotonic()
    try:
        done = subprocess.run(
            [
                "timeout",
                "-k",
                "30",
                str(timeout),
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                *mutant.tests,
            ],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        path.write_text(original)
    elapsed = time.monotonic() - started
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    if done.returncode == 0:
        return "survived", elapsed, ""
    if done.returncode in (124, 137):
        return "killed", elapsed, "timed out (the mutant hangs the tests)"
    return "killed", elapsed, failed[0][7:] if failed else done.stdout.strip()[-200:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated mutant ids")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="georep-mutation-") as scratch:
        tree = scratch_copy(Path(scratch))
        for mutant in chosen:
            outcome, elapsed, detail = run(mutant, tree, args.timeout)
            results.append(
                {
                    "id": mutant.id,
                    "file": mutant.file,
                    "outcome": outcome,
                    "seconds": round(elapsed, 1),
                    "by": detail,
                }
            )
            print(f"{outcome:<9} {elapsed:6.0f}s  {mutant.id:<40} {detail[:110]}", flush=True)
    scored = [r for r in results if r["outcome"] != "broken"]
    killed = sum(r["outcome"] == "killed" for r in scored)
    print(f"\n{killed}/{len(scored)} killed ({killed / max(len(scored), 1):.0%})", end="")
    broken = len(results) - len(scored)
    print(f", {broken} did not apply" if broken else "")
    if args.json:
        args.json.write_text(
            json.dumps({"killed": killed, "scored": len(scored), "runs": results}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()

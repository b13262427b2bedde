"""The packaged function's cold start: import time and memory, as Lambda runs it.

    .venv/bin/python bench/cold_start.py --python /path/to/python3.12 [--runs 5]

Builds the function's zip as ``make package`` does, but for this machine's platform (the aarch64
wheels cannot be imported here), extracts it the way Lambda does (into a folder that plays
/var/task; Lambda does not import from the zip), and starts fresh interpreters with that folder and
a boto3 installed for the same Python (the runtime's own) as their only path, never writing bytecode
(/var/task is read-only). Each run times ``import service.surfaces.lambda_handler`` and then
``load_config(...).settings()`` (the cold start's work that needs no network), and reports the
process's peak RSS. Two variants: with the zip's precompiled pycs, and without them. Needs the
package index (pip installs the dependencies). Not part of the test suite."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))

import package  # noqa: E402  (deploy/package.py: stdlib only)

CONFIG = """[table]
name = "orders"
partition_key = "pk"

[[regions]]
name = "eu-west-1"

[[regions]]
name = "us-east-1"
"""

PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
import service.surfaces.lambda_handler
t1 = time.perf_counter()
from service.config import load_config
load_config("georep.toml").settings()
t2 = time.perf_counter()
print(json.dumps({
    "import_s": t1 - t0,
    "settings_s": t2 - t1,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "hypothesis": "hypothesis" in sys.modules,
    "from": service.surfaces.lambda_handler.__file__,
}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--python", required=True, help="a CPython 3.12 (the runtime's)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--platform", default="manylinux2014_x86_64")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="georep-cold-") as scratch:
        work = Path(scratch)
        (work / "georep.toml").write_text(CONFIG)
        runtime = work / "runtime"  # what the python3.12 runtime provides
        subprocess.run(
            [args.python, "-m", "pip", "install", "--quiet", "--target", str(runtime), "boto3"],
            check=True,
        )
        for compiled in (True, False):
            out = work / f"georep-{compiled}.zip"
            package.build(
                out,
                config=work / "georep.toml",
                platform=args.platform,
                compile_with=args.python if compiled else None,
            )
            task = work / f"task-{compiled}"
            with zipfile.ZipFile(out) as archive:
                archive.extractall(task)
            runs = [_run(args.python, task, runtime) for _ in range(args.runs)]
            imports = [r["import_s"] for r in runs]
            settings = [r["settings_s"] for r in runs]
            rss = [r["rss_mb"] for r in runs]
            print(
                f"{'with' if compiled else 'without'} pycs: zip {out.stat().st_size / 1e6:.1f} MB; "
                f"import median {statistics.median(imports):.3f} s "
                f"(min {min(imports):.3f}, max {max(imports):.3f}); "
                f"settings {statistics.median(settings) * 1000:.1f} ms; "
                f"peak RSS median {statistics.median(rss):.1f} MB; "
                f"hypothesis imported: {any(r['hypothesis'] for r in runs)}"
            )
    return 0


def _run(python: str, task: Path, runtime: Path) -> dict[str, float]:
    script = f"import sys; sys.path[:0] = [{str(task)!r}, {str(runtime)!r}]\n" + PROBE
    done = subprocess.run(
        [python, "-I", "-S", "-c", script],
        cwd=task,
        env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    raise SystemExit(main())

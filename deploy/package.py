"""Build the Lambda function's zip, reproducibly: ``make package`` runs this.

The zip holds ``service/`` and ``resolvers/`` (no tests, no caches), ``georep.toml`` when one
is given (the function reads ``GEOREP_CONFIG=georep.toml`` from its task root), and the
function's dependencies from ``deploy/requirements.txt`` installed for the Lambda platform
(manylinux2014_aarch64, CPython 3.12, wheels only). boto3 and botocore are not packaged: the
python3.12 runtime provides them (and jmespath, which Powertools needs).

Reproducible: entries sorted by name, every timestamp set to ``SOURCE_DATE_EPOCH`` (default
1980-01-01, the earliest a zip can say), fixed permissions, fixed compression, pip's own
byte-compilation and console scripts left out. With ``--compile PYTHON`` (a CPython 3.12),
every module is byte-compiled into the zip with unchecked-hash pycs (PEP 552: no timestamp in
them): Lambda's /var/task is read-only, so without them every cold start compiles every module.

Usage::

    python deploy/package.py --out dist/georep-lambda.zip --config georep.toml
    python deploy/package.py --out /tmp/f.zip --no-deps     # sources only (tests; offline)

Only the standard library is used, so this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("service", "resolvers")
REQUIREMENTS = ROOT / "deploy" / "requirements.txt"
PLATFORM = "manylinux2014_aarch64"
PYTHON_VERSION = "3.12"
# The runtime provides these; a packaged copy would only shadow it and grow the zip.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "urllib3"})
_SKIPPED_PARTS = frozenset({"__pycache__", "bin"})
_EARLIEST_ZIP_TIME = 315532800  # 1980-01-01T00:00:00Z


def build(
    out: Path,
    *,
    config: Path | None = None,
    deps: bool = True,
    requirements: Path = REQUIREMENTS,
    platform: str = PLATFORM,
    python_version: str = PYTHON_VERSION,
    compile_with: str | None = None,
    epoch: int | None = None,
) -> Path:
    """Write the function's zip to ``out`` and return it (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="georep-package-") as scratch:
        stage = Path(scratch) / "stage"
        stage.mkdir()
        for name in SOURCES:
            shutil.copytree(
                ROOT / name, stage / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        if config is not None:
            shutil.copyfile(config, stage / "georep.toml")
        if deps:
            install_dependencies(
                stage,
                requirements=requirements,
                platform=platform,
                python_version=python_version,
            )
        if compile_with is not None:
            byte_compile(stage, python=compile_with)
        write_zip(out, stage, epoch=source_date_epoch() if epoch is None else epoch)
    return out


def install_dependencies(
    target: Path, *, requirements: Path, platform: str, python_version: str
) -> None:
    """pip-install the pinned requirements (no dependency resolution: the file lists every
    package) as wheels for ``platform``; this step needs the package index."""
    pinned = [line.split("==")[0].strip().lower() for line in _requirement_lines(requirements)]
    provided = sorted(RUNTIME_PROVIDED & set(pinned))
    if provided:
        raise SystemExit(f"{requirements}: {provided} are provided by the Lambda runtime")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--no-deps",
            "--only-binary=:all:",
            "--implementation=cp",
            f"--platform={platform}",
            f"--python-version={python_version}",
            f"--target={target}",
            "--requirement",
            str(requirements),
        ],
        check=True,
    )


def byte_compile(stage: Path, *, python: str) -> None:
    """Unchecked-hash pycs (no timestamps) whose recorded paths are /var/task's, not ours."""
    subprocess.run(
        [
            python,
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode=unchecked-hash",
            "-s",
            str(stage),
            "-p",
            "/var/task",
            str(stage),
        ],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "0"},
    )


def write_zip(out: Path, stage: Path, *, epoch: int) -> None:
    """Every file under ``stage``, sorted, each with the same time and permissions."""
    date_time = time.gmtime(max(epoch, _EARLIEST_ZIP_TIME))[:6]
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(_files(stage), key=lambda p: p.relative_to(stage).as_posix())
    with zipfile.ZipFile(out, "w") as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(stage).as_posix(), date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever builds it, so the mode bits are read
            info.external_attr = (0o100644 if not os.access(path, os.X_OK) else 0o100755) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)


def _files(stage: Path) -> Iterable[Path]:
    for path in stage.rglob("*"):
        relative = path.relative_to(stage).parts
        if not path.is_file() or relative[0] in _SKIPPED_PARTS:
            continue
        if "__pycache__" in relative and not path.name.endswith(".pyc"):
            continue
        if path.suffix == ".pyc" and "__pycache__" not in relative:
            continue
        yield path


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(value) if value else _EARLIEST_ZIP_TIME


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "georep-lambda.zip")
    parser.add_argument("--config", type=Path, help="georep.toml to ship as the function's")
    parser.add_argument("--no-deps", action="store_true", help="sources only (no pip)")
    parser.add_argument("--platform", default=PLATFORM)
    parser.add_argument("--python-version", default=PYTHON_VERSION)
    parser.add_argument("--compile", metavar="PYTHON", help="byte-compile with this CPython")
    args = parser.parse_args(argv)
    if args.config is not None and not args.config.is_file():
        print(f"package: {args.config}: no such file (pass your georep.toml)", file=sys.stderr)
        return 2
    out = build(
        args.out,
        config=args.config,
        deps=not args.no_deps,
        platform=args.platform,
        python_version=args.python_version,
        compile_with=args.compile,
    )
    with zipfile.ZipFile(out) as archive:
        count = len(archive.infolist())
    shipped = f"with {args.config}" if args.config else "without a georep.toml (GEOREP_CONFIG)"
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, {count} files, {shipped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

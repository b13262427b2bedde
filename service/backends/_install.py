"""Install DynamoDB Local into a local cache (the work behind ``python -m service.backends.fetch``).

Why npm: AWS publishes DynamoDB Local inside the npm package ``amplify-dynamodb-simulator``,
and the npm registry is reachable from every machine of this project while AWS's own download
host is not. ``npm pack`` fetches only the tarball (no Node dependencies, no install scripts);
we keep the jar, its ``DynamoDBLocal_lib/`` folder (jars and sqlite4java native libraries) and
its licence texts. The jar is under AWS's DynamoDB Local licence: it lives in ``.cache/``, which
git ignores, and must never be committed.

The cache folder is, first match wins: an explicit argument, the environment variable
``GEOREP_DDBLOCAL_DIR``, ``<repo>/.cache/dynamodb-local/``.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from service.backends._errors import FetchError

__all__ = [
    "CACHE_ENV",
    "JAR_SHA256",
    "LAUNCHER_CLASS",
    "MIN_JAVA",
    "PACKAGE_SPEC",
    "FetchOutcome",
    "FetchResult",
    "Installation",
    "default_cache_dir",
    "ensure_dynamodb_local",
    "find_installation",
    "java_major_version",
    "parse_java_version",
]

PACKAGE_SPEC: Final = "amplify-dynamodb-simulator@2.9.30"
"""The npm package that carries DynamoDB Local 1.25.1. Bump together with `JAR_SHA256`."""

JAR_SHA256: Final = "454305e9bc3e6ebcca5b62569869e31563b8d7e346474e94557b2600702146c7"
"""SHA-256 of ``DynamoDBLocal.jar`` in `PACKAGE_SPEC`: the launcher relies on its internals."""

MIN_JAVA: Final = 17
CACHE_ENV: Final = "GEOREP_DDBLOCAL_DIR"
LAUNCHER_CLASS: Final = "georep.LoopbackDynamoDBLocal"

_ARCHIVE_PREFIX: Final = "package/emulator/"
_LIB_DIR: Final = "DynamoDBLocal_lib"
_KEPT_FILES: Final = frozenset(
    {"DynamoDBLocal.jar", "LICENSE.txt", "THIRD-PARTY-LICENSES.txt", "README.txt"}
)
_MARKER: Final = "georep-install.json"
_LAUNCHER_SOURCE: Final = Path(__file__).with_name("LoopbackDynamoDBLocal.java")
_REPO_ROOT: Final = Path(__file__).resolve().parents[2]
_NPM_TIMEOUT_S: Final = 600.0
_JAVAC_TIMEOUT_S: Final = 120.0


@dataclass(frozen=True, slots=True)
class Installation:
    """A complete DynamoDB Local installation in a cache folder."""

    root: Path

    @property
    def jar(self) -> Path:
        return self.root / "DynamoDBLocal.jar"

    @property
    def lib_dir(self) -> Path:
        """Passed as ``-Djava.library.path``: sqlite4java loads its native library from here."""
        return self.root / _LIB_DIR

    @property
    def launcher_dir(self) -> Path:
        """Class-path entry holding the compiled `LAUNCHER_CLASS` (see the .java file)."""
        return self.root / "launcher"

    @property
    def has_launcher(self) -> bool:
        return (self.launcher_dir / "georep" / "LoopbackDynamoDBLocal.class").is_file()


class FetchOutcome(enum.Enum):
    INSTALLED = "installed"
    PRESENT = "present"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What `ensure_dynamodb_local` did, with one line for people."""

    outcome: FetchOutcome
    message: str
    installation: Installation | None


def default_cache_dir() -> Path:
    """``$GEOREP_DDBLOCAL_DIR`` if set, else ``<repo>/.cache/dynamodb-local``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return _REPO_ROOT / ".cache" / "dynamodb-local"


def find_installation(cache_dir: Path | None = None) -> Installation | None:
    """The installation in `cache_dir` if it is complete and of `PACKAGE_SPEC`, else None.

    Completeness is judged by the marker file, written last, so an interrupted fetch is never
    mistaken for a good one.
    """
    installation = Installation(root=cache_dir or default_cache_dir())
    try:
        marker = json.loads((installation.root / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("package") != PACKAGE_SPEC:
        return None
    if not (installation.jar.is_file() and installation.lib_dir.is_dir()):
        return None
    return installation


def java_major_version(java: str | None = None) -> int | None:
    """The major version of `java` (default: the one on PATH), or None if there is none.

    >>> java_major_version()  # doctest: +SKIP
    17
    """
    executable = java or shutil.which("java")
    if executable is None:
        return None
    try:
        completed = subprocess.run(
            [executable, "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_version(completed.stderr + completed.stdout)


def parse_java_version(text: str) -> int | None:
    """The major version in the output of ``java -version`` ("1.8.0_292" is 8, "17.0.1" 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        return int(match.group(2))
    return major


def ensure_dynamodb_local(
    *,
    cache_dir: Path | None = None,
    npm: str | None = None,
    java: str | None = None,
    say: Callable[[str], None] | None = None,
) -> FetchResult:
    """Make sure DynamoDB Local is in `cache_dir`; idempotent and safe to run concurrently.

    Returns SKIPPED (with the reason) when java >= 17 or npm is missing; raises `FetchError`
    when they exist but the fetch fails. `say` receives progress lines (default: stderr).
    """
    progress = say or _to_stderr
    root = (cache_dir or default_cache_dir()).resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root.parent / f".{root.name}.lock"):
        present = find_installation(root)
        if present is not None:
            _add_launcher_if_possible(present, java=java, say=progress)
            return FetchResult(
                outcome=FetchOutcome.PRESENT,
                message=f"DynamoDB Local is already in {root}",
                installation=present,
            )
        version = java_major_version(java)
        if version is None or version < MIN_JAVA:
            found = "no usable java found" if version is None else f"found java {version}"
            return FetchResult(
                outcome=FetchOutcome.SKIPPED,
                message=(
                    f"skipped DynamoDB Local: it needs java >= {MIN_JAVA} ({found}); "
                    "the integration tests will use moto only"
                ),
                installation=None,
            )
        npm_executable = npm or shutil.which("npm")
        if npm_executable is None:
            return FetchResult(
                outcome=FetchOutcome.SKIPPED,
                message=(
                    "skipped DynamoDB Local: npm is not on PATH (install Node.js and re-run "
                    "`python -m service.backends.fetch`); the integration tests will use moto only"
                ),
                installation=None,
            )
        started = time.monotonic()
        installation = _install(root=root, npm=npm_executable, java=java, say=progress)
        size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
        return FetchResult(
            outcome=FetchOutcome.INSTALLED,
            message=(
                f"installed DynamoDB Local from {PACKAGE_SPEC} into {root} "
                f"({size_mb:.0f} MB, {time.monotonic() - started:.1f} s)"
            ),
            installation=installation,
        )


def _install(*, root: Path, npm: str, java: str | None, say: Callable[[str], None]) -> Installation:
    """Download, extract and verify into a staging folder, then move it into place.

    Staging next to `root` makes the final rename atomic, so readers never see half a cache.
    """
    with tempfile.TemporaryDirectory(prefix=f".{root.name}-", dir=root.parent) as work:
        work_dir = Path(work)
        say(f"fetching {PACKAGE_SPEC} with npm pack (about 57 MB) ...")
        tarball = _npm_pack(npm=npm, into=work_dir)
        staging = work_dir / "staging"
        staging.mkdir()
        say(f"extracting DynamoDB Local from {tarball.name} ...")
        _extract(tarball=tarball, into=staging)
        digest = _sha256(staging / "DynamoDBLocal.jar")
        if digest != JAR_SHA256:
            raise FetchError(
                f"DynamoDBLocal.jar from {PACKAGE_SPEC} has SHA-256 {digest}, expected "
                f"{JAR_SHA256}; if the package was bumped on purpose, update JAR_SHA256"
            )
        installation = Installation(root=staging)
        _add_launcher_if_possible(installation, java=java, say=say)
        marker = {"package": PACKAGE_SPEC, "jar_sha256": digest}
        (staging / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if root.exists():
            shutil.rmtree(root)  # an incomplete earlier attempt: it has no valid marker
        staging.rename(root)
    return Installation(root=root)


def _npm_pack(*, npm: str, into: Path) -> Path:
    env = {**os.environ, "NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_FUND": "false"}
    try:
        completed = subprocess.run(
            [npm, "pack", PACKAGE_SPEC, "--ignore-scripts", "--silent"],
            cwd=into,
            env=env,
            capture_output=True,
            text=True,
            timeout=_NPM_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise FetchError(f"npm pack {PACKAGE_SPEC} failed: {error}") from error
    tarballs = sorted(into.glob("*.tgz"))
    if completed.returncode != 0 or not tarballs:
        tail = (completed.stderr or completed.stdout).strip()[-2000:]
        raise FetchError(
            f"npm pack {PACKAGE_SPEC} exited {completed.returncode} without a tarball: {tail}"
        )
    return tarballs[0]


def _extract(*, tarball: Path, into: Path) -> None:
    """Extract only the emulator's jar, libraries and licences, flattened into `into`."""

    def keep(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
        if not member.name.startswith(_ARCHIVE_PREFIX):
            return None
        relative = member.name.removeprefix(_ARCHIVE_PREFIX)
        if relative not in _KEPT_FILES and not relative.startswith(f"{_LIB_DIR}/"):
            return None
        # NOTE: the "data" filter refuses links out of the folder and absolute paths.
        return tarfile.data_filter(member.replace(name=relative, deep=False), destination)

    try:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(into, filter=keep)
    except (OSError, tarfile.TarError) as error:
        raise FetchError(f"cannot extract {tarball.name}: {error}") from error
    if not (into / "DynamoDBLocal.jar").is_file() or not (into / _LIB_DIR).is_dir():
        raise FetchError(f"{tarball.name} has no {_ARCHIVE_PREFIX}DynamoDBLocal.jar")


def _add_launcher_if_possible(
    installation: Installation, *, java: str | None, say: Callable[[str], None]
) -> None:
    """Compile the loopback launcher next to the jar, once; without javac, do without it.

    Without the launcher DynamoDB Local still runs, but listens on every interface.
    """
    if installation.has_launcher:
        return
    javac = _find_javac(java)
    if javac is None:
        say("no javac found: DynamoDB Local will listen on all interfaces, not only loopback")
        return
    staging = installation.root / "launcher.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        javac,
        "-nowarn",
        "-encoding",
        "UTF-8",
        "-cp",
        str(installation.jar),
        "-d",
        str(staging),
        str(_LAUNCHER_SOURCE),
    ]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=_JAVAC_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        say(f"could not compile the loopback launcher ({error}); continuing without it")
        return
    if completed.returncode != 0:
        say(f"could not compile the loopback launcher: {completed.stderr.strip()[-1000:]}")
        shutil.rmtree(staging, ignore_errors=True)
        return
    shutil.rmtree(installation.launcher_dir, ignore_errors=True)
    staging.rename(installation.launcher_dir)


def _find_javac(java: str | None) -> str | None:
    """javac on PATH, else the one beside the resolved `java` (JDKs install both together)."""
    on_path = shutil.which("javac")
    if on_path is not None:
        return on_path
    java_path = java or shutil.which("java")
    if java_path is None:
        return None
    sibling = Path(java_path).resolve().with_name("javac")
    return str(sibling) if sibling.is_file() and os.access(sibling, os.X_OK) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent fetches (parallel test workers, two terminals) on one cache."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

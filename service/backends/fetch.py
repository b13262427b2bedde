"""Install DynamoDB Local into a local cache, at install time.

Run as ``python -m service.backends.fetch [--cache DIR]`` (``make install`` does). It runs
``npm pack amplify-dynamodb-simulator@2.9.30`` and keeps the emulator's jar and libraries in
``<repo>/.cache/dynamodb-local/`` (or ``$GEOREP_DDBLOCAL_DIR``); see `_install` for why.

The jar is optional (moto is the fallback backend), so a missing ``npm`` or ``java`` >= 17 is
reported and the exit status stays 0. A download or archive that fails although the tools are
there exits 1, because silently losing the faithful backend would hide a broken install step.

Exit status: 0 installed, already present, or skipped for a missing tool; 1 the fetch failed;
2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from service.backends._errors import FetchError
from service.backends._install import CACHE_ENV, PACKAGE_SPEC, ensure_dynamodb_local

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.backends.fetch",
        description=f"Install DynamoDB Local ({PACKAGE_SPEC}) into a local cache folder.",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"cache folder (default: ${CACHE_ENV}, else <repo>/.cache/dynamodb-local)",
    )
    args = parser.parse_args(argv)
    try:
        result = ensure_dynamodb_local(cache_dir=args.cache)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(result.message)
    return 0


if __name__ == "__main__":
    sys.exit(main())

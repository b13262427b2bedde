"""``georep backend [--port 8000]``: run the embedded backend, the serialised moto server
(conditional writes atomic, DynamoDB and DynamoDB Streams over HTTP, every region a
``region_name``), in the foreground until Ctrl-C: point ``endpoint_url`` in georep.toml at it
to try georep on one machine. Needs the ``embedded`` extra (``pip install 'georep[embedded]'``;
the test extra has it too). Data lives in memory and is gone when it stops."""

from __future__ import annotations

import argparse

NAME = "backend"
HELP = "run the embedded backend (serialised moto server) for local use"
EXAMPLES = (
    ("georep backend --port 8000", 'then endpoint_url = "http://127.0.0.1:8000"'),
    ("georep backend --host 0.0.0.0 --port 8000", "reachable from other machines"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")


def execute(args: argparse.Namespace) -> int:
    import importlib.util

    from service.adapters.backends import BackendUnavailableError

    if importlib.util.find_spec("moto") is None:
        raise BackendUnavailableError(
            "the embedded backend needs moto's server: pip install 'georep[embedded]'"
        )
    from service.adapters.backends._moto_serial import main

    argv = ["--host", args.host, "--port", str(args.port)]
    return main([*argv, "--verbose"] if args.verbose else argv)

"""The public surface of service.adapters.backends is deliberate: adding or removing a name is a
decision."""

from __future__ import annotations

import service.adapters.backends as backends


def test_service_backends_exports_exactly_the_documented_names() -> None:
    expected = [
        "BackendError",
        "BackendKind",
        "BackendStartError",
        "BackendUnavailableError",
        "Credentials",
        "EmbeddedBackend",
        "Endpoint",
        "KeyType",
        "MotoServer",
        "ServiceName",
        "TableSetupError",
        "create_replica_table",
        "onboard_table",
        "port_is_open",
        "start_backend",
        "stream_arn",
    ]
    assert expected == sorted(backends.__all__)
    missing = [name for name in expected if not hasattr(backends, name)]
    assert not missing, f"listed in __all__ but not defined: {missing}"

"""The integration tier's moto server fixtures (one server per module, started by the test)."""

from tests.integration.conftest import backend, moto_server

__all__ = ["backend", "moto_server"]

"""The application SDK's public path: ``from service.sdk import GeorepTable``.

It lives in service/surfaces/sdk.py; applications import it from here.
"""

from service.surfaces.sdk import Clock, GeorepTable, application_data

__all__ = ["Clock", "GeorepTable", "application_data"]

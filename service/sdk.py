"""The application SDK's public path: ``from service.sdk import GeorepTable``.

It lives in service/surfaces/sdk.py (the low-level form) and service/surfaces/sdk_resource.py
(the resource form); applications import it from here.
"""

from service.errors import BatchWriteError
from service.surfaces.sdk import Clock, GeorepTable, Paginator, application_data
from service.surfaces.sdk_resource import ResourceTable

__all__ = [
    "BatchWriteError",
    "Clock",
    "GeorepTable",
    "Paginator",
    "ResourceTable",
    "application_data",
]

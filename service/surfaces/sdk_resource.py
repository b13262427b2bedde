"""The SDK in boto3's resource form: plain Python values and condition objects.

A :class:`ResourceTable` is to :class:`~service.surfaces.sdk.GeorepTable` what
``boto3.resource("dynamodb").Table(name)`` is to the low-level client, and converts the same
way, with boto3's own machinery: ``boto3.dynamodb.transform.TransformationInjector`` builds
``Attr``/``Key`` conditions with ``ConditionExpressionBuilder`` and serialises every
attribute value with ``TypeSerializer`` (deserialises responses with ``TypeDeserializer``),
walking the DynamoDB service model's shapes of the operation (PutItem, Query...), exactly as
the resource does on its client's events. So numbers are ``Decimal`` (a ``float`` is refused,
as boto3 refuses it), sets are ``set``, binary is ``bytes`` or ``boto3.dynamodb.types.Binary``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from boto3.dynamodb.table import BatchWriter
from boto3.dynamodb.transform import TransformationInjector, copy_dynamodb_params

from service.surfaces.sdk import GeorepTable, Paginator


class ResourceTable:
    """A :class:`GeorepTable` with boto3's resource-style values (``GeorepTable.resource``).

    >>> table = GeorepTable.resource(client, config=config, region="eu-west-1")  # doctest: +SKIP
    >>> table.put_item(Item={"pk": "user#1", "visits": Decimal(1), "tags": {"a"}})  # doctest: +SKIP
    """

    def __init__(self, table: GeorepTable) -> None:
        self.low_level = table
        self.name = self.table_name = table.table_name
        self._model = table.client.meta.service_model

    def get_item(self, **request: Any) -> dict[str, Any]:
        return self._call("GetItem", self.low_level.get_item, request)

    def put_item(self, **request: Any) -> dict[str, Any]:
        return self._call("PutItem", self.low_level.put_item, request)

    def update_item(self, **request: Any) -> dict[str, Any]:
        return self._call("UpdateItem", self.low_level.update_item, request)

    def delete_item(self, **request: Any) -> dict[str, Any]:
        return self._call("DeleteItem", self.low_level.delete_item, request)

    def query(self, **request: Any) -> dict[str, Any]:
        return self._call("Query", self.low_level.query, request)

    def scan(self, **request: Any) -> dict[str, Any]:
        return self._call("Scan", self.low_level.scan, request)

    def batch_write_item(self, **request: Any) -> dict[str, Any]:
        return self._call("BatchWriteItem", self.low_level.batch_write_item, request)

    def batch_writer(
        self, overwrite_by_pkeys: list[str] | None = None, *, flush_amount: int = 25
    ) -> BatchWriter:
        """boto3's BatchWriter, as ``Table.batch_writer()`` returns it, over this table."""
        # NOTE: BatchWriter calls only its client's batch_write_item, which this table has.
        client: Any = self
        return BatchWriter(
            self.name, client, flush_amount=flush_amount, overwrite_by_pkeys=overwrite_by_pkeys
        )

    def get_paginator(self, operation: str) -> Paginator:
        """Every page of ``query`` or ``scan``, following LastEvaluatedKey."""
        if operation not in ("query", "scan"):
            raise ValueError(f"a ResourceTable paginates query and scan, not {operation!r}")
        return Paginator(getattr(self, operation))

    def _call(
        self, operation: str, low_level: Callable[..., dict[str, Any]], request: dict[str, Any]
    ) -> dict[str, Any]:
        """``request`` transformed as the resource transforms it for ``operation``, sent to
        the low-level SDK, and its response transformed back."""
        model = self._model.operation_model(operation)
        # NOTE: one injector per call: its ConditionExpressionBuilder numbers placeholders
        # (#n0, :v0...) in shared state, and a table is used from several threads.
        injector = TransformationInjector()
        params = copy_dynamodb_params(request)
        injector.inject_condition_expressions(params, model)
        injector.inject_attribute_value_input(params, model)
        response = low_level(**params)
        injector.inject_attribute_value_output(response, model)
        return response

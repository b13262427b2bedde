"""The one condition builder: a core precondition as a DynamoDB ConditionExpression.

`service.adapters.dynamo.DynamoTable` sends exactly this to DynamoDB, and the in-memory table
(`service.adapters.memory.MemoryTable`) evaluates exactly this, so the property tests check the
condition the product sends, not a copy of it (STYLE 9b). Pure: names and values only.

Each clause is named and commented where it is built; clauses are joined with AND.
"""

from __future__ import annotations

from typing import Any

from service.core.apply import ExpectAbsent, ExpectMeta, Precondition
from service.core.version import META_ATTR


def condition_for(precondition: Precondition, *, partition_key: str) -> dict[str, Any]:
    """ConditionExpression, ExpressionAttributeNames and (if any) ExpressionAttributeValues.

    >>> condition_for(ExpectAbsent(), partition_key="pk")["ConditionExpression"]
    'attribute_not_exists(#pk)'

    Only the metadata is compared, never the data: the argument for convergence does not need
    it (docs/design.md, "Raw-write adoption and its limits"), and a condition on the data could
    not cover every item (DynamoDB caps an expression at 4 KB).
    """
    match precondition:
        case ExpectAbsent():
            # no item under this key
            return {
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": partition_key},
            }
        case ExpectMeta(value=None):
            # an item written without georep metadata (a raw write not yet adopted)
            return {
                "ConditionExpression": "attribute_exists(#pk) AND attribute_not_exists(#g)",
                "ExpressionAttributeNames": {"#pk": partition_key, "#g": META_ATTR},
            }
        case ExpectMeta(value=value):
            # exactly the metadata the decision was taken on (a stamped write changes it)
            return {
                "ConditionExpression": "#g = :g",
                "ExpressionAttributeNames": {"#g": META_ATTR},
                "ExpressionAttributeValues": {":g": value},
            }
    raise AssertionError(precondition)

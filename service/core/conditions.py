"""The one condition builder: a core precondition as a DynamoDB ConditionExpression.

`service.adapters.dynamo.DynamoTable` sends exactly this to DynamoDB, and the in-memory table
(`service.adapters.memory.MemoryTable`) evaluates exactly this, so the property tests check the
condition the product sends, not a copy of it (STYLE 9b). Pure: names and values only.

Each clause is named and commented where it is built; clauses are joined with AND.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.core.apply import ExpectAbsent, ExpectMeta, Precondition
from service.core.expressions import holds, parse_condition, rename_placeholders
from service.core.values import AttributeValue
from service.core.version import META_ATTR

# The prefix of every placeholder of an application's condition once it is joined to georep's:
# georep's own placeholders (#pk, #g, :g) never start with it, so the two cannot collide.
APPLICATION_PREFIX = "app_"


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


def with_application(
    condition: Mapping[str, Any],
    *,
    expression: str,
    names: Mapping[str, str] | None,
    values: Mapping[str, AttributeValue] | None,
) -> dict[str, Any]:
    """georep's ``condition`` (from :func:`condition_for`) AND the application's own
    ConditionExpression, each placeholder of the application's renamed with
    :data:`APPLICATION_PREFIX` so that none collides with georep's.

    >>> joined = with_application(
    ...     condition_for(ExpectAbsent(), partition_key="pk"),
    ...     expression="#pk <> :g", names={"#pk": "owner"}, values={":g": {"S": "x"}})
    >>> joined["ConditionExpression"]
    '(attribute_not_exists(#pk)) AND (#app_pk <> :app_g)'
    """
    own_names = dict(condition["ExpressionAttributeNames"])
    own_values = dict(condition.get("ExpressionAttributeValues", {}))
    app_names = {_renamed(k): v for k, v in (names or {}).items()}
    app_values = {_renamed(k): v for k, v in (values or {}).items()}
    assert not own_names.keys() & app_names.keys() and not own_values.keys() & app_values.keys()
    joined: dict[str, Any] = {
        # georep's precondition: the item is still the one the write was planned on
        # the application's condition, as DynamoDB evaluates it on that item
        "ConditionExpression": f"({condition['ConditionExpression']}) AND "
        f"({rename_placeholders(expression, prefix=APPLICATION_PREFIX)})",
        "ExpressionAttributeNames": {**own_names, **app_names},
    }
    if own_values or app_values:
        joined["ExpressionAttributeValues"] = {**own_values, **app_values}
    return joined


def _renamed(placeholder: str) -> str:
    return f"{placeholder[0]}{APPLICATION_PREFIX}{placeholder[1:]}"


def precondition_holds(
    precondition: Precondition, item: Mapping[str, AttributeValue] | None, *, partition_key: str
) -> bool:
    """Whether the ConditionExpression :func:`condition_for` builds holds on ``item`` (None:
    no item), evaluated by the core's expression evaluator. The SDK asks it of the item a
    failed conditional write hands back: if georep's part held, the application's failed."""
    condition = condition_for(precondition, partition_key=partition_key)
    parsed = parse_condition(
        condition["ConditionExpression"],
        names=condition["ExpressionAttributeNames"],
        values=condition.get("ExpressionAttributeValues"),
    )
    return holds(parsed, item)

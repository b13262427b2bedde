"""The Lambda stack for several tables: deploy/template.yaml (one table's stack), its per-table
part repeated for each configured table (``georep deploy render`` with ``[[tables]]``).

deploy/template.yaml stays the one source: a region's stack holds one replicating function,
its role, the dead-letter and conflict tables, the failure queue and the function's alarms, and
per table its replica table (or an existing one), an event source mapping on that table's
stream, its parameters and its "stream detached" alarm. :func:`many_tables` copies the
per-table part once per table, every reference renamed with the table's suffix
(``TableName`` -> ``TableNameOrders``, ``ReplicaTable`` -> ``ReplicaTableOrders``, the
function's ``Stream`` event -> ``StreamOrders``), and widens the role to every table's stream
and replica tables. A pure function over the parsed template; :func:`load_template` reads the
YAML with CloudFormation's short tags (``!Ref``, ``!GetAtt``, ``!If``...) as their long form.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# What deploy/template.yaml has once per table.
PER_TABLE_PARAMETERS = (
    "TableName",
    "PartitionKey",
    "PartitionKeyType",
    "SortKey",
    "SortKeyType",
    "ExistingStreamArn",
    "PeerTableArns",
)
PER_TABLE_CONDITIONS = ("CreateTable", "HasSortKey")
PER_TABLE_RESOURCES = ("ReplicaTable", "StreamDetachedAlarm")
PER_TABLE_OUTPUTS = ("StreamArn", "EventSourceMappingId")
FUNCTION = "Replicator"
ROLE = "ReplicatorRole"
EVENT = "Stream"  # the function's DynamoDB event; SAM names its mapping FUNCTION + EVENT


class StackError(ValueError):
    """The template is not the shape many_tables knows, or the table names clash."""


def suffix_of(table: str) -> str:
    """A table's suffix in logical ids (letters and digits only).

    >>> suffix_of("orders"), suffix_of("user-events_v2")
    ('Orders', 'UserEventsV2')
    """
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", table))


def suffixes(tables: Sequence[str]) -> dict[str, str]:
    """Each table's suffix; StackError if two tables would share one."""
    found = {table: suffix_of(table) for table in tables}
    seen: dict[str, str] = {}
    for table, suffix in found.items():
        if suffix in seen:
            raise StackError(
                f"tables {seen[suffix]!r} and {table!r} would share the logical ids *{suffix} "
                "in the stack: rename one of them"
            )
        seen[suffix] = table
    return found


def many_tables(template: Mapping[str, Any], tables: Sequence[str]) -> dict[str, Any]:
    """The stack of deploy/template.yaml (parsed) serving every table of ``tables`` (their
    configured names, in order): one function, a mapping per table stream."""
    ids = suffixes(tables)
    resources = dict(template["Resources"])
    for name in (*PER_TABLE_RESOURCES, FUNCTION, ROLE):
        if name not in resources:
            raise StackError(f"the template has no resource {name}")
    out: dict[str, Any] = {
        key: copy.deepcopy(value)
        for key, value in template.items()
        if key not in ("Parameters", "Conditions", "Resources", "Outputs")
    }
    out["Description"] = (
        f"{template.get('Description', '').strip()} Serving the tables {', '.join(tables)}: an "
        "event source mapping per table stream, one function (georep deploy render)."
    ).strip()

    parameters: dict[str, Any] = {}
    for name, value in template.get("Parameters", {}).items():
        if name not in PER_TABLE_PARAMETERS:
            parameters[name] = copy.deepcopy(value)
            continue
        for table, suffix in ids.items():
            one = copy.deepcopy(value)
            one["Description"] = f"Table {table}: {one.get('Description', name)}".strip()
            parameters[name + suffix] = one
    out["Parameters"] = parameters

    conditions: dict[str, Any] = {}
    for name, value in template.get("Conditions", {}).items():
        if name not in PER_TABLE_CONDITIONS:
            conditions[name] = copy.deepcopy(value)
            continue
        for suffix in ids.values():
            conditions[name + suffix] = renamed(value, suffix)
    out["Conditions"] = conditions

    built: dict[str, Any] = {}
    for name, value in resources.items():
        if name in PER_TABLE_RESOURCES:
            for suffix in ids.values():
                built[name + suffix] = renamed(value, suffix)
        elif name == FUNCTION:
            built[name] = _function(value, ids.values())
        elif name == ROLE:
            built[name] = _role(value, ids.values())
        elif value.get("Type") == "AWS::IAM::Policy":
            built[name] = _policy(value, ids.values())
        else:
            built[name] = copy.deepcopy(value)
    out["Resources"] = built

    outputs: dict[str, Any] = {}
    for name, value in template.get("Outputs", {}).items():
        if name not in PER_TABLE_OUTPUTS:
            outputs[name] = copy.deepcopy(value)
            continue
        for suffix in ids.values():
            outputs[name + suffix] = renamed(value, suffix)
    out["Outputs"] = outputs
    return out


def renamed(node: Any, suffix: str) -> Any:
    """A copy of ``node`` whose references to the per-table parameters, conditions and
    resources (and the function's mapping) name the table's copies."""
    if isinstance(node, list):
        return [renamed(item, suffix) for item in node]
    if not isinstance(node, dict):
        return node
    if node.keys() == {"Ref"} and isinstance(node["Ref"], str):
        return {"Ref": _one(node["Ref"], suffix)}
    if node.keys() == {"Fn::GetAtt"}:
        target, *attribute = node["Fn::GetAtt"]
        return {"Fn::GetAtt": [_one(target, suffix), *attribute]}
    if node.keys() == {"Fn::If"}:
        condition, *branches = node["Fn::If"]
        return {"Fn::If": [_one(condition, suffix), *renamed(branches, suffix)]}
    if node.keys() == {"Fn::Sub"}:
        return {"Fn::Sub": _sub(node["Fn::Sub"], suffix)}
    out = {key: renamed(value, suffix) for key, value in node.items()}
    if isinstance(node.get("Condition"), str):  # a resource's own condition
        out["Condition"] = _one(node["Condition"], suffix)
    return out


_PER_TABLE = frozenset(
    (*PER_TABLE_PARAMETERS, *PER_TABLE_CONDITIONS, *PER_TABLE_RESOURCES, FUNCTION + EVENT)
)


def _one(name: str, suffix: str) -> str:
    return name + suffix if name in _PER_TABLE else name


def _sub(value: Any, suffix: str) -> Any:
    def name(match: re.Match[str]) -> str:
        return "${" + _one(match.group(1), suffix) + "}"

    if isinstance(value, str):
        return re.sub(r"\$\{([A-Za-z0-9]+)\}", name, value)
    text, variables = value
    return [_sub(text, suffix), renamed(variables, suffix)]


def _function(function: Mapping[str, Any], suffixes: Sequence[str] | Any) -> dict[str, Any]:
    """The function with its stream event repeated, one event source mapping per table."""
    out = copy.deepcopy(dict(function))
    events = out.get("Properties", {}).get("Events", {})
    if EVENT not in events:
        raise StackError(f"the function {FUNCTION} has no {EVENT} event")
    stream = events.pop(EVENT)
    for suffix in suffixes:
        events[EVENT + suffix] = renamed(stream, suffix)
    return out


def _role(role: Mapping[str, Any], suffixes: Sequence[str] | Any) -> dict[str, Any]:
    """The role with each statement about the table widened to every table: its resources
    repeated per table (a list of ARNs split from one string: the strings joined first)."""
    suffixes = list(suffixes)
    out = copy.deepcopy(dict(role))
    for policy in out.get("Properties", {}).get("Policies", []):
        _widen(policy.get("PolicyDocument", {}), suffixes)
    return out


def _policy(policy: Mapping[str, Any], suffixes: Sequence[str] | Any) -> dict[str, Any]:
    """A policy attached to the role (the tombstone store's), widened as the role's are."""
    out = copy.deepcopy(dict(policy))
    _widen(out.get("Properties", {}).get("PolicyDocument", {}), list(suffixes))
    return out


def _widen(document: dict[str, Any], suffixes: list[str]) -> None:
    """Each statement of ``document`` about the table widened to every table, in place."""
    for statement in document.get("Statement", []):
        resource = statement.get("Resource")
        if renamed(resource, "") == renamed(resource, "\0"):
            continue  # nothing per table in it
        split = resource.get("Fn::Split") if isinstance(resource, dict) else None
        if split is not None:
            delimiter, joined = split
            inner_delimiter, items = joined["Fn::Join"]
            statement["Resource"] = {
                "Fn::Split": [
                    delimiter,
                    {
                        "Fn::Join": [
                            inner_delimiter,
                            [renamed(item, s) for s in suffixes for item in items],
                        ]
                    },
                ]
            }
        elif isinstance(resource, list):  # each item per table, the shared ones once
            widened: list[Any] = []
            for item in resource:
                for suffix in suffixes:
                    if (each := renamed(item, suffix)) not in widened:
                        widened.append(each)
            statement["Resource"] = widened
        else:
            statement["Resource"] = [renamed(resource, s) for s in suffixes]


def load_template(path: Path) -> dict[str, Any]:
    """deploy/template.yaml as a plain document: CloudFormation's short tags in their long
    form (``!Ref X`` -> ``{"Ref": "X"}``, ``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A", "B"]}``,
    ``!If [...]`` -> ``{"Fn::If": [...]}``), dates left as text."""
    import yaml

    class Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
        pass

    def tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "Condition":
            return {"Condition": value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", tag)
    # NOTE: no timestamps: AWSTemplateFormatVersion "2010-09-09" stays the text it is.
    Loader.yaml_implicit_resolvers = {
        first: [(t, r) for t, r in resolvers if t != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    document = yaml.load(path.read_text(), Loader=Loader)  # a SafeLoader: no Python objects
    if not isinstance(document, dict):
        raise StackError(f"{path} is not a CloudFormation template")
    return document

"""Document paths over items in wire form: read, write, remove, project. Pure.

Writes mutate the item they are given (the evaluators work on a private deep copy).
"""

from __future__ import annotations

from typing import Any

from service.core.expressions._syntax import Path, PathPart
from service.errors import ExpressionError

Document = dict[str, Any]

INVALID_FOR_UPDATE = "The document path provided in the update expression is invalid for update"


def get(item: Document, path: Path) -> Any | None:
    """The value at ``path``, or None if the path leads nowhere (missing, or through a
    scalar)."""
    first, *rest = path.parts
    value = item.get(first) if isinstance(first, str) else None
    for part in rest:
        if value is None:
            return None
        value = _child(value, part)
    return value


def _child(value: Document, part: PathPart) -> Any | None:
    if isinstance(part, int):
        elements = value.get("L")
        return elements[part] if elements is not None and part < len(elements) else None
    members = value.get("M")
    return members.get(part) if members is not None else None


def _parent(item: Document, path: Path) -> Document:
    """The container ``path``'s last part lives in, which must exist and be of the right kind
    (a map for a name, a list for an index): DynamoDB creates no intermediate container."""
    if len(path.parts) == 1:
        return item
    parent = get(item, Path(path.parts[:-1]))
    kind = "L" if isinstance(path.parts[-1], int) else "M"
    if parent is None or kind not in parent:
        raise ExpressionError(INVALID_FOR_UPDATE)
    container: Document = parent
    return container


def put(item: Document, path: Path, value: Any) -> None:
    """Set ``path`` to ``value``; an index past a list's end appends (as DynamoDB does)."""
    last = path.parts[-1]
    parent = _parent(item, path)
    if parent is item:
        item[str(last)] = value
    elif isinstance(last, int):
        elements = parent["L"]
        if last < len(elements):
            elements[last] = value
        else:
            elements.append(value)
    else:
        parent["M"][last] = value


def remove(item: Document, path: Path) -> None:
    """Remove ``path``: nothing happens if it is absent from an existing container; a list
    element's removal shifts the ones after it."""
    last = path.parts[-1]
    parent = _parent(item, path)
    if parent is item:
        item.pop(str(last), None)
    elif isinstance(last, int):
        elements = parent["L"]
        if last < len(elements):
            del elements[last]
    else:
        parent["M"].pop(last, None)


def removal_order(paths: tuple[Path, ...]) -> list[Path]:
    """Paths ordered so that removing them one after the other removes what each named in
    the original item: within one list, higher indexes first."""

    def key(path: Path) -> tuple[tuple[int, int | str], ...]:
        return tuple((1, p) if isinstance(p, int) else (0, p) for p in path.parts)

    return sorted(paths, key=key, reverse=True)


def project(item: Document, paths: tuple[Path, ...]) -> Document:
    """The parts of ``item`` that ``paths`` name, in their places (ProjectionExpression):
    maps keep the named keys, lists the named elements in index order; absent paths are left
    out."""
    tree: dict[PathPart, Any] = {}
    for path in paths:
        value = get(item, path)
        if value is None:
            continue
        node = tree
        original: Any = None
        for depth, part in enumerate(path.parts[:-1]):
            original = item.get(str(part)) if depth == 0 else _child(original, part)
            node = node.setdefault(part, {"kind": "L" if "L" in original else "M", "sub": {}})[
                "sub"
            ]
        node[path.parts[-1]] = {"leaf": value}
    return {str(name): _build(node) for name, node in tree.items()}


def _build(node: dict[str, Any]) -> Any:
    if "leaf" in node:
        return node["leaf"]
    sub = node["sub"]
    if node["kind"] == "L":
        return {"L": [_build(sub[i]) for i in sorted(sub)]}
    return {"M": {name: _build(child) for name, child in sub.items()}}

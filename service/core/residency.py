"""Residency filters and redaction: what each region may hold of a version. Pure.

Two rules, configured per table (service/config.py, ``[[filters]]`` and ``[[redactions]]``):

* a **filter** keeps an item whose data matches it (``residency = "EU"``) inside its regions:
  every other region, except the one whose write the version is, holds a *withheld marker*
  in its place (the keys and the version's metadata, read as deleted, never collected);
* a **redaction** keeps some attributes out of some regions (*non-holders*). The redacted
  attributes have their own last-writer-wins register (`Register`: the HLC and write id of the
  write in a holding region that set them, or of a delete anywhere, which empties them), kept
  beside the version's causal metadata and joined on every delivery, so a write made where
  they are not held never touches them (docs/design.md, "Residency filters and redaction").

:func:`project` is what a destination receives of a version, :func:`decide_for` the apply
decision under these rules (the pipeline's, so the consumer's, the Lambda handler's and the
model's, and verify --repair's), :func:`main_view` the version without its redacted
attributes, which every region orders the same way. The argument is in docs/design.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from service.core.apply import Annotate, Decision, Defer, Skip, Write, decide, precondition_for
from service.core.residency_rules import (
    Filter,
    Register,
    Residency,
    join_registers,
    register_of,
    register_stamp,
    residency_of,
)
from service.core.stored import Raw, Settings, Stamped, Stored, checked_digest
from service.core.version import Meta, Version, actor_region

# -- projections ---------------------------------------------------------------------------


def _with_register(version: Version, register: Register | None, *, residency: Residency) -> Version:
    data = {k: v for k, v in version.data.items() if k not in residency.redacted}
    stamp = None
    if register is not None:
        data.update(register.values)
        stamp = (register.at, register.write_id, checked_digest(register.values))
    meta = replace(version.meta, redacted=stamp, digest=checked_digest(data))
    return Version(data=data, meta=meta)


def withheld(version: Version, *, settings: Settings) -> Version:
    """The marker a region outside a filter holds in the place of ``version``: its keys and
    metadata, deleted (applications read no item), never collected."""
    keys = settings.keys_of(version.data)
    meta = replace(
        version.meta,
        deleted=True,
        withheld=True,
        redacted=None,
        fields=None,
        digest=checked_digest(keys),
    )
    return Version(data=keys, meta=meta)


def project(version: Version, *, destination: str, settings: Settings) -> Version:
    """What ``destination`` receives of ``version``.

    * Outside the regions of the filter the version's data matches, and not the region whose
      write it is: the withheld marker (`withheld`).
    * Where the redacted attributes are not held: the version without them or their register.
    * Where they are held: the version with the register it carries (its values, and no value
      a write made where they are not held may have carried).

    >>> from resolvers import LastWriterWins
    >>> from service.core.version import Meta, VersionVector
    >>> eu = Filter("eu", "res", {"S": "EU"}, frozenset({"eu-west-1"}))
    >>> settings = Settings(regions=("eu-west-1", "us-east-1", "ap-east-1"),
    ...     key_attributes=("pk",), resolver=LastWriterWins(), residency=Residency((eu,)))
    >>> meta = Meta(VersionVector.of({"eu-west-1": 1}), "eu-west-1", "0" * 26, 1, "", 1)
    >>> v = Version({"pk": {"S": "a"}, "res": {"S": "EU"}}, meta)
    >>> project(v, destination="us-east-1", settings=settings).data
    {'pk': {'S': 'a'}}
    """
    residency = residency_of(settings)
    if residency is None:
        return version
    meta = version.meta
    if meta.withheld:
        return version
    rule = residency.filter_for(version.data)
    if (
        rule is not None
        and destination not in rule.regions
        and actor_region(meta.actor) != destination
    ):
        return withheld(version, settings=settings)
    if not residency.redacted:
        return version
    register = None
    if residency.holds(destination) and (
        meta.redacted is not None or meta.deleted or residency.holds(actor_region(meta.actor))
    ):
        # NOTE: a put made where the attributes are not held carries none (even a value an
        # application wrote there raw): it must not touch them where they are held.
        register = register_of(version, settings=settings)
    return _with_register(version, register, residency=residency)


def identity(meta: Meta) -> tuple[object, ...]:
    """A version's identity, whatever a region holds of it (its data, its register, or a
    withheld marker in its place)."""
    return (meta.vv, meta.actor, meta.write_id, meta.hlc, meta.count)


def main_view(version: Version, *, settings: Settings) -> Version:
    """``version`` without its redacted attributes and register (what every region orders)."""
    residency = residency_of(settings)
    if residency is None or not residency.redacted:
        return version
    return _with_register(version, None, residency=residency)


def with_register(version: Version, register: Register | None, *, settings: Settings) -> Version:
    """``version`` holding ``register``'s redacted values and stamp (none: neither)."""
    residency = residency_of(settings)
    if residency is None:
        return version
    return _with_register(version, register, residency=residency)


def _main(stored: Stored, residency: Residency) -> Stored:
    """The item without its redacted attributes and register: what the apply decision of
    the version's own order sees (registers are joined apart, `decide_for`)."""
    if not residency.redacted:
        return stored
    match stored:
        case Stamped(version=v, meta_attr=attr):
            return Stamped(_with_register(v, None, residency=residency), attr)
        case Raw(data=data, copied=copied, meta_attr=attr):
            kept = {k: x for k, x in data.items() if k not in residency.redacted}
            return Raw(kept, copied, attr)
    return stored


def decide_for(
    current: Stored,
    incoming: Version,
    *,
    destination: str,
    settings: Settings,
    here: Literal["adoption", "restore"] | None = None,
) -> Decision:
    """`decide` under residency rules, at ``destination``.

    The version's order is decided by `decide` on both sides without the redacted attributes
    (on what ``destination`` receives of ``incoming``: `project`); a region holding the same
    version in another form (a marker) skips it as a duplicate. Where the attributes are held,
    the register is the join of the current item's and the incoming one's, written with the
    result, or alone when `decide` skips (a stale version may carry the later register). Last,
    the result is projected for ``destination``. Without rules: exactly `decide`.
    """
    residency = residency_of(settings)
    if residency is None:
        return decide(current, incoming, settings=settings, here=here)
    arriving = project(incoming, destination=destination, settings=settings)
    decision: Decision
    if isinstance(current, Stamped) and identity(current.version.meta) == identity(arriving.meta):
        # NOTE: the same version, whatever this region holds of it (a marker, or the data
        # before a rule changed): never a merge of a version with itself.
        decision = Skip("duplicate")
    else:
        decision = decide(
            _main(current, residency),
            _with_register(arriving, None, residency=residency) if residency.redacted else arriving,
            settings=settings,
            here=here,
        )
    holds = residency.holds(destination)
    mine = current.version if isinstance(current, Stamped) else None
    before = register_of(mine, settings=settings) if holds and mine is not None else None
    joined = join_registers(before, register_of(arriving, settings=settings)) if holds else None
    match decision:
        case Write(version=built, precondition=pre, conflict=conflict):
            # NOTE: a version `decide` built (a merge, an adoption's successor) was built
            # without the redacted attributes and sets none: it carries the join.
            if holds and not built.meta.withheld:
                built = _with_register(built, joined, residency=residency)
            elif residency.redacted:
                built = _with_register(built, None, residency=residency)
            result = project(built, destination=destination, settings=settings)
            return Write(result, pre, conflict)
        case Skip():
            if mine is not None and holds and not mine.meta.withheld and joined != before:
                main = _main(current, residency)
                assert isinstance(main, Stamped)
                updated = _with_register(main.version, joined, residency=residency)
                return Write(updated, precondition_for(current))
            return decision
        case Annotate() | Defer():
            return decision
    raise AssertionError(decision)


__all__ = [
    "Filter",
    "Register",
    "Residency",
    "decide_for",
    "identity",
    "join_registers",
    "main_view",
    "project",
    "register_of",
    "register_stamp",
    "residency_of",
    "with_register",
    "withheld",
]

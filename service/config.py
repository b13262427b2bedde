"""``georep.toml``: one pydantic model, validated at the edge, turned into core Settings.

Minimal form::

    [table]
    name = "orders"
    partition_key = "pk"
    resolver = "lww"

    [[regions]]
    name = "eu-west-1"

    [[regions]]
    name = "us-east-1"
    endpoint_url = "http://127.0.0.1:8000"   # optional: an emulator instead of AWS

Several tables, each with its own keys and resolver, in place of ``[table]``::

    [[tables]]
    name = "orders"
    partition_key = "pk"
    sort_key = "sk"
    name_in = { "us-east-1" = "orders-us" }   # its name in a region, where it differs

    [[tables]]
    name = "counters"
    partition_key = "id"
    partition_key_type = "N"
    resolver = "version-counter"
    resolver_options = { attribute = "version" }

The engines work on one table: ``config.for_table(name)`` is the configuration scoped to one of
them (a ``[table]`` form), ``config.tables`` lists them all, and ``config.table`` is the one
table of a configuration that has one (a ConfigError naming the tables otherwise).

Invalid configuration is refused with one clear message naming the field and the fix.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from resolvers.registry import check_name, check_options
from service.core.residency_rules import Filter, Residency
from service.core.schema import Keys
from service.core.stored import Settings
from service.core.version import RESERVED
from service.errors import GeorepError, RuleError, UnknownRegionError


class ConfigError(GeorepError):
    """The configuration is invalid; the message says which field and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WhenConfig(_Strict):
    """``when = { attribute = "residency", equals = "EU" }``: an item matches if its
    attribute holds that string, number or boolean."""

    attribute: str = Field(min_length=1)
    equals: StrictStr | StrictBool | StrictInt | StrictFloat

    def value(self) -> dict[str, Any]:
        """``equals`` as a DynamoDB attribute value."""
        if isinstance(self.equals, bool):
            return {"BOOL": self.equals}
        if isinstance(self.equals, str):
            return {"S": self.equals}
        return {"N": str(self.equals)}


class FilterConfig(_Strict):
    """``[[filters]]``: items matching ``when`` replicate only among ``regions`` (and stay in
    the region that wrote them)."""

    name: str = Field(min_length=1)
    when: WhenConfig
    regions: list[str] = Field(min_length=1)


class RedactionConfig(_Strict):
    """``[[redactions]]``: ``regions`` never receive ``attributes``."""

    attributes: list[str] = Field(min_length=1)
    regions: list[str] = Field(min_length=1)


TableName = Annotated[str, Field(min_length=3, max_length=255, pattern=r"^[a-zA-Z0-9_.-]+$")]


class TableConfig(_Strict):
    name: TableName
    partition_key: str = Field(min_length=1)
    sort_key: str | None = None
    partition_key_type: Literal["S", "N", "B"] = "S"
    sort_key_type: Literal["S", "N", "B"] = "S"
    resolver: str = "lww"
    # Options for the resolver: ``attribute`` (version-counter), ``rule`` and ``unsafe`` (rules).
    resolver_options: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    # Must exceed the longest replication delay plus the 24 h stream retention.
    tombstone_horizon_hours: float = Field(default=168.0, gt=24.0)
    ttl_live_policy: Literal["delete", "ignore"] = "delete"
    # Residency (docs/design.md, "Residency filters and redaction"); the regions they name are
    # checked against [[regions]] by the Config (`check_residency`).
    filters: list[FilterConfig] = Field(default_factory=list)
    redactions: list[RedactionConfig] = Field(default_factory=list)
    # The table's name in some regions, where it differs from ``name`` (region -> name). The
    # single form may say the same with ``[[regions]] table``.
    name_in: dict[str, TableName] = Field(default_factory=dict)

    @field_validator("sort_key")
    @classmethod
    def _distinct_keys(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == info.data.get("partition_key"):
            raise ValueError("sort_key must differ from partition_key")
        return value

    @field_validator("resolver")
    @classmethod
    def _known_resolver(cls, value: str) -> str:
        try:
            check_name(value)
        except RuleError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("resolver_options")
    @classmethod
    def _resolver_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        resolver = info.data.get("resolver")
        if resolver is None:  # refused above already
            return value
        try:
            check_options(resolver, value)
        except RuleError as error:
            raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _residency_rules(self) -> TableConfig:
        if not (self.filters or self.redactions):
            return self
        keys = {self.partition_key, self.sort_key} - {None}
        redacted = {a for r in self.redactions for a in r.attributes}
        for name in sorted(redacted):
            if name in keys:
                raise ValueError(
                    f"[[redactions]] attribute {name!r} is a key attribute: every region needs "
                    "the keys, redact another attribute"
                )
            if name in RESERVED:
                raise ValueError(
                    f"[[redactions]] attribute {name!r} is georep's own metadata: every region "
                    "needs it, redact an attribute of your items"
                )
        if len({frozenset(r.regions) for r in self.redactions}) > 1:
            raise ValueError(
                "every [[redactions]] entry must name the same regions (georep keeps one "
                "register for all redacted attributes): list them all in each entry"
            )
        names = [f.name for f in self.filters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"[[filters]] name(s) {twice} used twice: give each its own name")
        for rule in self.filters:
            if rule.when.attribute in redacted:
                raise ValueError(
                    f"[[filters]] {rule.name}: attribute {rule.when.attribute!r} is redacted, "
                    "so some regions could not tell whether an item matches: filter on an "
                    "attribute every region holds"
                )
        # NOTE: a region outside a filter cannot merge data it never holds; the resolvers
        # that pick one whole version by its metadata can be settled there (docs/design.md).
        if self.resolver == "rules":
            raise ValueError(
                "[[filters]] and [[redactions]] need resolver 'lww' or 'version-counter': a "
                "merge rule combines data that some regions never hold (docs/design.md, "
                "Residency filters and redaction)"
            )
        counter = self.resolver_options.get("attribute")
        if counter is not None and self.filters:
            raise ValueError(
                "[[filters]] need version-counter without option attribute (the update count "
                "decides): a region outside a filter does not hold the counter attribute"
            )
        if counter is not None and counter in redacted:
            raise ValueError(
                f"version-counter attribute {counter!r} is redacted: the counter must be held "
                "by every region"
            )
        return self

    def residency(self) -> Residency | None:
        """The core's view of ``[[filters]]`` and ``[[redactions]]`` (None: neither)."""
        if not (self.filters or self.redactions):
            return None
        return Residency(
            filters=tuple(
                Filter(f.name, f.when.attribute, f.when.value(), frozenset(f.regions))
                for f in self.filters
            ),
            redacted=frozenset(a for r in self.redactions for a in r.attributes),
            non_holders=frozenset(x for r in self.redactions for x in r.regions),
        )


def check_residency(table: TableConfig, regions: tuple[str, ...]) -> None:
    """The regions a table's filters and redactions name are configured ones, and a region a
    filter keeps items out of holds no redacted attribute (raises ValueError)."""
    where = f"[table] {table.name}"
    named: list[tuple[str, list[str]]] = [
        (f"[[filters]] {f.name}", f.regions) for f in table.filters
    ] + [(f"[[redactions]] #{i + 1}", r.regions) for i, r in enumerate(table.redactions)]
    for label, listed in named:
        for region in listed:
            if region not in regions:
                hint = _did_you_mean(region, regions)
                raise ValueError(
                    f"{where}: {label} names region {region}, which is not in "
                    f"[[regions]]{hint} (configured: {', '.join(regions)})"
                )
    non_holders = {x for r in table.redactions for x in r.regions}
    if table.redactions and non_holders >= set(regions):
        raise ValueError(
            f"{where}: [[redactions]] name every region, so no region would hold "
            f"{sorted({a for r in table.redactions for a in r.attributes})}: leave one out"
        )
    for rule in table.filters:
        outside = sorted(set(regions) - set(rule.regions) - non_holders)
        if table.redactions and outside:
            raise ValueError(
                f"{where}: [[filters]] {rule.name} keeps its items out of {', '.join(outside)}, "
                "which hold the redacted attributes: add them to [[redactions]] regions (a "
                "region outside a filter cannot learn redacted values written while an item "
                "matched it, docs/design.md)"
            )


class RegionConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9-]+$")
    endpoint_url: str | None = None
    # The table's name in this region, if it differs from [table].name (the single form only:
    # with [[tables]], each table's ``name_in``).
    table: TableName | None = None


class ReplicationConfig(_Strict):
    batch_size: int = Field(default=100, ge=1, le=1000)
    # Writes in flight per destination region: a window bounded by records and bytes, not by
    # a thread per record (issue 9). 64 hides a 100 ms one-way distance at ~300 writes/s.
    write_concurrency: int = Field(default=64, ge=1, le=256)
    # Records read but not yet applied everywhere, over all shards: bounds memory, and how far
    # a fast destination runs ahead of a slow one.
    window_records: int = Field(default=2000, ge=1, le=100_000)
    window_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # How often each shard's checkpoint is saved while records keep being applied (a crash
    # replays at most this much; a finished shard or a stop is saved at once).
    checkpoint_every_seconds: float = Field(default=1.0, ge=0, le=60)
    # Consumers of one region share its shards through leases: a lease not renewed for this
    # long (its consumer died) is taken over by another (service/engine/leases.py).
    lease_seconds: float = Field(default=10.0, ge=1, le=300)
    checkpoint_table: str = "georep-checkpoints"
    dead_letter_table: str = "georep-dead-letters"
    # Deletes leave the user's table: a delete's tombstone lives in this table of each region
    # (the tombstone store, docs/design.md), collected by TTL after the horizon. On by default;
    # off by default where residency rules are configured, which the store does not carry yet
    # (`Config._store_default`, `_tombstone_store_where_proven`).
    tombstone_store: bool = True
    tombstone_table: str = Field(
        default="georep-tombstones", min_length=3, max_length=255, pattern=r"^[a-zA-Z0-9_.-]+$"
    )
    # Every merge of concurrent versions is logged here (service/adapters/conflicts.py), in the
    # consumer's own region; empty turns the log off (the `conflicts` metric still counts).
    conflict_table: str | None = Field(
        default="georep-conflicts", max_length=255, pattern=r"^([a-zA-Z0-9_.-]{3,255})?$"
    )
    # Conflict log entries expire (DynamoDB TTL) this many days after they were logged.
    conflict_retention_days: int = Field(default=30, ge=1, le=3650)
    idle_backoff_seconds: float = Field(default=0.05, gt=0, le=10)
    max_idle_backoff_seconds: float = Field(default=0.25, gt=0, le=60)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    @field_validator("conflict_table")
    @classmethod
    def _empty_turns_the_log_off(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _backoff_within_maximum(self) -> ReplicationConfig:
        if self.idle_backoff_seconds > self.max_idle_backoff_seconds:
            raise ValueError(
                f"idle_backoff_seconds ({self.idle_backoff_seconds}) is above "
                f"max_idle_backoff_seconds ({self.max_idle_backoff_seconds}): lower the first "
                "or raise the second (the idle wait doubles from the first up to the second)"
            )
        return self


def _has_residency_rules(doc: dict[str, Any]) -> bool:
    """Whether a configuration document, before validation, names any residency rule."""
    tables: list[Any] = [doc, doc.get("table")]
    many = doc.get("tables")
    if isinstance(many, list):
        tables.extend(many)
    return any(
        isinstance(table, dict) and (table.get("filters") or table.get("redactions"))
        for table in tables
    )


class Config(_Strict):
    # Exactly one of the two: ``[table]`` (one table) or ``[[tables]]`` (several). Read them
    # through ``tables``, ``table`` and ``for_table``.
    single_table: TableConfig | None = Field(default=None, alias="table")
    many_tables: list[TableConfig] | None = Field(default=None, alias="tables", min_length=1)
    regions: list[RegionConfig] = Field(min_length=2)
    replication: ReplicationConfig = Field(default_factory=ReplicationConfig)

    @model_validator(mode="before")
    @classmethod
    def _top_level_residency(cls, doc: Any) -> Any:
        """``[[filters]]`` and ``[[redactions]]`` at the top level belong to ``[table]``."""
        if not isinstance(doc, dict) or not ({"filters", "redactions"} & doc.keys()):
            return doc
        doc = dict(doc)
        table = doc.get("table")
        if "tables" in doc and table is None:
            raise ValueError(
                "with [[tables]], give each table its own filters and redactions "
                "([[tables.filters]], [[tables.redactions]]), not top-level ones"
            )
        if not isinstance(table, dict):
            return doc  # [table] is missing or malformed: pydantic says so
        table = dict(table)
        for name in ("filters", "redactions"):
            if name in doc:
                if name in table:
                    raise ValueError(
                        f"[[{name}]] is given both at the top level and in [table]: keep one"
                    )
                table[name] = doc.pop(name)
        doc["table"] = table
        return doc

    @model_validator(mode="after")
    def _unique_regions(self) -> Config:
        names = [r.name for r in self.regions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"region(s) {duplicates} listed twice in [[regions]]")
        tables = self.many_tables or ([self.single_table] if self.single_table else [])
        for table in tables:
            check_residency(table, self.region_names)
        return self

    @model_validator(mode="before")
    @classmethod
    def _store_default(cls, doc: Any) -> Any:
        """The tombstone store is on unless the file says otherwise, except under residency
        rules (top-level, ``[table]``'s or any ``[[tables]]``'s), which it does not carry yet:
        there it defaults to off (`georep run` says so at start: `store_off_for_residency`)."""
        if not isinstance(doc, dict):
            return doc
        replication = doc.get("replication", {})
        if not isinstance(replication, dict) or "tombstone_store" in replication:
            return doc
        if not _has_residency_rules(doc):
            return doc
        return {**doc, "replication": {**replication, "tombstone_store": False}}

    @property
    def store_off_for_residency(self) -> list[str]:
        """The tables whose residency rules keep the tombstone store off (empty when it is on,
        or off for no such reason): ``georep run`` says so once at start."""
        if self.replication.tombstone_store:
            return []
        return [t.name for t in self.tables if t.filters or t.redactions]

    @model_validator(mode="after")
    def _tombstone_store_where_proven(self) -> Config:
        """The tombstone store is proven (tests/property/test_store_convergence.py) under every
        resolver family, not yet with residency rules, whose markers the store does not hold
        (docs/decisions.md, "The tombstone store ships without residency rules first").
        Refused at load, so every command says so first."""
        if not self.replication.tombstone_store:
            return self
        tables = self.many_tables or ([self.single_table] if self.single_table else [])
        for table in tables:
            if table.filters or table.redactions:
                raise ValueError(
                    f"table {table.name}: [replication] tombstone_store is not supported with "
                    "residency rules ([[filters]], [[redactions]]) yet: set tombstone_store "
                    "= false"
                )
        return self

    @model_validator(mode="after")
    def _one_form_of_tables(self) -> Config:
        if (self.single_table is None) == (self.many_tables is None):
            raise ValueError(
                "give either [table] (one table) or [[tables]] (several), not both"
                if self.single_table is not None
                else "no table: add a [table] section (or [[tables]], one per table)"
            )
        if self.many_tables is not None:
            overridden = [r.name for r in self.regions if r.table is not None]
            if overridden:
                raise ValueError(
                    f"[[regions]] table is for the single [table] form (set in {overridden}); "
                    'with [[tables]], give each table its own name_in = { "REGION" = "NAME" }'
                )
            names = [t.name for t in self.many_tables]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"table(s) {duplicates} listed twice in [[tables]]")
        configured = set(self.region_names)
        for table in self.tables:
            unknown = sorted(set(table.name_in) - configured)
            if unknown:
                raise ValueError(
                    f"table {table.name}: name_in names region(s) {unknown} that are not in "
                    f"[[regions]] ({', '.join(self.region_names)})"
                )
            for region in self.regions:
                given = table.name_in.get(region.name)
                if given is not None and region.table is not None and given != region.table:
                    raise ValueError(
                        f"table {table.name} in {region.name}: name_in says {given!r}, "
                        f"[[regions]] table says {region.table!r}; keep one of the two"
                    )
        for name in self.region_names:
            physical = [self._physical(t, name) for t in self.tables]
            shared = sorted({n for n in physical if physical.count(n) > 1})
            if shared:
                raise ValueError(
                    f"in {name}, several tables are named {shared}: each configured table "
                    "needs its own table in every region (name_in)"
                )
        return self

    # -- tables --------------------------------------------------------------------------------

    @property
    def tables(self) -> tuple[TableConfig, ...]:
        """Every configured table, in the order of the file (one for the ``[table]`` form)."""
        if self.many_tables is not None:
            return tuple(self.many_tables)
        assert self.single_table is not None  # the validator makes sure of one form
        return (self.single_table,)

    @property
    def table_names(self) -> tuple[str, ...]:
        """The configured tables' names (``[table] name`` / ``[[tables]] name``)."""
        return tuple(t.name for t in self.tables)

    @property
    def table(self) -> TableConfig:
        """The one table of this configuration. With several (``[[tables]]``, not scoped by
        :meth:`for_table`), a ConfigError that says to pick one: code that forgot to scope
        must fail loudly, never serve the first table by accident."""
        tables = self.tables
        if len(tables) != 1:
            raise ConfigError(
                f"georep.toml configures {len(tables)} tables ({', '.join(self.table_names)}): "
                "say which one with --table NAME"
            )
        return tables[0]

    def for_table(self, name: str | None = None) -> Config:
        """This configuration scoped to the table ``name`` (a ``[table]`` form that the engines
        take as they always did); ``None`` is the one table there is. ConfigError for a name
        not configured, or ``None`` with several tables.

        >>> config.for_table("orders").table.name  # doctest: +SKIP
        'orders'
        """
        if name is None:
            table = self.table  # ConfigError with several
        else:
            found = [t for t in self.tables if t.name == name]
            if not found:
                hint = _did_you_mean(name, self.table_names)
                raise ConfigError(
                    f"table {name!r} is not configured in georep.toml{hint} "
                    f"(configured: {', '.join(self.table_names)})"
                )
            table = found[0]
        if self.single_table is not None:
            return self
        # NOTE: model_construct: validated already, and a scoped view must stay cheap (the
        # Lambda handler and `georep run` build one per table).
        return Config.model_construct(
            single_table=table, many_tables=None, regions=self.regions, replication=self.replication
        )

    def scoped(self) -> tuple[Config, ...]:
        """One configuration per table (:meth:`for_table` of each)."""
        return tuple(self.for_table(name) for name in self.table_names)

    def _physical(self, table: TableConfig, region: str) -> str:
        return table.name_in.get(region) or self.region(region).table or table.name

    # -- derived ------------------------------------------------------------------------------

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.regions)

    @property
    def key_attributes(self) -> tuple[str, ...]:
        keys = (self.table.partition_key,)
        return keys + ((self.table.sort_key,) if self.table.sort_key else ())

    def key_schema(self) -> Keys:
        """The key schema every replica table must have."""
        return Keys(
            partition_key=self.table.partition_key,
            partition_key_type=self.table.partition_key_type,
            sort_key=self.table.sort_key,
            sort_key_type=self.table.sort_key_type,
        )

    def region(self, name: str) -> RegionConfig:
        for region in self.regions:
            if region.name == name:
                return region
        hint = _did_you_mean(name, self.region_names)
        raise UnknownRegionError(
            f"region {name} is not configured in georep.toml{hint} "
            f"(configured: {', '.join(self.region_names)})"
        )

    def table_name(self, region: str) -> str:
        """The table's name in ``region`` (``name_in``, ``[[regions]] table``, else its name)."""
        return self._physical(self.table, region)

    def table_for(self, region: str, physical: str) -> TableConfig | None:
        """The configured table whose name in ``region`` is ``physical``, if any."""
        for table in self.tables:
            if self._physical(table, region) == physical:
                return table
        return None

    @property
    def horizon_ms(self) -> int:
        return int(self.table.tombstone_horizon_hours * 3600 * 1000)

    def settings(self, *, check_laws: bool = False) -> Settings:
        """The core's view, with the configured resolver.

        Cheap, and it never imports Hypothesis: this runs on every start (each Lambda cold
        start, each ``GeorepTable``). ``check_laws=True`` also checks a user rule's laws
        (about 1 s; raises LawViolation unless the rule is marked ``unsafe``): do it once, at
        configuration time (``georep check-rule``; ``georep run`` does it when it starts).
        """
        from resolvers import build

        try:
            resolver = build(
                self.table.resolver, check_laws=check_laws, **self.table.resolver_options
            )
        except GeorepError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"table {self.table.name}: resolver {self.table.resolver!r}: {exc}"
            ) from exc
        return Settings(
            regions=self.region_names,
            key_attributes=self.key_attributes,
            resolver=resolver,
            horizon_ms=self.horizon_ms,
            ttl_live_policy=self.table.ttl_live_policy,
            residency=self.table.residency(),
            tombstone_store=self.replication.tombstone_store,
        )


def parse_config(doc: dict[str, Any], *, source: str = "georep.toml") -> Config:
    """Validate a parsed TOML document; one ConfigError with every problem, field by field."""
    try:
        return Config.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {_message(err)}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source} is invalid: {problems}") from None


def _message(error: Any) -> str:
    """Pydantic's message in georep's words: our own validators' text without its "Value
    error, " prefix; a misspelled setting with the one it resembles."""
    kind = error.get("type")
    if kind == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    if kind == "extra_forbidden":
        *parent, name = error["loc"]
        section = next((p for p in reversed(parent) if isinstance(p, str) and p in _SECTIONS), "")
        known = _SECTIONS.get(section, Config)
        hint = _did_you_mean(str(name), _setting_names(known))
        return f"not a setting georep knows{hint or ' (docs: README, Configure and run)'}"
    if kind == "missing":
        return "is required"
    return str(error["msg"])


def _setting_names(model: type[BaseModel]) -> tuple[str, ...]:
    """The names a section's settings are written with in georep.toml (aliases included)."""
    return tuple(field.alias or name for name, field in model.model_fields.items())


_SECTIONS: dict[str, type[BaseModel]] = {
    "table": TableConfig,
    "filters": FilterConfig,
    "redactions": RedactionConfig,
    "when": WhenConfig,
    "tables": TableConfig,
    "regions": RegionConfig,
    "replication": ReplicationConfig,
}


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    """``": did you mean partition_key?"`` for a near miss, else nothing."""
    from difflib import get_close_matches

    close = get_close_matches(word, choices, n=1, cutoff=0.6)
    return f": did you mean {close[0]}?" if close else ""


def load_config(path: str | Path) -> Config:
    """Read and validate ``georep.toml`` (or another path)."""
    path = Path(path)
    try:
        # NOTE: bytes, decoded here: TOML is UTF-8 by definition, whatever the locale says.
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (pass the path of your georep.toml with -c/--config or "
            "GEOREP_CONFIG)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path} is a folder, not a file: pass the path of the georep.toml file itself"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): TOML files must be UTF-8, save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(doc, source=str(path))

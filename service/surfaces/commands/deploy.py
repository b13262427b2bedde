"""``georep deploy render -c georep.toml --account-id N --out DIR``: one parameter file per
region for ``deploy/template.yaml`` (one stack per region).

Each ``DIR/<region>.json`` is the stack's parameters in CloudFormation's own format
(``[{"ParameterKey": ..., "ParameterValue": ...}]``): the region's table name and key schema,
the ARN of every other region's replica table (the function writes them, and IAM allows those
exact tables only), the dead-letter and conflict tables and the batch size. ``--existing
REGION=STREAM_ARN`` says a region's table already exists (the stack then adopts it instead of
creating it); its stream ARN is the one the event source mapping reads.

With several tables (``[[tables]]``) it also writes ``DIR/template.json``: deploy/template.yaml
with its per-table part (the replica table, the event source mapping, the parameters, the
stream-detached alarm) once per table (service/surfaces/stack.py), one function serving every
table's stream; the parameter files then name each table's values with its suffix
(``TableNameOrders``...), and ``--existing`` is given once per existing table (the ARN names
the table). Exit codes: 0 written, 2 a configuration or usage problem (a region with
``endpoint_url``: the stacks are for AWS, not an emulator; no conflict table: the stack logs
conflicts).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.surfaces.commands._common import (
    GLOBAL_OPTIONS,
    OK,
    USAGE,
    HelpFormatter,
    add_json,
    config_of,
    examples,
    report,
)

if TYPE_CHECKING:
    from service.config import Config

NAME = "deploy"
HELP = "write each region's stack parameters for deploy/template.yaml"
EXAMPLES = (("georep deploy render --account-id 123456789012 --out params", "one file per region"),)

_ACCOUNT = re.compile(r"^[0-9]{12}$")
_STREAM_ARN = re.compile(
    r"^arn:aws[a-z-]*:dynamodb:([a-z0-9-]+):([0-9]{12}):table/([^/]+)/stream/.+$"
)


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    render = actions.add_parser(
        "render",
        help="one parameter file per region, from georep.toml",
        description="Write DIR/<region>.json, each region's stack parameters for "
        "deploy/template.yaml in CloudFormation's format.",
        epilog=examples(*EXAMPLES),
        formatter_class=HelpFormatter,
        parents=[GLOBAL_OPTIONS],
    )
    render.add_argument("--out", required=True, type=Path, help="folder for <region>.json")
    render.add_argument(
        "--account-id", required=True, help="the AWS account of every region's table (12 digits)"
    )
    render.add_argument(
        "--existing",
        action="append",
        default=[],
        metavar="REGION=STREAM_ARN",
        help="that region's table exists: its latest stream ARN (repeatable; with several "
        "tables, once per existing table: the ARN says which)",
    )
    render.add_argument(
        "--template",
        type=Path,
        default=None,
        metavar="PATH",
        help="the one-table template to render for several tables (default: deploy/"
        "template.yaml of this source tree)",
    )
    add_json(render)


def partition(region: str) -> str:
    """The ARN partition of a region name.

    >>> partition("eu-west-1"), partition("cn-north-1"), partition("us-gov-west-1")
    ('aws', 'aws-cn', 'aws-us-gov')
    """
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def table_arn(config: Config, *, region: str, account_id: str) -> str:
    name = config.table_name(region)
    return f"arn:{partition(region)}:dynamodb:{region}:{account_id}:table/{name}"


def parameters(
    config: Config, *, region: str, account_id: str, stream_arn: str = ""
) -> dict[str, str]:
    """The stack parameters of ``region`` (see deploy/template.yaml's Parameters), for the
    one table ``config`` names."""
    table = config.table
    replication = config.replication
    store = replication.tombstone_table if replication.tombstone_store else None
    peers = [
        table_arn(config, region=other, account_id=account_id)
        for other in config.region_names
        if other != region
    ]
    return {
        "TableName": config.table_name(region),
        "PartitionKey": table.partition_key,
        "PartitionKeyType": table.partition_key_type,
        "SortKey": table.sort_key or "",
        "SortKeyType": table.sort_key_type,
        "ExistingStreamArn": stream_arn,
        "PeerTableArns": ",".join(peers),
        "DeadLetterTableName": config.replication.dead_letter_table,
        "ConflictTableName": config.replication.conflict_table or "",
        "TombstoneTableName": store or "",
        "PeerTombstoneTableArns": ",".join(
            f"arn:{partition(other)}:dynamodb:{other}:{account_id}:table/{store}"
            for other in config.region_names
            if store and other != region
        ),
        "BatchSize": str(config.replication.batch_size),
    }


def execute(args: argparse.Namespace) -> int:
    from service.surfaces.stack import PER_TABLE_PARAMETERS, StackError, suffixes

    config = config_of(args)
    problem = _problem(config, args)
    if problem is not None:
        print(f"georep: deploy render: {problem}", file=sys.stderr)
        return USAGE
    many = len(config.tables) > 1
    template: dict[str, object] | None = None
    if many:
        try:
            template = _many_tables_template(config, args)
        except (OSError, StackError) as error:
            print(f"georep: deploy render: {error}", file=sys.stderr)
            return USAGE
    existing = _existing(config, args)
    ids = suffixes(config.table_names) if many else {config.table.name: ""}
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for region in config.region_names:
        values: dict[str, str] = {}
        for scoped in config.scoped():
            suffix = ids[scoped.table.name]
            one = parameters(
                scoped,
                region=region,
                account_id=args.account_id,
                stream_arn=existing.get((region, scoped.table.name), ""),
            )
            values |= {
                name + suffix if name in PER_TABLE_PARAMETERS and many else name: value
                for name, value in one.items()
            }
            created = "existing" if one["ExistingStreamArn"] else "created by the stack"
            rows.append((region, one["TableName"], created, str(args.out / f"{region}.json")))
        path = args.out / f"{region}.json"
        # An empty value is left out: the template's default ("") applies, and `sam deploy
        # --parameter-overrides` cannot take an empty Key=Value.
        document = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items() if v]
        path.write_text(json.dumps(document, indent=2) + "\n")
    summary = {"next": "sam deploy in each region (README, 'Deploying on AWS Lambda')"}
    if template is not None:
        stack = args.out / "template.json"
        stack.write_text(json.dumps(template, indent=1, sort_keys=True, default=str) + "\n")
        summary = {
            "template": str(stack),
            "next": f"sam deploy --template-file {stack} in each region (README, 'Many tables')",
        }
    report(
        args,
        title="stack parameters",
        columns=("region", "table", "table_is", "parameter_file"),
        rows=rows,
        summary=summary,
    )
    return OK


def _many_tables_template(config: Config, args: argparse.Namespace) -> dict[str, object]:
    """deploy/template.yaml's stack for every configured table, its CodeUri made relative to
    the folder it is written to (``sam deploy`` resolves it from the template's folder)."""
    import os

    import service
    from service.surfaces.stack import StackError, load_template, many_tables

    source = (
        args.template or Path(service.__file__).resolve().parents[1] / "deploy" / "template.yaml"
    )
    if not source.is_file():
        raise StackError(f"{source}: no such template (pass --template deploy/template.yaml)")
    stack = many_tables(load_template(source), config.table_names)
    function = stack["Resources"]["Replicator"]["Properties"]
    code = function.get("CodeUri")
    if isinstance(code, str) and "://" not in code:
        target = (source.parent / code).resolve()
        function["CodeUri"] = os.path.relpath(target, args.out.resolve())
    return stack


def _existing(config: Config, args: argparse.Namespace) -> dict[tuple[str, str], str]:
    """``--existing`` by (region, configured table): the ARN's table name says which."""
    found: dict[tuple[str, str], str] = {}
    for item in args.existing:
        region, _, arn = item.partition("=")
        match = _STREAM_ARN.match(arn)
        assert match is not None  # _problem checked
        table = config.table_for(region, match.group(3))
        assert table is not None
        found[(region, table.name)] = arn
    return found


def _problem(config: Config, args: argparse.Namespace) -> str | None:
    if not _ACCOUNT.match(args.account_id):
        return f"--account-id {args.account_id!r} is not a 12-digit AWS account id"
    if not config.replication.conflict_table:
        # NOTE: the stack always keeps a conflict log: the function's role may only hold
        # grants it uses (docs/decisions.md, "A conflict log, in each region's own table").
        return (
            "[replication] conflict_table is empty (conflict log off): the stack logs every "
            'conflict; name its table (default "georep-conflicts")'
        )
    emulated = [r.name for r in config.regions if r.endpoint_url]
    if emulated:
        return (
            f"region(s) {emulated} have endpoint_url set: the stacks run on AWS; deploy with a "
            "georep.toml without endpoint_url (the function's own copy must not have one)"
        )
    seen: set[tuple[str, str]] = set()
    for item in args.existing:
        region, _, arn = item.partition("=")
        if region not in config.region_names:
            return f"--existing {item!r}: {region!r} is not one of {list(config.region_names)}"
        match = _STREAM_ARN.match(arn)
        if match is None:
            return (
                f"--existing {item!r}: expected REGION=STREAM_ARN, the table's LatestStreamArn "
                "(aws dynamodb describe-table --query Table.LatestStreamArn)"
            )
        arn_region, arn_account, arn_table = match.groups()
        table = config.table_for(region, arn_table)
        named = config.table_name(region) if len(config.tables) == 1 else None
        expected = (region, args.account_id, arn_table if table else named)
        if (arn_region, arn_account, arn_table) != expected or table is None:
            names = [s.table_name(region) for s in config.scoped()]
            wanted = repr(names[0]) if len(names) == 1 else f"one of {names}"
            return (
                f"--existing {item!r}: the ARN names table {arn_table!r} in {arn_region} of "
                f"account {arn_account}; expected {wanted} in {region} of {args.account_id}"
            )
        if (region, table.name) in seen:
            return f"--existing: table {table.name!r} in region {region!r} given twice"
        seen.add((region, table.name))
    return None

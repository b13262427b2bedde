"""``georep deploy render -c georep.toml --account-id N --out DIR``: one parameter file per
region for ``deploy/template.yaml`` (one stack per region).

Each ``DIR/<region>.json`` is the stack's parameters in CloudFormation's own format
(``[{"ParameterKey": ..., "ParameterValue": ...}]``): the region's table name and key schema,
the ARN of every other region's replica table (the function writes them, and IAM allows those
exact tables only), the dead-letter and conflict tables and the batch size. ``--existing
REGION=STREAM_ARN`` says a region's table already exists (the stack then adopts it instead of
creating it); its stream ARN is the one the event source mapping reads. Exit codes: 0 written,
2 a configuration or usage problem (a region with ``endpoint_url``: the stacks are for AWS, not
an emulator; no conflict table: the stack logs conflicts).
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
        help="that region's table exists: its latest stream ARN (repeatable)",
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
    """The stack parameters of ``region`` (see deploy/template.yaml's Parameters)."""
    table = config.table
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
        "BatchSize": str(config.replication.batch_size),
    }


def execute(args: argparse.Namespace) -> int:
    config = config_of(args)
    problem = _problem(config, args)
    if problem is not None:
        print(f"georep: deploy render: {problem}", file=sys.stderr)
        return USAGE
    existing = dict(item.split("=", 1) for item in args.existing)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for region in config.region_names:
        values = parameters(
            config,
            region=region,
            account_id=args.account_id,
            stream_arn=existing.get(region, ""),
        )
        path = args.out / f"{region}.json"
        # An empty value is left out: the template's default ("") applies, and `sam deploy
        # --parameter-overrides` cannot take an empty Key=Value.
        document = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items() if v]
        path.write_text(json.dumps(document, indent=2) + "\n")
        created = "existing" if values["ExistingStreamArn"] else "created by the stack"
        rows.append((region, values["TableName"], created, str(path)))
    report(
        args,
        title="stack parameters",
        columns=("region", "table", "table_is", "parameter_file"),
        rows=rows,
        summary={"next": "sam deploy in each region (README, 'Deploying on AWS Lambda')"},
    )
    return OK


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
    seen: set[str] = set()
    for item in args.existing:
        region, _, arn = item.partition("=")
        if region not in config.region_names:
            return f"--existing {item!r}: {region!r} is not one of {list(config.region_names)}"
        if region in seen:
            return f"--existing: region {region!r} given twice"
        seen.add(region)
        match = _STREAM_ARN.match(arn)
        if match is None:
            return (
                f"--existing {item!r}: expected REGION=STREAM_ARN, the table's LatestStreamArn "
                "(aws dynamodb describe-table --query Table.LatestStreamArn)"
            )
        arn_region, arn_account, arn_table = match.groups()
        expected = (region, args.account_id, config.table_name(region))
        if (arn_region, arn_account, arn_table) != expected:
            return (
                f"--existing {item!r}: the ARN names table {arn_table!r} in {arn_region} of "
                f"account {arn_account}; expected {expected[2]!r} in {region} of {expected[1]}"
            )
    return None

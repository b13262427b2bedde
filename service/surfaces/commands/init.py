"""``georep init``: make every configured region's table (each of ``[[tables]]``) a replica. A
missing table is created; an existing one keeps its data, has its keys checked against the
configuration and gets what is off turned on (a NEW_AND_OLD_IMAGES stream, TTL on
``_georep_ttl``). georep's own
checkpoint, dead-letter and conflict tables are created in every region; with ``[replication]
tombstone_store = true`` the tombstone store too, and tombstone items written before it are
moved into it (``georep migrate-tombstones``). Idempotent.
(Production deploys with ``deploy/``; init is for development, emulators and onboarding.)"""

from __future__ import annotations

import argparse

from service.surfaces.commands._common import OK, PROBLEM, USAGE, add_json, config_of, report

NAME = "init"
HELP = "create or adopt every region's table (stream, TTL) and georep's own tables"
EXAMPLES = (
    ("georep init", "a row per region: created / stream enabled, TTL enabled / ready"),
    ("georep init -c staging.toml --json", "the same, machine-readable"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    add_json(parser)


def execute(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from service.adapters.backends import TableSetupError, onboard_table
    from service.adapters.checkpoints import DynamoCheckpointTable
    from service.adapters.deadletter import DynamoDeadLetters
    from service.adapters.dynamo import ensure_store_table
    from service.core.version import TTL_ATTR
    from service.engine.migrate import migration_for
    from service.engine.preflight import RegionError, probe
    from service.engine.wiring import clients_for, conflict_log_for, store_table_of

    config = config_of(args)
    probe(config, tables=False)  # every region answers, with credentials, before any change
    rows: list[tuple[str, str, str]] = []
    worst = OK
    clients = clients_for(config, "dynamodb")
    # Every configured table ([[tables]]) in every region; georep's own tables are shared.
    for scoped, (region, client) in (
        (s, pair) for s in config.scoped() for pair in clients.items()
    ):
        table = scoped.table_name(region)
        try:
            done = onboard_table(
                client, table_name=table, keys=scoped.key_schema(), ttl_attribute=TTL_ATTR
            )
            DynamoCheckpointTable(
                client, table_name=config.replication.checkpoint_table, replica_table=table
            ).ensure_table()
            DynamoDeadLetters(
                client, table_name=config.replication.dead_letter_table
            ).ensure_table()
            conflicts = conflict_log_for(config, client)
            if conflicts is not None:
                conflicts.ensure_table()
            store = store_table_of(config)
            if store is not None:
                ensure_store_table(client, table_name=store)
                # Tombstone items of earlier versions leave the table (idempotent: a rerun,
                # or a table without any, finds nothing to move).
                migrated = migration_for(scoped, region=region, client=client).run().tally
                if migrated.moved or migrated.already_moved:
                    done.append(
                        f"{migrated.moved + migrated.already_moved:,} tombstones moved to the store"
                    )
                if migrated.failed:
                    worst = max(worst, PROBLEM)
                    done.append(
                        f"{migrated.failed:,} tombstones not moved: run georep migrate-tombstones"
                    )
        except TableSetupError as error:
            rows.append((region, table, f"REFUSED: {error}"))
            worst = max(worst, USAGE)
            continue
        except (ClientError, BotoCoreError) as error:
            raise RegionError(
                error, region=region, table=table, endpoint=client.meta.endpoint_url
            ) from error
        rows.append((region, table, ", ".join(done) or "ready, unchanged"))
    report(
        args,
        title="georep init",
        columns=("region", "table", "result"),
        rows=rows,
        summary={
            "ready": sum(not r[2].startswith("REFUSED") for r in rows),
            "regions": len(config.region_names),
            "tables": list(config.table_names),
            "checkpoint_table": config.replication.checkpoint_table,
            "dead_letter_table": config.replication.dead_letter_table,
            "conflict_table": config.replication.conflict_table,
        },
    )
    return worst

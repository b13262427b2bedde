"""Adapters: one implementation per port of service/ports.py, the real one and the in-memory one
side by side, and the embedded backend the real ones talk to on a laptop.

=====================  ===============================  ===================================
port                   on DynamoDB (boto3)              in memory (property and unit tests)
=====================  ===============================  ===================================
a replica table        dynamo.DynamoTable               memory.MemoryTable (with its stream)
the stream             (the boto3 dynamodbstreams        streams_memory.MemoryStreams
                       client itself)
checkpoints, status    checkpoints.DynamoCheckpoint*    checkpoints.MemoryCheckpoint*
leases                 leases.DynamoLeaseTable          leases.MemoryLeaseTable
dead letters           deadletter.DynamoDeadLetters     deadletter.MemoryDeadLetters
conflict log           conflicts.DynamoConflicts        conflicts.MemoryConflicts
metrics                metrics.PrometheusMetrics        metrics.MemoryMetrics
=====================  ===============================  ===================================

Each in-memory adapter is checked against the real one by a differential test in
tests/integration. ``backends/`` starts the moto server (or names your endpoint).
Adapters import the core and the ports, never the engine or the surfaces.
"""

"""The engine: what drives the ports. The window of conditional writes (pipeline.py), the stream
reader (streams.py), the consumer loop (consumer.py) and its leases and heartbeat, and the
one-shot jobs (backfill, verify, status, replay, preflight). ``wiring.py`` builds each of them
from the configuration with boto3 clients. The engine imports the core, the ports and the
adapters, never the surfaces.
"""

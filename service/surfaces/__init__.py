"""Surfaces: what a person or AWS calls. The ``georep`` command line (cli.py and commands/), the
Lambda handler, the application SDK, the demo and the local runner. They wire the engine to
the outside and hold no replication logic of their own.
"""

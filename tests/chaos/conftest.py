"""The chaos suite: the engine of ``georep chaos`` (service/engine/chaos), driven by its command.

A short run is part of ``make test``; ``make chaos`` runs a long one (``CHAOS_DURATION``,
``CHAOS_SEED``). Every run prints its seed: ``georep chaos --seed N`` replays its schedule.
"""

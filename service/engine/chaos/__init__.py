"""``georep chaos``'s engine: the workload (writers with unique values), the fault proxy, the
consumer processes, and the runner that injects faults, waits for quiescence and hands what it
read to the pure accounting (``service.core.chaos``)."""

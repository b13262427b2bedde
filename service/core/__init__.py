"""The pure core of georep: no I/O, no clocks, no randomness (all injected)."""

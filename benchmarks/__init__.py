"""wsfleet benchmarks: micro-benchmarks of the hot path and the load generator."""

"""The load generator behind ``wsfleet bench``.

Lean picows clients in several worker processes drive wsfleet and its peers with the
same connections, channels and messages; the scenarios (idle, fan-out, latency,
connect, storm) measure the server process from outside (``/proc``) and report JSON,
markdown and PNG plots. See docs/benchmarks.md for what each figure means.
"""

"""The fleet lab: a real wsfleet fleet behind a real load balancer, driven and measured.

One command (``python -m lab``, or ``make lab``) starts a private ``redis-server``,
several ``wsfleet serve`` processes on it, an nginx (or HAProxy) in front of them
configured as a Kubernetes ingress would be, official ``centrifuge-python`` SDK
clients spread over worker processes, and a publisher with sequence numbers; it then
plays a scenario (a rolling restart, a scale-up, a killed node, a Redis restart, a
node at its connection cap) and reports what every client saw: what was lost,
duplicated or reordered, who was left disconnected, and how connections moved
between nodes.

The end-to-end tests (``tests/e2e``) are built on the same pieces. Nothing here is
mocked: every part is a real process on loopback.
"""

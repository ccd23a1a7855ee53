"""wsfleet: a real-time messaging server for Kubernetes fleets."""

__version__ = "0.1.0"

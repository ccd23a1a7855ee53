"""Peer servers the benchmark compares wsfleet with, and their installs."""

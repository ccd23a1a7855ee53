"""A minimal Django project: the Django Channels benchmark peer (run by ../channels_peer.py)."""

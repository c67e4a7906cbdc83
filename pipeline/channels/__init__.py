"""Channels hand one rendered message to a provider. See `base.py` for the interface."""

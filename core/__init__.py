"""Archivist core: the service layer. It never imports Qt (tests/test_architecture.py checks)."""

__version__ = "0.1.0"

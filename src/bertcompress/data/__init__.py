"""Packaged assets (download from PyPI, verify, cache) and task specifications."""

"""Nodes: servers registered, checked, provisioned and decommissioned; lab
nodes' machines on a Docker engine.

Its `Feature` is in `feature.py`; other contexts use only what this package exports."""

"""Settings: the daemon's knobs that operators change at run time, as events.

Its `Feature` is in `feature.py`; other contexts use only what this package exports."""

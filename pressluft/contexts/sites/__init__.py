"""Sites: WordPress sites and their environments (production, staging,
clones), built and removed on their node; magic login.

Its `Feature` is in `feature.py`; other contexts use only what this package exports."""

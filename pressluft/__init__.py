"""Pressluft: a self-hosted control plane for professional WordPress hosting."""

import sys
import warnings

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]

# Our own deprecations are shown (Python hides a DeprecationWarning outside
# __main__ by default), unless the operator chose filters with -W/PYTHONWARNINGS.
# Third-party noise is filtered where that library is imported (nodes/sshlib.py).
if not sys.warnoptions:
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"pressluft(\.|$)")

"""Pressluft: a self-hosted control plane for professional WordPress hosting."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]

"""Operations: the job queue's views and log, the event feed, the audit, health,
metrics, the contract documents and housekeeping.

Its `Feature` is in `feature.py`; other contexts use only what this package exports."""

from pressluft.contexts.operations.jobs import JobQuery, list_jobs

__all__ = ["JobQuery", "list_jobs"]

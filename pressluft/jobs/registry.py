"""Job types: what runs for a `job_type`, for how long, how often it is retried."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pressluft.jobs.context import JobContext

__all__ = ["DEFAULT_BACKOFF", "JobRegistry", "JobType"]

#: The reference's backoff: 1 min, 5 min, 15 min.
DEFAULT_BACKOFF = (60, 300, 900)

Handler = Callable[["JobContext"], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Handler
    timeout_seconds: int = 1800
    max_attempts: int = 3
    backoff_seconds: tuple[int, ...] = DEFAULT_BACKOFF
    #: What a timeout is called (Ansible handlers: ANSIBLE_TIMEOUT, retryable).
    timeout_code: str = "JOB_TIMEOUT"

    def backoff(self, attempt: int) -> int:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        steps = self.backoff_seconds or DEFAULT_BACKOFF
        return steps[min(attempt, len(steps)) - 1]


class JobRegistry:
    """The job types a daemon can run."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, job_type: JobType) -> None:
        if job_type.name in self._types:
            raise ValueError(f"job type {job_type.name} registered twice")
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType | None:
        return self._types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

"""The job workers a daemon can run, by kind (instances of `jobs.workers.JobWorker`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pressluft.jobs.workers import JobWorker

__all__ = ["JobRegistry"]


class JobRegistry:
    """The workers a daemon can run. Their settings are their classes': the
    registry holds instances, nothing else."""

    def __init__(self, workers: Iterable[JobWorker[Any]] = ()) -> None:
        self._workers: dict[str, JobWorker[Any]] = {}
        for worker in workers:
            self.register(worker)

    def register(self, worker: JobWorker[Any]) -> None:
        if worker.kind in self._workers:
            raise ValueError(f"job type {worker.kind} registered twice")
        self._workers[worker.kind] = worker

    def get(self, kind: str) -> JobWorker[Any] | None:
        return self._workers.get(kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._workers

    def names(self) -> list[str]:
        return sorted(self._workers)

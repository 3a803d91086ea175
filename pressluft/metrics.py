"""Prometheus metrics of one daemon (its own registry, so tests can run many).

Exposed in text format at `GET /metrics`; the contract's JSON counters at
`GET /api/metrics` are computed from the projections instead. A leaf: it
imports no mechanism that uses it (the worker pool takes its `PoolMetrics`
protocol; the job statuses come with the scrape).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pressluft.db import CommitInfo
from pressluft.events import Recorded

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The daemon's metric families."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "pressluft_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "pressluft_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_appended = Counter(
            "pressluft_events_appended_total",
            "Events appended to the log, by type.",
            ["type"],
            registry=self.registry,
        )
        self.commit_batch = Histogram(
            "pressluft_group_commit_batch_size",
            "Commands committed together in one transaction.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.jobs_total = Counter(
            "pressluft_job_attempts_total",
            "Job attempts that ended, by job type and resulting job status.",
            ["job_type", "status"],
            registry=self.registry,
        )
        self.jobs = Gauge(
            "pressluft_jobs",
            "Jobs by job type and status, as of the scrape.",
            ["job_type", "status"],
            registry=self.registry,
        )
        self.job_queue_depth = Gauge(
            "pressluft_job_queue_depth",
            "Queued jobs that are due (could run now, if a slot and their site/node were free).",
            registry=self.registry,
        )
        self.job_claim_latency = Histogram(
            "pressluft_job_claim_latency_seconds",
            "Time from a job's enqueueing to the start of its first or next attempt.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0, 900.0),
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "pressluft_job_duration_seconds",
            "Run time of job attempts, by job type.",
            ["job_type"],
            buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800),
            registry=self.registry,
        )
        self.job_rescues = Counter(
            "pressluft_job_rescues_total",
            "Running attempts rescued after their worker went away.",
            registry=self.registry,
        )
        self.job_lease_rejections = Counter(
            "pressluft_job_lease_rejections_total",
            "Worker transitions refused because the attempt's lease was gone.",
            registry=self.registry,
        )
        self.job_claim_failures = Counter(
            "pressluft_job_claim_failures_total",
            "Claim transactions the database refused (locked, full, read-only); retried.",
            registry=self.registry,
        )
        self.service_restarts = Counter(
            "pressluft_service_restarts_total",
            "Background services (workers, scheduler, …) restarted after a crash.",
            ["service"],
            registry=self.registry,
        )
        self._appended: dict[str, Any] = {}
        self._attempts: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.log_head = Gauge(
            "pressluft_event_log_head_seq",
            "Sequence number of the newest committed event.",
            registry=self.registry,
        )

    def observe_commit(self, info: CommitInfo) -> None:
        self.commit_batch.observe(info.batch_size)
        head = 0
        counts: dict[str, int] = {}
        for item in info.published:
            if isinstance(item, Recorded):
                counts[item.type] = counts.get(item.type, 0) + 1
                head = item.seq
        for type_, count in counts.items():  # one (locked) increment per type and commit
            child = self._appended.get(type_)
            if child is None:  # labels() is a locked dict lookup: cache the child
                child = self._appended[type_] = self.events_appended.labels(type_)
            child.inc(count)
        if head:
            self.log_head.set(head)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """A request ended (children cached per label: `labels()` costs more than the
        count; routes are templates and methods the parser's, so the set is small)."""
        key = (method, route, status)
        children = self._requests.get(key)
        if children is None:
            children = self._requests[key] = (
                self.http_requests.labels(method, route, str(status)),
                self.http_latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_attempt(self, job_type: str, status: str, seconds: float) -> None:
        """An attempt ended: count it and its run time (children cached per label)."""
        key = (job_type, status)
        children = self._attempts.get(key)
        if children is None:
            children = self._attempts[key] = (
                self.jobs_total.labels(job_type, status),
                self.job_duration.labels(job_type),
            )
        children[0].inc()
        children[1].observe(seconds)

    # -- the worker pool's (jobs.worker.PoolMetrics) --------------------------------

    def observe_claim_failure(self) -> None:
        self.job_claim_failures.inc()

    def observe_rescue(self) -> None:
        self.job_rescues.inc()

    def observe_claim_latency(self, seconds: float) -> None:
        self.job_claim_latency.observe(seconds)

    def observe_lease_rejection(self) -> None:
        self.job_lease_rejections.inc()

    def set_jobs(
        self,
        counts: list[tuple[str, str, int]],
        due: int,
        job_types: Iterable[str] = (),
        statuses: Iterable[str] = (),
    ) -> None:
        """The scrape-time job gauges (`counts`: job type, status, count). Every
        one of `statuses` of every job type in `job_types` or `counts` is set,
        zeros included: a series that vanishes at zero breaks rates and alerts on it."""
        self.jobs.clear()
        every = tuple(statuses)
        for job_type in {*job_types, *(row[0] for row in counts)}:
            for status in every:
                self.jobs.labels(job_type, status).set(0)
        for job_type, status, count in counts:
            self.jobs.labels(job_type, status).set(count)
        self.job_queue_depth.set(due)

    def render(self) -> bytes:
        return generate_latest(self.registry)

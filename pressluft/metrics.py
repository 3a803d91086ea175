"""Prometheus metrics of one daemon (its own registry, so tests can run many).

Exposed in text format at `GET /metrics`; the contract's JSON counters at
`GET /api/metrics` are computed from the projections instead.
"""

from __future__ import annotations

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
        self.log_head = Gauge(
            "pressluft_event_log_head_seq",
            "Sequence number of the newest committed event.",
            registry=self.registry,
        )

    def observe_commit(self, info: CommitInfo) -> None:
        self.commit_batch.observe(info.batch_size)
        for item in info.published:
            if isinstance(item, Recorded):
                self.events_appended.labels(item.type).inc()
                self.log_head.set(item.seq)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

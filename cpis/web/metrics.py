"""Prometheus metrics, on a registry per app so tests can run several apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cpis_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cpis_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.lookups = Counter(
            "cpis_lookups",
            "Plan lookups by resource and outcome (hit, miss, silent)",
            ["resource", "outcome"],
            registry=self.registry,
        )
        self.access_events = Counter(
            "cpis_access_events", "Access events recorded", registry=self.registry
        )
        self.notifications_queued = Counter(
            "cpis_notifications_queued", "Outbox rows written", registry=self.registry
        )
        self.audit_failures = Counter(
            "cpis_audit_write_failures",
            "Security audit lines that could not be written",
            registry=self.registry,
        )

        self.delivery_attempts = Counter(
            "cpis_delivery_attempts",
            "Notification delivery attempts by channel and result",
            ["channel", "result"],
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "cpis_outbox_pending", "Outbox rows not yet fanned out", registry=self.registry
        )
        self.deliveries_pending = Gauge(
            "cpis_deliveries_pending", "Deliveries waiting to be made", registry=self.registry
        )
        self.deliveries_dead = Gauge(
            "cpis_deliveries_dead", "Deliveries given up on", registry=self.registry
        )
        self.oldest_pending_seconds = Gauge(
            "cpis_delivery_oldest_pending_seconds",
            "Age of the oldest undelivered delivery",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""The controller's metrics: one Prometheus registry per application, never the global one.

Counters and the dispatch-latency histogram are fed by whoever does the work
(the dispatcher calls :meth:`Metrics.observe_dispatch_latency`, event handlers call
:meth:`Metrics.event_handled`/:meth:`Metrics.event_failed`); task and node figures
are read from the store and the node registry when Prometheus scrapes, so they are
never stale and cost nothing between scrapes.

The instance lives on ``app.state.metrics``: :func:`install_metrics` puts it there
(idempotent), :func:`metrics_of` reads it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skalds.model.task import TaskLifecycleStatus
from skalds.utils.logging import logger
from skalds.utils.time import now_ms
from skalds_controller.api_summary import nodes_by_mode
from skalds_controller.nodes import NodeDirectory

if TYPE_CHECKING:
    from fastapi import FastAPI

    from skalds_controller.deps import Context

__all__ = ["LATENCY_BUCKETS", "Metrics", "install_metrics", "metrics_of"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds; dense below 50 ms, where the dispatch target (≤ 20 ms embedded) lies."""

_RECENT = 1000
"""Latest dispatch latencies kept for the JSON percentiles (Prometheus has the histogram)."""

_install_lock = threading.Lock()


class Metrics:
    """Counters, the dispatch-latency histogram and scrape-time gauges of one controller."""

    def __init__(self, context: Context | None = None) -> None:
        self.registry = CollectorRegistry()
        self.started_ms = now_ms()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=_RECENT)
        self._dispatched = 0
        self._handled: dict[str, int] = {}
        self._failed: dict[str, int] = {}
        self._dropped = 0
        self._clients = 0
        self.dispatch_latency = Histogram(
            "skalds_dispatch_latency_seconds",
            "Time from a task becoming dispatchable to its assignment being published.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_handled = Counter(
            "skalds_controller_events_handled",
            "Bus events the controller handled, by the part that handled them.",
            ["source"],
            registry=self.registry,
        )
        self.events_failed = Counter(
            "skalds_controller_events_failed",
            "Bus events whose handling failed, by the part that handled them.",
            ["source"],
            registry=self.registry,
        )
        self.sse_clients = Gauge(
            "skalds_controller_sse_clients",
            "Server-Sent Events connections open now.",
            registry=self.registry,
        )
        self.sse_dropped = Counter(
            "skalds_controller_sse_dropped_events",
            "Live events dropped because a client read too slowly.",
            registry=self.registry,
        )
        # Each source's child of the two counters (a dict read instead of labels())
        self._handled_by: dict[str, Counter] = {}
        self._failed_by: dict[str, Counter] = {}
        ProcessCollector(registry=self.registry)
        if context is not None:
            self.registry.register(_StateCollector(context, self))

    # -- fed by the parts that do the work ----------------------------------------------

    def observe_dispatch_latency(self, seconds: float) -> None:
        """Record one dispatch (task dispatchable → assignment published), in seconds."""
        seconds = max(0.0, float(seconds))
        self.dispatch_latency.observe(seconds)
        with self._lock:
            self._latencies.append(seconds)
            self._dispatched += 1

    def event_handled(self, source: str) -> None:
        """Count one bus event handled by ``source`` (e.g. ``dispatcher``, ``live``)."""
        counter = self._handled_by.get(source)
        if counter is None:  # labels() checks and locks: looked up once per source
            counter = self._handled_by[source] = self.events_handled.labels(source=source)
        counter.inc()
        with self._lock:
            self._handled[source] = self._handled.get(source, 0) + 1

    def event_failed(self, source: str) -> None:
        """Count one bus event whose handling by ``source`` failed."""
        counter = self._failed_by.get(source)
        if counter is None:
            counter = self._failed_by[source] = self.events_failed.labels(source=source)
        counter.inc()
        with self._lock:
            self._failed[source] = self._failed.get(source, 0) + 1

    def sse_client(self, delta: int) -> None:
        """Count a live-events connection opening (+1) or closing (-1)."""
        self.sse_clients.inc(delta)
        with self._lock:
            self._clients += delta

    def sse_dropped_events(self, count: int) -> None:
        """Count live events dropped for a slow client."""
        if count > 0:
            self.sse_dropped.inc(count)
            with self._lock:
                self._dropped += count

    # -- reading --------------------------------------------------------------------------

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON figures (dispatch latencies in milliseconds)."""
        with self._lock:
            recent = sorted(self._latencies)
            dispatched = self._dispatched
            handled, failed, dropped = dict(self._handled), dict(self._failed), self._dropped
            clients = self._clients
        return {
            "uptimeSeconds": round(self.uptime_seconds, 3),
            "dispatch": {
                "count": dispatched,
                "recent": len(recent),
                "p50Ms": _percentile_ms(recent, 0.50),
                "p99Ms": _percentile_ms(recent, 0.99),
            },
            "events": {
                "handled": handled,
                "failed": failed,
                "handledTotal": sum(handled.values()),
                "failedTotal": sum(failed.values()),
            },
            "sse": {"clients": clients, "droppedEvents": dropped},
        }


def _percentile_ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 3)


class _StateCollector(Collector):
    """Task and node gauges, read from the backends at scrape time."""

    def __init__(self, context: Context, metrics: Metrics) -> None:
        self.context = context
        self.metrics = metrics
        # A directory of its own: NodeDirectory keeps state and scrapes run on any thread.
        self._nodes = NodeDirectory(context.backends.cache)
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "skalds_controller_uptime_seconds",
            "Seconds since this controller started.",
            value=self.metrics.uptime_seconds,
        )
        up = GaugeMetricFamily(
            "skalds_backend_up", "1 when the backend answered this scrape.", labels=["backend"]
        )
        tasks = GaugeMetricFamily("skalds_tasks", "Tasks by lifecycle status.", labels=["status"])
        try:
            store = self.context.backends.store
            by_status = store.count_by_status()  # one query, not one per status
            for status in TaskLifecycleStatus:
                tasks.add_metric([status.value], by_status.get(status, 0))
            yield tasks
            up.add_metric(["store"], 1)
        except Exception as exc:
            logger.warning("metrics: cannot count tasks: %s", exc)
            up.add_metric(["store"], 0)
        nodes = GaugeMetricFamily(
            "skalds_nodes", "Known nodes by mode and status.", labels=["mode", "status"]
        )
        try:
            with self._lock:
                listed = self._nodes.list()
            for mode, counts in sorted(nodes_by_mode(listed).items()):
                for state, count in sorted(counts.items()):
                    nodes.add_metric([mode, state], count)
            online = sum(1 for n in listed if n.online)
            yield nodes
            yield GaugeMetricFamily("skalds_nodes_online", "Nodes online now.", value=online)
            up.add_metric(["cache"], 1)
        except Exception as exc:
            logger.warning("metrics: cannot list nodes: %s", exc)
            up.add_metric(["cache"], 0)
        yield up


def install_metrics(app: FastAPI) -> Metrics:
    """Put a :class:`Metrics` on ``app.state.metrics`` (once) and return it.

    Call it in ``create_app`` after ``app.state.context`` is set, so the dispatcher
    and the monitor can be handed the instance before the application starts.
    """
    with _install_lock:
        existing = getattr(app.state, "metrics", None)
        if isinstance(existing, Metrics):
            return existing
        metrics = Metrics(getattr(app.state, "context", None))
        app.state.metrics = metrics
        return metrics


def metrics_of(app: FastAPI) -> Metrics:
    """The application's metrics, created on first use when ``create_app`` did not."""
    existing = getattr(app.state, "metrics", None)
    return existing if isinstance(existing, Metrics) else install_metrics(app)

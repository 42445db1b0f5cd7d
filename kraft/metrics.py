"""The instruments of one node: counters and histograms updated where the events happen.

Names follow what Kafka's JMX exporter (the Prometheus jmx_exporter rules most Kafka
dashboards are written against) makes of Kafka's MBeans — `kafka.server:type=ReplicaManager,
name=IsrShrinksPerSec` becomes `kafka_server_replicamanager_isrshrinks_total` — so existing
dashboards and alerts find them. Each node has its own registry (several nodes may share a
process in tests), never prometheus_client's global one.

The hot path pays one dict lookup and an add: the label children (per API key, per topic)
are bound once and cached. Gauges derived from state (partition counts, lag, quorum
positions) are not kept here: a collector reads them at scrape time (`kraft.node_metrics`).

This module imports nothing else of kraft: the broker, the controller and the node all use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.metrics import Counter as CounterChild
from prometheus_client.metrics import Histogram as HistogramChild

# Request latency in milliseconds (Kafka reports RequestMetrics TotalTimeMs in ms): from a
# sub-millisecond Metadata up to a long-polling fetch (fetch.max.wait.ms 500 by default).
LATENCY_BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
FLUSH_BUCKETS_MS = (0.1, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000)
COMMIT_BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000)


class NodeMetrics:
    """Every instrument of one node, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes...: read at scrape time.
        ProcessCollector(registry=r)
        self.requests = Counter(
            "kafka_network_requestmetrics_requests",
            "Requests handled, by Kafka API name",
            ["request"],
            registry=r,
        )
        self.request_time = Histogram(
            "kafka_network_requestmetrics_totaltimems",
            "Time from a request's arrival to its response, in ms (incl. purgatory waits)",
            ["request"],
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.messages_in = Counter(
            "kafka_server_brokertopicmetrics_messagesin",
            "Records appended by producers to partitions led here",
            ["topic"],
            registry=r,
        )
        self.bytes_in = Counter(
            "kafka_server_brokertopicmetrics_bytesin",
            "Record bytes appended by producers (replication excluded, as in Kafka)",
            ["topic"],
            registry=r,
        )
        self.bytes_out = Counter(
            "kafka_server_brokertopicmetrics_bytesout",
            "Record bytes sent to consumers in fetch responses (replication excluded)",
            ["topic"],
            registry=r,
        )
        self.replication_bytes_out = Counter(
            "kafka_server_brokertopicmetrics_replicationbytesout",
            "Record bytes sent to follower replicas in fetch responses",
            registry=r,
        )
        self.replication_bytes_in = Counter(
            "kafka_server_brokertopicmetrics_replicationbytesin",
            "Record bytes received from leaders by this broker's replica fetchers",
            registry=r,
        )
        self.isr_shrinks = Counter(
            "kafka_server_replicamanager_isrshrinks",
            "Committed ISR changes of partitions led here that removed a replica",
            registry=r,
        )
        self.isr_expands = Counter(
            "kafka_server_replicamanager_isrexpands",
            "Committed ISR changes of partitions led here that added a replica",
            registry=r,
        )
        self.unclean_elections = Counter(
            "kafka_controller_controllerstats_uncleanleaderelections",
            "Unclean leader elections committed by this node as the active controller",
            registry=r,
        )
        self.commit_latency = Histogram(
            "kafka_server_raft_metrics_commit_latency_ms",
            "Time for the active controller's metadata records to commit, in ms",
            buckets=COMMIT_BUCKETS_MS,
            registry=r,
        )
        self.log_flush = Histogram(
            "kafka_log_logflushstats_logflushrateandtimems",
            "Time of each log flush (fsync of the unflushed segments), in ms",
            buckets=FLUSH_BUCKETS_MS,
            registry=r,
        )
        self._request_children: dict[str, tuple[CounterChild, HistogramChild]] = {}
        self._topic_in: dict[str, tuple[CounterChild, CounterChild]] = {}
        self._topic_out: dict[str, CounterChild] = {}

    # ------------------------------------------------------------ hot path

    def request_done(self, request: str, elapsed_s: float) -> None:
        children = self._request_children.get(request)
        if children is None:
            children = self._request_children[request] = (
                self.requests.labels(request),
                self.request_time.labels(request),
            )
        children[0].inc()
        children[1].observe(elapsed_s * 1000.0)

    def produced(self, topic: str, records: int, size: int) -> None:
        children = self._topic_in.get(topic)
        if children is None:
            children = self._topic_in[topic] = (
                self.messages_in.labels(topic),
                self.bytes_in.labels(topic),
            )
        children[0].inc(records)
        children[1].inc(size)

    def fetched(self, topic: str, size: int) -> None:
        child = self._topic_out.get(topic)
        if child is None:
            child = self._topic_out[topic] = self.bytes_out.labels(topic)
        child.inc(size)

    def topics(self) -> set[str]:
        """The topics with series (so the broker can drop those of deleted topics)."""
        return self._topic_in.keys() | self._topic_out.keys()

    def forget_topic(self, topic: str) -> None:
        """A deleted topic's series go (a topic recreated under the name starts at zero)."""
        for metric, cache in ((self.messages_in, self._topic_in), (self.bytes_in, self._topic_in)):
            cache.pop(topic, None)
            with contextlib.suppress(KeyError):
                metric.remove(topic)
        self._topic_out.pop(topic, None)
        with contextlib.suppress(KeyError):
            self.bytes_out.remove(topic)

    def flush_timer(self) -> Callable[[float], None]:
        """The observer a log calls with each flush's duration in seconds."""
        observe = self.log_flush.observe
        return lambda seconds: observe(seconds * 1000.0)

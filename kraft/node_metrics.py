"""Gauges of one node computed at scrape time from its state, never kept in sync by hand.

The collector reads what the node holds when Prometheus asks: the partitions hosted here
(ReplicaManager: partition, leader and under-replicated counts), the metadata image (the
active controller's global counts), the local quorum member (term, leader, positions), the
logs (segments, size) and the groups coordinated here (consumer lag). Names are those of
Kafka's JMX exporter (see `kraft.metrics`).

Consumer lag needs each partition's high watermark: a partition led here has it at hand; for
one led elsewhere the façade fetches the log end offsets asynchronously before a scrape
(`NodeApi.metrics_text`) and hands them over in `remote_end_offsets`. A partition whose end
is known neither way is left out rather than reported with a made-up lag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from kraft.node import Node

TopicPartition = tuple[str, int]


class NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self._node = node
        # (topic, partition) → log end offset of partitions led by other brokers, as the
        # façade last fetched them for the lag of groups coordinated here.
        self.remote_end_offsets: dict[TopicPartition, int] = {}

    def collect(self) -> Iterator[Metric]:
        yield from self._replica_manager()
        yield from self._controller()
        yield from self._quorum()
        yield from self._logs()
        yield from self._consumer_lag()

    # --------------------------------------------------------- replica manager

    def _replica_manager(self) -> Iterator[Metric]:
        broker = self._node.broker
        partitions = leaders = under = under_min = 0
        if broker is not None:
            for p in broker.replica_manager.partitions.values():
                partitions += 1
                if p.is_leader:
                    leaders += 1
                    if len(p.isr) < len(p.replicas):
                        under += 1
                    if len(p.isr) < p.min_insync_replicas:
                        under_min += 1
        for name, doc, value in (
            ("partitioncount", "Partitions hosted here", partitions),
            ("leadercount", "Partitions led here", leaders),
            ("underreplicatedpartitions", "Partitions led here with ISR < replicas", under),
            (
                "underminisrpartitioncount",
                "Partitions led here with ISR < min.insync.replicas",
                under_min,
            ),
        ):
            yield GaugeMetricFamily(f"kafka_server_replicamanager_{name}", doc, value=value)

    # ------------------------------------------------------------- controller

    def _is_active_controller(self) -> bool:
        node = self._node
        if not node.config.is_cluster:
            return node.broker is not None  # a single node is its own controller
        service = node.controller_service
        return service is not None and service.is_active()

    def _controller(self) -> Iterator[Metric]:
        node = self._node
        active = self._is_active_controller()
        topics = partitions = offline = fenced = registered = 0
        # Like Kafka, only the active controller reports the cluster's counts (0 elsewhere).
        image = None
        if node.controller is not None:
            image = node.controller.image
        elif node.broker is not None:
            image = node.broker.image  # a single node: its controller shares the image
        if active and image is not None:
            for topic in image.topics.values():
                topics += 1
                for state in topic.partitions.values():
                    partitions += 1
                    if state.leader < 0:
                        offline += 1
            for reg in image.brokers.values():
                registered += 1
                fenced += reg.fenced
        prefix = "kafka_controller_kafkacontroller_"
        for name, doc, value in (
            ("activecontrollercount", "1 on the active controller, else 0", int(active)),
            ("globaltopiccount", "Topics in the cluster", topics),
            ("globalpartitioncount", "Partitions in the cluster", partitions),
            ("offlinepartitionscount", "Partitions without a leader", offline),
            ("activebrokercount", "Registered unfenced brokers", registered - fenced),
            ("fencedbrokercount", "Registered fenced brokers", fenced),
        ):
            yield GaugeMetricFamily(prefix + name, doc, value=value)

    # ----------------------------------------------------------------- quorum

    def _quorum(self) -> Iterator[Metric]:
        quorum = self._node.quorum
        if quorum is None:
            return  # broker-only and single nodes are no quorum members
        status = quorum.status()
        prefix = "kafka_server_raft_metrics_"
        for name, doc, value in (
            ("current_leader", "Node id of the quorum leader (-1: none known)", status.leader_id),
            ("current_epoch", "The quorum's current term (epoch)", status.term),
            ("high_watermark", "Highest committed entry of the metadata log", status.commit_index),
            ("log_end_offset", "Last entry of the local metadata log", status.last_index),
            ("applied_offset", "Last entry applied to the metadata image", status.applied_index),
            (
                "applied_offset_lag",
                "Committed entries not yet applied to the metadata image",
                max(status.commit_index - status.applied_index, 0),
            ),
            ("snapshot_offset", "Entry of the newest snapshot (0: none)", status.snapshot_index),
        ):
            yield GaugeMetricFamily(prefix + name, doc, value=-1 if value is None else value)

    # ------------------------------------------------------------------- logs

    def _logs(self) -> Iterator[Metric]:
        manager = self._node.log_manager
        labels = ["topic", "partition"]
        segments = GaugeMetricFamily(
            "kafka_log_log_numlogsegments", "Segments of a partition's log", labels=labels
        )
        size = GaugeMetricFamily("kafka_log_log_size", "Bytes of a partition's log", labels=labels)
        start = GaugeMetricFamily(
            "kafka_log_log_logstartoffset", "Log start offset of a partition", labels=labels
        )
        end = GaugeMetricFamily(
            "kafka_log_log_logendoffset", "Log end offset of a partition", labels=labels
        )
        if manager is not None:
            for (topic, index), log in sorted(manager.all_logs().items()):
                key = [topic, str(index)]
                # One read of the list: the cleaner may swap segments from its thread.
                current = log.segments
                segments.add_metric(key, len(current))
                size.add_metric(key, sum(s.size for s in current))
                start.add_metric(key, log.log_start_offset)
                end.add_metric(key, current[-1].next_offset if current else 0)
        yield from (segments, size, start, end)

    # ----------------------------------------------------------- consumer lag

    def coordinated_offsets(self) -> dict[str, dict[TopicPartition, int]]:
        """Group id → committed offsets of the groups coordinated here (classic and
        KIP-848 consumer groups)."""
        broker = self._node.broker
        if broker is None:
            return {}
        service = broker.groups
        out: dict[str, dict[TopicPartition, int]] = {}
        for group_id, classic in list(service.coordinator.groups.items()):
            if classic.offsets:
                out[group_id] = {tp: o.offset for tp, o in list(classic.offsets.items())}
        for group_id, consumer in list(service.consumer.groups.items()):
            if consumer.offsets:
                out[group_id] = {tp: o.offset for tp, o in list(consumer.offsets.items())}
        return out

    def _consumer_lag(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag",
            "High watermark minus committed offset (>= 0) of groups coordinated here",
            labels=["consumergroup", "topic", "partition"],
        )
        broker = self._node.broker
        local = broker.replica_manager.partitions if broker is not None else {}
        for group_id, offsets in sorted(self.coordinated_offsets().items()):
            for (topic, index), committed in sorted(offsets.items()):
                p = local.get((topic, index))
                if p is not None and p.is_leader:
                    end = p.high_watermark
                    # Records below the log start are gone: they are no backlog.
                    committed = max(committed, p.log.log_start_offset)
                else:
                    remote = self.remote_end_offsets.get((topic, index))
                    if remote is None:
                        continue
                    end = remote
                lag.add_metric([group_id, topic, str(index)], max(end - committed, 0))
        yield lag

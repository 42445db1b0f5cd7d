"""Follower replication: one fetcher per source broker (Kafka's ReplicaFetcherThread).

A follower fetches every partition it follows from that partition's leader, as replica
`broker id`, from its own log end offset, sending the epoch of its last batch
(LastFetchedEpoch, KIP-595/Fetch v12+): a leader whose log diverges answers with a
DivergingEpoch, and the follower truncates to where both logs agree before fetching again,
so logs never keep a suffix the leader does not have. Batches are appended as they are
(offsets and epochs kept); the follower's high watermark is the leader's, capped by its own
log end.

The protocol itself is free of I/O (`build_fetch_request`, `apply_fetch_response`,
`divergence_truncation_offset`): the fetcher below moves the bytes, and the replication
simulation (tests/net/replication_sim/) drives the same functions over a simulated network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kraft.log.errors import LogError
from kraft.log.partition_log import PartitionLog
from kraft.net.broker.partition import Partition
from kraft.net.client import KafkaConnection
from kraft.net.protocol import ErrorCode, FetchRequest, FetchResponse, ProtocolError

logger = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.1


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """What a follower's fetch asks for: `replica.fetch.wait.max.ms`,
    `replica.fetch.max.bytes` (per partition; a larger first batch still comes whole) and
    the whole response's limit."""

    max_wait_ms: int = 500
    partition_max_bytes: int = 1 << 20
    response_max_bytes: int = 16 << 20
    # The inter-broker listener's TLS (security.inter.broker.protocol=SSL), None: plaintext.
    ssl_context: ssl.SSLContext | None = None


DEFAULT_FETCH_SETTINGS = FetchSettings()


class ReplicaFetcher:
    """Fetches every partition followed from one leader broker."""

    def __init__(
        self,
        broker_id: int,
        source_id: int,
        endpoint: Callable[[], tuple[str, int] | None],
        tag: str,
        settings: FetchSettings = DEFAULT_FETCH_SETTINGS,
    ) -> None:
        self.broker_id = broker_id
        self.source_id = source_id
        self.endpoint = endpoint
        self.tag = tag
        self.settings = settings
        # Told the record bytes of each fetch response (ReplicationBytesIn).
        self.on_bytes: Callable[[int], None] | None = None
        self.partitions: dict[tuple[str, int], Partition] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn: KafkaConnection | None = None
        self._wakeup = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def add(self, partition: Partition) -> None:
        self.partitions[(partition.topic, partition.index)] = partition
        self._wakeup.set()

    def remove(self, key: tuple[str, int]) -> None:
        self.partitions.pop(key, None)

    async def _connect(self) -> KafkaConnection:
        if self._conn is not None and self._conn.connected:
            return self._conn
        address = self.endpoint()
        if address is None:
            raise ConnectionError(f"broker {self.source_id} has no inter-broker endpoint")
        conn = KafkaConnection(
            *address,
            client_id=f"replica-fetcher-{self.broker_id}",
            ssl=self.settings.ssl_context,
        )
        async with asyncio.timeout(5):
            await conn.connect()
        self._conn = conn
        return conn

    async def _run(self) -> None:
        while True:
            if not self.partitions:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            try:
                await self._fetch_once()
            except (OSError, ConnectionError, ProtocolError, TimeoutError) as e:
                logger.debug("%sfetch from broker %d failed: %s", self.tag, self.source_id, e)
                await self._reset()
            except Exception:
                # A bug of ours: say so loudly, but keep replicating.
                logger.exception("%sreplica fetcher for broker %d failed", self.tag, self.source_id)
                await self._reset()

    async def _reset(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        await asyncio.sleep(RETRY_BACKOFF_S)

    async def _fetch_once(self) -> None:
        conn = await self._connect()
        wanted = dict(self.partitions)
        version = conn.version_for(1)
        request = build_fetch_request(self.broker_id, wanted, version, self.settings)
        async with asyncio.timeout(self.settings.max_wait_ms / 1000 + 10):
            response = await conn.send(request, version)
        assert isinstance(response, FetchResponse)
        if self.on_bytes is not None:
            size = 0
            for answer in response.responses:
                for data in answer.partitions:
                    if data.records:
                        size += len(data.records)
            if size:
                self.on_bytes(size)
        if apply_fetch_response(response, wanted, self.partitions, self.tag):
            await asyncio.sleep(RETRY_BACKOFF_S)


# ----------------------------------------------------------- the protocol, without I/O

PartitionKey = tuple[str, int]


def fetch_partition_request(
    p: Partition, partition_max_bytes: int = DEFAULT_FETCH_SETTINGS.partition_max_bytes
) -> FetchRequest.FetchPartition:
    """What a follower asks for: its log end, with the epoch of its last batch."""
    log = p.log
    return FetchRequest.FetchPartition(
        partition=p.index,
        current_leader_epoch=p.leader_epoch,
        fetch_offset=log.log_end_offset,
        last_fetched_epoch=log.leader_epoch_cache.latest_epoch,
        log_start_offset=log.log_start_offset,
        partition_max_bytes=partition_max_bytes,
    )


def build_fetch_request(
    broker_id: int,
    partitions: Mapping[PartitionKey, Partition],
    version: int,
    settings: FetchSettings = DEFAULT_FETCH_SETTINGS,
) -> FetchRequest:
    topics: dict[str, list[FetchRequest.FetchPartition]] = {}
    ids: dict[str, uuid.UUID] = {}
    for (topic, _), part in partitions.items():
        topics.setdefault(topic, []).append(
            fetch_partition_request(part, settings.partition_max_bytes)
        )
        ids[topic] = part.topic_id
    return FetchRequest(
        # The replica id moved into replica_state in v15.
        replica_id=broker_id if version < 15 else -1,
        replica_state=FetchRequest.ReplicaState(replica_id=broker_id, replica_epoch=-1),
        max_wait_ms=settings.max_wait_ms,
        min_bytes=1,
        max_bytes=settings.response_max_bytes,
        topics=[
            FetchRequest.FetchTopic(topic=t, topic_id=ids[t], partitions=parts)
            for t, parts in topics.items()
        ],
    )


def apply_fetch_response(
    response: FetchResponse,
    wanted: Mapping[PartitionKey, Partition],
    current: Mapping[PartitionKey, Partition],
    tag: str,
) -> bool:
    """Apply the answer to a request made for `wanted`, skipping partitions that are no longer
    the `current` ones (reassigned meanwhile); True if the fetcher should back off."""
    if response.error_code:
        return True
    ids = {p.topic_id: t for (t, _), p in wanted.items()}
    errors = False
    for answer in response.responses:
        name = answer.topic or ids.get(answer.topic_id, "")
        for data in answer.partitions:
            key = (name, data.partition_index)
            partition = current.get(key)
            if partition is None or partition is not wanted.get(key):
                continue
            errors = apply_partition_fetch(partition, data, tag) or errors
    return errors


def apply_partition_fetch(p: Partition, data: FetchResponse.PartitionData, tag: str) -> bool:
    """Apply one partition's fetch result: restart at the leader's log start, truncate a
    diverging suffix, or append and take the leader's high watermark. True if it failed."""
    log = p.log
    if data.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
        if data.log_start_offset > log.log_end_offset:
            logger.info(
                "%s%s-%d: behind the leader's log start %d: restarting there",
                tag,
                p.topic,
                p.index,
                data.log_start_offset,
            )
            log.truncate_fully_and_start_at(data.log_start_offset)
            return False
        return True
    if data.error_code:
        return True  # e.g. FENCED_LEADER_EPOCH: new metadata will re-point us
    diverging = data.diverging_epoch
    if diverging.epoch >= 0 or diverging.end_offset >= 0:
        end = divergence_truncation_offset(log, diverging.epoch, diverging.end_offset)
        logger.info(
            "%s%s-%d: log diverges from the leader at epoch %d: truncating to %d",
            tag,
            p.topic,
            p.index,
            diverging.epoch,
            end,
        )
        log.truncate_to(end)
        return False
    records = data.records
    try:
        if records is not None:
            p.append_records_to_follower(records)
    except LogError as e:
        logger.warning("%s%s-%d: cannot append fetched data: %s", tag, p.topic, p.index, e)
        return True
    p.update_follower_high_watermark(data.high_watermark)
    return False


def divergence_truncation_offset(log: PartitionLog, epoch: int, end_offset: int) -> int:
    """Where a follower truncates when the leader answers that its log diverges: the
    leader's largest epoch at or below the follower's last one is `epoch` (-1: none), and it
    ends at `end_offset` in the leader's log.

    Kafka's rule: when the follower has that epoch too, one leader wrote both copies of it,
    so the logs agree up to the smaller of the two ends; when it does not, its epochs after
    its own largest one below `epoch` are not the leader's: it keeps what lies before them,
    and the next fetch (naming that epoch) narrows it further. Never lower than needed: a
    follower in the ISR must not drop batches it was counted for."""
    leo = log.log_end_offset
    own_epoch, own_end = log.end_offset_for_epoch(epoch)
    if own_end < 0:
        return max(min(end_offset, leo), 0)  # the follower has no epoch that old either
    if own_epoch == epoch:
        return max(min(own_end, end_offset, leo), 0)
    return min(own_end, leo)


class ReplicaFetcherManager:
    def __init__(
        self,
        broker_id: int,
        endpoint_of: Callable[[int], tuple[str, int] | None],
        tag: str,
        new_fetcher: Callable[[int], ReplicaFetcher] | None = None,
        settings: FetchSettings = DEFAULT_FETCH_SETTINGS,
    ) -> None:
        self.broker_id = broker_id
        self.endpoint_of = endpoint_of
        self.tag = tag
        self.settings = settings
        # Source broker id → its fetcher; a simulation substitutes fetchers without sockets.
        self.new_fetcher = new_fetcher or self._socket_fetcher
        self.fetchers: dict[int, ReplicaFetcher] = {}
        self._assigned: dict[tuple[str, int], int] = {}
        self._stopped = False
        # Given to each fetcher it starts: told the record bytes each fetch brought.
        self.on_bytes: Callable[[int], None] | None = None

    def follow(self, partition: Partition) -> None:
        if self._stopped:
            # Shutting down: metadata still arriving (e.g. after the controlled shutdown
            # moved leaders) must not start fetchers that nothing would stop.
            return
        key = (partition.topic, partition.index)
        source = partition.leader
        current = self._assigned.get(key)
        if current == source:
            self.fetchers[source].partitions[key] = partition
            return
        self.unfollow(key)
        if source < 0:
            return
        fetcher = self.fetchers.get(source)
        if fetcher is None:
            fetcher = self.new_fetcher(source)
            fetcher.on_bytes = self.on_bytes
            self.fetchers[source] = fetcher
            fetcher.start()
        fetcher.add(partition)
        self._assigned[key] = source

    def _socket_fetcher(self, source: int) -> ReplicaFetcher:
        return ReplicaFetcher(
            self.broker_id, source, lambda: self.endpoint_of(source), self.tag, self.settings
        )

    def unfollow(self, key: tuple[str, int]) -> None:
        source = self._assigned.pop(key, None)
        if source is not None and source in self.fetchers:
            self.fetchers[source].remove(key)

    async def stop(self) -> None:
        self._stopped = True
        fetchers = list(self.fetchers.values())
        self.fetchers.clear()
        self._assigned.clear()
        for fetcher in fetchers:
            await fetcher.stop()

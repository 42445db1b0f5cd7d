"""Follower replication: one fetcher per source broker (Kafka's ReplicaFetcherThread).

A follower fetches every partition it follows from that partition's leader, as replica
`broker id`, from its own log end offset, sending the epoch of its last batch
(LastFetchedEpoch, KIP-595/Fetch v12+): a leader whose log diverges answers with a
DivergingEpoch, and the follower truncates to it before fetching again, so logs never keep a
suffix the leader does not have. Batches are appended as they are (offsets and epochs kept);
the follower's high watermark is the leader's, capped by its own log end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from log.errors import LogError
from net.broker.partition import Partition
from net.client import KafkaConnection
from net.protocol import ErrorCode, FetchRequest, FetchResponse, ProtocolError

logger = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 500
FETCH_MAX_BYTES = 16 << 20
PARTITION_MAX_BYTES = 1 << 20
RETRY_BACKOFF_S = 0.1


class ReplicaFetcher:
    """Fetches every partition followed from one leader broker."""

    def __init__(
        self,
        broker_id: int,
        source_id: int,
        endpoint: Callable[[], tuple[str, int] | None],
        tag: str,
    ) -> None:
        self.broker_id = broker_id
        self.source_id = source_id
        self.endpoint = endpoint
        self.tag = tag
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
        conn = KafkaConnection(*address, client_id=f"replica-fetcher-{self.broker_id}")
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
        topics: dict[str, list[FetchRequest.FetchPartition]] = {}
        for (topic, index), part in wanted.items():
            log = part.log
            topics.setdefault(topic, []).append(
                FetchRequest.FetchPartition(
                    partition=index,
                    current_leader_epoch=part.leader_epoch,
                    fetch_offset=log.log_end_offset,
                    last_fetched_epoch=log.leader_epoch_cache.latest_epoch,
                    log_start_offset=log.log_start_offset,
                    partition_max_bytes=PARTITION_MAX_BYTES,
                )
            )
        ids = {t: p.topic_id for (t, _), p in wanted.items()}
        version = conn.version_for(1)
        request = FetchRequest(
            # The replica id moved into replica_state in v15.
            replica_id=self.broker_id if version < 15 else -1,
            replica_state=FetchRequest.ReplicaState(replica_id=self.broker_id, replica_epoch=-1),
            max_wait_ms=FETCH_MAX_WAIT_MS,
            min_bytes=1,
            max_bytes=FETCH_MAX_BYTES,
            topics=[
                FetchRequest.FetchTopic(topic=t, topic_id=ids[t], partitions=parts)
                for t, parts in topics.items()
            ],
        )
        async with asyncio.timeout(FETCH_MAX_WAIT_MS / 1000 + 10):
            response = await conn.send(request, version)
        assert isinstance(response, FetchResponse)
        if response.error_code:
            await asyncio.sleep(RETRY_BACKOFF_S)
            return
        errors = False
        for answer in response.responses:
            name = answer.topic or next((t for t, i in ids.items() if i == answer.topic_id), "")
            for data in answer.partitions:
                current = self.partitions.get((name, data.partition_index))
                if current is None or current is not wanted.get((name, data.partition_index)):
                    continue  # reassigned meanwhile
                errors = self._process(current, data) or errors
        if errors:
            await asyncio.sleep(RETRY_BACKOFF_S)

    def _process(self, p: Partition, data: FetchResponse.PartitionData) -> bool:
        """Apply one partition's fetch result; True if it failed (back off)."""
        log = p.log
        if data.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
            if data.log_start_offset > log.log_end_offset:
                logger.info(
                    "%s%s-%d: behind the leader's log start %d: restarting there",
                    self.tag,
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
            end = max(min(diverging.end_offset, log.log_end_offset), 0)
            logger.info(
                "%s%s-%d: log diverges from the leader at epoch %d: truncating to %d",
                self.tag,
                p.topic,
                p.index,
                diverging.epoch,
                end,
            )
            log.truncate_to(end)
            return False
        records = data.records
        try:
            if records is not None and len(records):
                log.append_as_follower(records, allow_gaps=True)
        except LogError as e:
            logger.warning("%s%s-%d: cannot append fetched data: %s", self.tag, p.topic, p.index, e)
            return True
        log.set_high_watermark(min(data.high_watermark, log.log_end_offset))
        p.notify()
        return False


class ReplicaFetcherManager:
    def __init__(
        self,
        broker_id: int,
        endpoint_of: Callable[[int], tuple[str, int] | None],
        tag: str,
    ) -> None:
        self.broker_id = broker_id
        self.endpoint_of = endpoint_of
        self.tag = tag
        self.fetchers: dict[int, ReplicaFetcher] = {}
        self._assigned: dict[tuple[str, int], int] = {}

    def follow(self, partition: Partition) -> None:
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
            fetcher = ReplicaFetcher(self.broker_id, source, self._endpoint(source), self.tag)
            self.fetchers[source] = fetcher
            fetcher.start()
        fetcher.add(partition)
        self._assigned[key] = source

    def _endpoint(self, source: int) -> Callable[[], tuple[str, int] | None]:
        return lambda: self.endpoint_of(source)

    def unfollow(self, key: tuple[str, int]) -> None:
        source = self._assigned.pop(key, None)
        if source is not None and source in self.fetchers:
            self.fetchers[source].remove(key)

    async def stop(self) -> None:
        for fetcher in self.fetchers.values():
            await fetcher.stop()
        self.fetchers.clear()
        self._assigned.clear()

"""The replica manager (Kafka's ReplicaManager): the partitions hosted on this broker and the
one way anything is appended to or fetched from them.

- `append_records` appends for clients (Produce), the group coordinator and, later,
  transaction markers; the leader's partition validates, appends, advances the high
  watermark and completes waiting operations in one place (`Partition.append_records_to_
  leader`). acks=all waits as a `DelayedProduce` in the produce purgatory until the high
  watermark passes the batch (NONE), leadership is lost (NOT_LEADER_OR_FOLLOWER) or the
  timeout (NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below min.insync.replicas,
  REQUEST_TIMED_OUT otherwise).
- `fetch_messages` reads up to the high watermark (the log end for followers), records a
  follower's position once per request, and long-polls as a `DelayedFetch` until
  `min_bytes` are there, a partition changes in a way that needs an answer, or `max_wait_ms`.
- Every partition reports its changes (`Partition.on_change`) to `_on_partition_change`, the
  one place delayed operations are completed. Expiry is driven by `wake_at(deadline_ms)`: an
  asyncio timer by default; a simulation injects its own clock and timers.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kraft.log.config import LogConfig
from kraft.log.errors import LogError
from kraft.log.manager import LogManager
from kraft.metadata.image import MetadataImage
from kraft.metrics import NodeMetrics
from kraft.net.broker.partition import Partition, monotonic_ms
from kraft.net.broker.purgatory import DelayedOperation, DelayedOperationPurgatory
from kraft.net.broker.replication import ReplicaFetcherManager
from kraft.net.protocol import ErrorCode, FetchRequest, FetchResponse

logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
READ_COMMITTED = 1
_EMPTY = memoryview(b"")


class AppendOrigin(enum.Enum):
    """Who appends (Kafka's AppendOrigin): clients' errors are theirs to see (logged at
    DEBUG), the coordinator's are ours (WARNING)."""

    CLIENT = "client"
    COORDINATOR = "coordinator"


@dataclass(slots=True)
class PartitionAppendResult:
    error_code: int = ErrorCode.NONE
    error_message: str | None = None
    base_offset: int = -1
    log_append_time: int = -1
    log_start_offset: int = -1


AppendResults = dict[TopicPartition, PartitionAppendResult]


@dataclass(slots=True)
class FetchParams:
    replica_id: int  # >= 0: a follower, which reads up to the log end
    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    isolation_level: int = 0

    @property
    def is_follower(self) -> bool:
        return self.replica_id >= 0


# (topic name, what is asked of it); an empty name stands for an unknown topic id.
FetchInfo = tuple[str, FetchRequest.FetchPartition]


@dataclass(slots=True)
class _FetchRead:
    partitions: list[FetchResponse.PartitionData]
    total_bytes: int
    hosted: list[TopicPartition]
    answer_now: bool  # an error, or a follower that must truncate first


@dataclass(slots=True)
class _AwaitedAppend:
    partition: Partition
    leader_epoch: int  # an append of an older leadership may have been truncated
    required_offset: int  # the high watermark must reach this
    result: PartitionAppendResult
    done: bool = False


class DelayedProduce(DelayedOperation):
    """An acks=all produce waiting for the high watermark of each partition it appended to."""

    def __init__(
        self,
        manager: ReplicaManager,
        timeout_ms: int,
        awaited: dict[TopicPartition, _AwaitedAppend],
        results: AppendResults,
        done: Callable[[AppendResults], None],
    ) -> None:
        super().__init__(timeout_ms)
        self.manager = manager
        self.awaited = awaited
        self.results = results
        self.done = done

    def try_complete(self) -> bool:
        for key, waiting in self.awaited.items():
            if waiting.done:
                continue
            p = waiting.partition
            if not self._still_leading(key, waiting):
                waiting.result.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
                waiting.done = True
            elif p.high_watermark >= waiting.required_offset:
                waiting.done = True
        if all(w.done for w in self.awaited.values()):
            return self.force_complete()
        return False

    def _still_leading(self, key: TopicPartition, waiting: _AwaitedAppend) -> bool:
        p = waiting.partition
        return (
            self.manager.partitions.get(key) is p
            and p.is_leader
            and p.leader_epoch == waiting.leader_epoch
        )

    def on_expiration(self) -> None:
        for key, waiting in self.awaited.items():
            if waiting.done:
                continue
            p = waiting.partition
            if not self._still_leading(key, waiting):
                waiting.result.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
            elif p.high_watermark < waiting.required_offset:
                waiting.result.error_code = (
                    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
                    if len(p.isr) < p.min_insync_replicas
                    else ErrorCode.REQUEST_TIMED_OUT
                )
            waiting.done = True

    def on_complete(self) -> None:
        # Kept in the expiry heap until its deadline, it must not keep its caller alive.
        done, self.done = self.done, _no_results
        done(self.results)


def _no_results(results: AppendResults) -> None:
    """What a completed DelayedProduce holds instead of its caller's callback."""


def _answered(data: list[FetchResponse.PartitionData]) -> None:
    """What a completed DelayedFetch holds instead of its caller's callback."""


class DelayedFetch(DelayedOperation):
    """A fetch waiting for `min_bytes`: each try reads again (without recording a follower's
    position, which its first read did), and the read that completes it is the answer."""

    def __init__(
        self,
        manager: ReplicaManager,
        params: FetchParams,
        infos: Sequence[FetchInfo],
        done: Callable[[list[FetchResponse.PartitionData]], None],
    ) -> None:
        super().__init__(params.max_wait_ms)
        self.manager = manager
        self.params = params
        self.infos = infos
        self.done = done
        self._read: _FetchRead | None = None

    def try_complete(self) -> bool:
        read = self.manager._read(self.params, self.infos, record=False)
        if read.answer_now or read.total_bytes >= self.params.min_bytes:
            self._read = read
            return self.force_complete()
        return False

    def on_complete(self) -> None:
        read = self._read or self.manager._read(self.params, self.infos, record=False)
        # A completed operation may stay in the purgatory's expiry heap until its deadline:
        # it must not keep what it read (up to a MiB per follower fetch) alive that long.
        done, self.done, self._read = self.done, _answered, None
        done(read.partitions)


class ReplicaManager:
    def __init__(
        self,
        broker_id: int,
        log_manager: LogManager,
        image: Callable[[], MetadataImage],
        fetchers: ReplicaFetcherManager,
        clock: Callable[[], int] = monotonic_ms,
        on_follower_caught_up: Callable[[], None] | None = None,
        tag: str = "",
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.broker_id = broker_id
        self.metrics = metrics or NodeMetrics()
        self.log_manager = log_manager
        self.image = image
        self.fetchers = fetchers
        self.clock = clock
        self.on_follower_caught_up = on_follower_caught_up
        self.tag = tag
        self.partitions: dict[TopicPartition, Partition] = {}
        self.produce_purgatory = DelayedOperationPurgatory("Produce", clock)
        self.fetch_purgatory = DelayedOperationPurgatory("Fetch", clock)
        # Asks the driver to call `expire_delayed` at a deadline (ms of `clock`).
        self.wake_at: Callable[[int], None] = self._wake_on_loop
        # Runs the delayed-operation checks of changed partitions soon, not inside the change
        # itself (the driver: the loop's call_soon; the simulation's event queue). A follower
        # fetch parked on a partition then answers once per loop pass with everything the
        # pipelined produce requests of that pass appended — one reply per append would double
        # the replication round trips a Python broker pays for (RF=3 acks=all measured 0.67x
        # of that).
        self.defer: Callable[[Callable[[], None]], None] = self._call_soon
        self._changed: dict[TopicPartition, None] = {}
        self._wake_deadline: int | None = None
        self._wake_handle: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------- partitions

    def get_partition(self, key: TopicPartition) -> Partition | None:
        return self.partitions.get(key)

    def get_partition_or_error(
        self, topic: str, index: int, current_leader_epoch: int = -1, need_leader: bool = True
    ) -> tuple[Partition | None, int]:
        """The hosted partition, or the error code a client must see (unknown, not leader,
        fenced or unknown leader epoch)."""
        partition = self.partitions.get((topic, index))
        if partition is None:
            image = self.image()
            if topic in image.topics and index in image.topics[topic].partitions:
                return None, ErrorCode.NOT_LEADER_OR_FOLLOWER
            return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if current_leader_epoch >= 0:
            if current_leader_epoch < partition.leader_epoch:
                return None, ErrorCode.FENCED_LEADER_EPOCH
            if current_leader_epoch > partition.leader_epoch:
                return None, ErrorCode.UNKNOWN_LEADER_EPOCH
        if need_leader and not partition.is_leader:
            return None, ErrorCode.NOT_LEADER_OR_FOLLOWER
        return partition, ErrorCode.NONE

    def get_or_create_partition(
        self, topic: str, index: int, topic_id: uuid.UUID, log_config: LogConfig
    ) -> Partition:
        """The hosted partition, created (with its log) when new or when the topic was
        recreated under a new id."""
        key = (topic, index)
        partition = self.partitions.get(key)
        if partition is not None and partition.topic_id == topic_id:
            if partition.log.config != log_config:
                partition.log.update_config(log_config)
            return partition
        if partition is not None:
            self.stop_replica(key)
        log = self.log_manager.get_or_create_log(topic, index, log_config)
        partition = Partition(
            topic,
            index,
            topic_id,
            log,
            self.broker_id,
            clock=self.clock,
            on_follower_caught_up=self.on_follower_caught_up,
            on_change=self._on_partition_change,
        )
        self.partitions[key] = partition
        return partition

    def become_leader(
        self,
        partition: Partition,
        leader_epoch: int,
        partition_epoch: int,
        replicas: list[int],
        isr: list[int],
    ) -> None:
        self.fetchers.unfollow((partition.topic, partition.index))
        partition.become_leader(leader_epoch, partition_epoch, replicas, isr)

    def become_follower(
        self,
        partition: Partition,
        leader: int,
        leader_epoch: int,
        partition_epoch: int,
        replicas: list[int],
        isr: list[int],
    ) -> None:
        partition.become_follower(leader, leader_epoch, partition_epoch, replicas, isr)
        self.fetchers.follow(partition)

    def stop_replica(self, key: TopicPartition) -> None:
        """No longer hosted here (the log itself is the caller's to delete)."""
        self.fetchers.unfollow(key)
        partition = self.partitions.pop(key, None)
        if partition is not None:
            partition.stop()

    async def shutdown(self) -> None:
        await self.fetchers.stop()
        if self._wake_handle is not None:
            self._wake_handle.cancel()
            self._wake_handle = None

    def _on_partition_change(self, partition: Partition) -> None:
        """The one place delayed operations learn of a change: the high watermark or the
        log end moved, leadership changed, or the partition stopped here. Changes coalesce
        until the deferred check runs (`defer`)."""
        first = not self._changed
        self._changed[(partition.topic, partition.index)] = None
        if first:
            self.defer(self.complete_delayed)

    def complete_delayed(self) -> None:
        """Try the delayed operations watching every partition changed since the last call."""
        changed, self._changed = self._changed, {}
        for key in changed:
            self.produce_purgatory.check_and_complete(key)
            self.fetch_purgatory.check_and_complete(key)

    @staticmethod
    def _call_soon(fn: Callable[[], None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            fn()  # driven without a loop (pure tests): nothing to coalesce with, check now
            return
        loop.call_soon(fn)

    # ---------------------------------------------------------------- append

    def append_records(
        self,
        entries: Mapping[TopicPartition, bytes | bytearray | memoryview],
        required_acks: int,
        timeout_ms: int,
        origin: AppendOrigin,
        done: Callable[[AppendResults], None],
    ) -> None:
        """Append each entry as this partition's leader; `done(results)` once every result is
        final: at once for acks 0/1 and for errors (inside this call), for acks=all when each
        partition's high watermark passed its batch, leadership was lost, or `timeout_ms`."""
        results: AppendResults = {}
        awaited: dict[TopicPartition, _AwaitedAppend] = {}
        for key, records in entries.items():
            partition, code = self.get_partition_or_error(*key)
            if partition is None:
                results[key] = PartitionAppendResult(error_code=code)
                continue
            try:
                appended = partition.append_records_to_leader(records, required_acks)
            except LogError as e:
                level = logging.DEBUG if origin is AppendOrigin.CLIENT else logging.WARNING
                logger.log(level, "%sappend to %s-%d refused: %s", self.tag, *key, e)
                results[key] = PartitionAppendResult(error_code=e.error_code, error_message=str(e))
                continue
            except OSError as e:
                logger.error("%sappend to %s-%d failed: %s", self.tag, *key, e)
                results[key] = PartitionAppendResult(
                    error_code=ErrorCode.KAFKA_STORAGE_ERROR, error_message=str(e)
                )
                continue
            if origin is AppendOrigin.CLIENT and not appended.duplicate:
                # The batch headers' record counts: no record is decoded for the count.
                count = 0
                for batch in appended.batches:
                    count += batch.records_count
                self.metrics.produced(key[0], count, appended.valid_bytes)
            result = PartitionAppendResult(
                base_offset=appended.first_offset,
                log_append_time=appended.log_append_time,
                log_start_offset=partition.log.log_start_offset,
            )
            results[key] = result
            # Already committed (a single replica in sync): nothing to wait for.
            if required_acks == -1 and partition.high_watermark <= appended.last_offset:
                awaited[key] = _AwaitedAppend(
                    partition, partition.leader_epoch, appended.last_offset + 1, result
                )
        if not awaited:
            done(results)
            return
        op = DelayedProduce(self, timeout_ms, awaited, results, done)
        if not self.produce_purgatory.try_complete_else_watch(op, awaited):
            self._request_wake(op.deadline_ms)

    async def append_records_async(
        self,
        entries: Mapping[TopicPartition, bytes | bytearray | memoryview],
        required_acks: int,
        timeout_ms: int,
        origin: AppendOrigin,
    ) -> AppendResults:
        """`append_records` for a coroutine: the results once final."""
        answered: list[AppendResults] = []
        future: asyncio.Future[AppendResults] | None = None

        def done(results: AppendResults) -> None:
            if future is None:
                answered.append(results)
            elif not future.done():
                future.set_result(results)

        self.append_records(entries, required_acks, timeout_ms, origin, done)
        if answered:
            return answered[0]  # acks 0/1, errors, or already replicated: no future needed
        future = asyncio.get_running_loop().create_future()
        return await future

    # ----------------------------------------------------------------- fetch

    def fetch_messages(
        self,
        params: FetchParams,
        infos: Sequence[FetchInfo],
        done: Callable[[list[FetchResponse.PartitionData]], None],
    ) -> None:
        """Read each partition; `done(partition data, in the order asked)` at once when there
        are `min_bytes`, an error, or nothing to wait for, else when a change brings them or
        after `max_wait_ms`. A follower's position is recorded by this first read only."""
        metered = self._metered(params, infos, done)
        read = self._read(params, infos, record=params.is_follower)
        if (
            read.answer_now
            or read.total_bytes >= params.min_bytes
            or params.max_wait_ms <= 0
            or not read.hosted
        ):
            metered(read.partitions)
            return
        op = DelayedFetch(self, params, infos, metered)
        if not self.fetch_purgatory.try_complete_else_watch(op, read.hosted):
            self._request_wake(op.deadline_ms)

    def _metered(
        self,
        params: FetchParams,
        infos: Sequence[FetchInfo],
        done: Callable[[list[FetchResponse.PartitionData]], None],
    ) -> Callable[[list[FetchResponse.PartitionData]], None]:
        """`done` after counting the record bytes answered: a consumer's per topic
        (BytesOut), a follower's apart (ReplicationBytesOut), as Kafka keeps them."""
        metrics = self.metrics

        def counted(data: list[FetchResponse.PartitionData]) -> None:
            if params.is_follower:
                size = 0
                for d in data:
                    if d.records:
                        size += len(d.records)
                if size:
                    metrics.replication_bytes_out.inc(size)
            else:
                for (name, _), d in zip(infos, data, strict=False):
                    if d.records:
                        metrics.fetched(name, len(d.records))
            done(data)

        return counted

    async def fetch_messages_async(
        self, params: FetchParams, infos: Sequence[FetchInfo]
    ) -> list[FetchResponse.PartitionData]:
        answered: list[list[FetchResponse.PartitionData]] = []
        future: asyncio.Future[list[FetchResponse.PartitionData]] | None = None

        def done(data: list[FetchResponse.PartitionData]) -> None:
            if future is None:
                answered.append(data)
            elif not future.done():
                future.set_result(data)

        self.fetch_messages(params, infos, done)
        if answered:
            return answered[0]
        future = asyncio.get_running_loop().create_future()
        return await future

    def _read(self, params: FetchParams, infos: Sequence[FetchInfo], record: bool) -> _FetchRead:
        out: list[FetchResponse.PartitionData] = []
        hosted: list[TopicPartition] = []
        total = 0
        budget = params.max_bytes
        answer_now = False
        for name, fp in infos:
            if not name:
                out.append(fetch_error(fp.partition, ErrorCode.UNKNOWN_TOPIC_ID))
                answer_now = True
                continue
            partition, code = self.get_partition_or_error(
                name, fp.partition, fp.current_leader_epoch
            )
            if partition is None:
                out.append(fetch_error(fp.partition, code))
                answer_now = True
                continue
            hosted.append((name, fp.partition))
            data, size, now = read_partition(
                partition, fp, params.is_follower, params.isolation_level, budget, total == 0
            )
            if record and not now:
                # Only a clean read shows what the follower holds: one that diverges still
                # has a suffix it will truncate (Kafka too ignores such fetches).
                partition.record_follower_fetch(params.replica_id, fp.fetch_offset)
                # Its progress may have moved the high watermark the answer reports.
                data.high_watermark = data.last_stable_offset = partition.high_watermark
            out.append(data)
            answer_now = answer_now or now
            total += size
            budget = max(budget - size, 0)
        return _FetchRead(out, total, hosted, answer_now)

    # ---------------------------------------------------------------- expiry

    def expire_delayed(self) -> None:
        """Expire the delayed operations whose deadline passed; ask to be woken for the next."""
        self._wake_deadline = None
        self._wake_handle = None
        now = self.clock()
        self.produce_purgatory.expire(now)
        self.fetch_purgatory.expire(now)
        deadlines = [
            d
            for d in (self.produce_purgatory.next_deadline(), self.fetch_purgatory.next_deadline())
            if d is not None
        ]
        if deadlines:
            self._request_wake(min(deadlines))

    def _request_wake(self, deadline_ms: int) -> None:
        if self._wake_deadline is not None and self._wake_deadline <= deadline_ms:
            return
        self._wake_deadline = deadline_ms
        self.wake_at(deadline_ms)

    def _wake_on_loop(self, deadline_ms: int) -> None:
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        # A millisecond late rather than early: the clock counts whole milliseconds.
        delay_s = max(deadline_ms - self.clock() + 1, 0) / 1000
        self._wake_handle = asyncio.get_running_loop().call_later(delay_s, self.expire_delayed)


def fetch_error(index: int, code: int) -> FetchResponse.PartitionData:
    return FetchResponse.PartitionData(
        partition_index=index, error_code=code, high_watermark=-1, records=_EMPTY
    )


def read_partition(
    partition: Partition,
    fp: FetchRequest.FetchPartition,
    is_follower: bool,
    isolation_level: int,
    budget: int,
    first: bool,
) -> tuple[FetchResponse.PartitionData, int, bool]:
    """One partition's part of a fetch: (data, bytes read, whether to answer at once)."""
    log = partition.log
    if fp.last_fetched_epoch >= 0:
        epoch, end = log.end_offset_for_epoch(fp.last_fetched_epoch)
        if end < 0:
            # No epoch here is that old: the follower's log diverges from where ours starts.
            end = log.log_start_offset
        if epoch < fp.last_fetched_epoch or end < fp.fetch_offset:
            # KIP-595 style divergence: the fetcher truncates to this and fetches again.
            data = FetchResponse.PartitionData(
                partition_index=fp.partition,
                high_watermark=partition.high_watermark,
                last_stable_offset=partition.high_watermark,
                log_start_offset=log.log_start_offset,
                diverging_epoch=FetchResponse.EpochEndOffset(epoch=epoch, end_offset=end),
                records=_EMPTY,
            )
            # Answered at once, like an error (Kafka's DelayedFetch too): waiting for data
            # only delays the truncation the follower needs first.
            return data, 0, True
    upper = None if is_follower else partition.high_watermark
    limit = min(fp.partition_max_bytes, budget)
    try:
        result = log.read(fp.fetch_offset, limit, upper, min_one_batch=first)
    except LogError as e:
        return fetch_error(fp.partition, e.error_code), 0, True
    hw = partition.high_watermark
    data = FetchResponse.PartitionData(
        partition_index=fp.partition,
        high_watermark=hw,
        last_stable_offset=hw,
        log_start_offset=log.log_start_offset,
        aborted_transactions=[] if isolation_level == READ_COMMITTED else None,
        records=result.records,
    )
    return data, len(result.records), False

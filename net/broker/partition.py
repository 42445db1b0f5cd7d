"""A partition as the broker sees it: its log plus leadership, ISR and high watermark.

The high watermark is the smallest log end offset over the ISR (the leader's own included),
advanced only while the ISR has at least `min.insync.replicas` members.

Every change others may wait on — the log end or the high watermark moving, leadership
changing — ends in one call of `on_change` (the replica manager completes the delayed
produces and fetches waiting on this partition there); nothing waits by polling.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kraft.log.errors import LogError
from kraft.log.partition_log import AppendResult, PartitionLog
from kraft.net.protocol import ErrorCode

logger = logging.getLogger(__name__)


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class NotLeaderOrFollowerError(LogError):
    error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER


class NotEnoughReplicasError(LogError):
    error_code = ErrorCode.NOT_ENOUGH_REPLICAS


@dataclass(slots=True)
class ReplicaState:
    log_end_offset: int = -1
    last_caught_up_ms: int = 0
    # The leader's log end when this follower last fetched, and when that was (Kafka's
    # lastFetchLeaderLogEndOffset / lastFetchTimeMs).
    last_fetch_leader_leo: int = -1
    last_fetch_ms: int = 0


@dataclass(slots=True)
class Partition:
    topic: str
    index: int
    topic_id: uuid.UUID
    log: PartitionLog
    broker_id: int
    leader: int = -1
    leader_epoch: int = -1
    partition_epoch: int = -1
    replicas: list[int] = field(default_factory=list)
    isr: list[int] = field(default_factory=list)
    min_insync_replicas: int = 1
    followers: dict[int, ReplicaState] = field(default_factory=dict)
    # Milliseconds for caught-up times; a simulation injects its own.
    clock: Callable[[], int] = monotonic_ms
    # Told when a follower outside the ISR reaches what joining takes (Kafka expands the ISR
    # on that very fetch, not at the next periodic check): the broker checks the ISR at once.
    on_follower_caught_up: Callable[[], None] | None = None
    # Replicas this leader asked the controller to add to the ISR, until the metadata (or an
    # answer showing nothing was committed) settles it: the controller may already count them
    # in sync, and elect them, so the high watermark must not pass them either (Kafka's
    # "maximal ISR"). A shrink needs no such care: the old ISR stays in force until then.
    pending_isr: set[int] = field(default_factory=set)
    # Told after every change delayed operations may wait on (the replica manager's hook).
    on_change: Callable[[Partition], None] | None = None

    @property
    def is_leader(self) -> bool:
        return self.leader == self.broker_id

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    def become_leader(
        self, leader_epoch: int, partition_epoch: int, replicas: list[int], isr: list[int]
    ) -> None:
        changed = not self.is_leader or leader_epoch != self.leader_epoch
        self.leader = self.broker_id
        self.leader_epoch = leader_epoch
        self.partition_epoch = partition_epoch
        self.replicas = list(replicas)
        self.isr = list(isr)
        # A new partition epoch: requests made under the old one can no longer be committed.
        self.pending_isr = set()
        if changed:
            # Kafka's rule for a new leader: ISR members get a fresh caught-up time (they were
            # in sync as far as the controller knows), the others none.
            now_ms = self.clock()
            self.followers = {
                r: ReplicaState(last_caught_up_ms=now_ms if r in isr else 0)
                for r in replicas
                if r != self.broker_id
            }
        else:
            self.followers = {
                r: self.followers.get(r, ReplicaState()) for r in replicas if r != self.broker_id
            }
        if changed:
            # The new epoch starts at the log end: followers asking where an older epoch ends
            # (truncation) get this offset even before the first append of this epoch.
            self.log.leader_epoch_cache.assign(leader_epoch, self.log.log_end_offset)
            logger.info(
                "[broker %d] %s-%d: leader at epoch %d, isr %s",
                self.broker_id,
                self.topic,
                self.index,
                leader_epoch,
                isr,
            )
        self.maybe_advance_high_watermark()
        self._changed()

    def become_follower(
        self,
        leader: int,
        leader_epoch: int,
        partition_epoch: int,
        replicas: list[int],
        isr: list[int],
    ) -> None:
        if leader != self.leader or leader_epoch != self.leader_epoch:
            logger.info(
                "[broker %d] %s-%d: follower of %d at epoch %d",
                self.broker_id,
                self.topic,
                self.index,
                leader,
                leader_epoch,
            )
        self.leader = leader
        self.leader_epoch = leader_epoch
        self.partition_epoch = partition_epoch
        self.replicas = list(replicas)
        self.isr = list(isr)
        self.pending_isr = set()
        self.followers = {}
        self._changed()

    def append_records_to_leader(
        self, records: bytes | bytearray | memoryview, required_acks: int
    ) -> AppendResult:
        """Kafka's appendRecordsToLeader: refuse unless leading (and, for acks=all, unless the
        ISR has `min.insync.replicas` members), append under this leader's epoch, advance
        the high watermark, and complete what waited on this partition: all here, once.
        Raises NotLeaderOrFollowerError, NotEnoughReplicasError or the log's own errors."""
        if not self.is_leader:
            raise NotLeaderOrFollowerError(
                f"broker {self.broker_id} is not the leader of {self.topic}-{self.index}"
            )
        if required_acks == -1 and len(self.isr) < self.min_insync_replicas:
            raise NotEnoughReplicasError(
                f"ISR {self.isr} is smaller than min.insync.replicas {self.min_insync_replicas}"
            )
        result = self.log.append_as_leader(records, self.leader_epoch)
        if not result.duplicate:
            self.maybe_advance_high_watermark()
            self._changed()
        return result

    def append_records_to_follower(self, records: bytes | bytearray | memoryview) -> None:
        """Batches fetched from the leader, offsets and epochs kept (a compacted leader's
        log may have gaps)."""
        if len(records):
            self.log.append_as_follower(records, allow_gaps=True)
            self._changed()

    def update_follower_high_watermark(self, leader_high_watermark: int) -> None:
        """A follower's high watermark is the leader's, capped by its own log end."""
        log = self.log
        before = log.high_watermark
        log.set_high_watermark(min(leader_high_watermark, log.log_end_offset))
        if log.high_watermark != before:
            self._changed()

    def stop(self) -> None:
        """No longer hosted here: whatever waits on it completes (as not the leader)."""
        self.leader = -1
        self._changed()

    def maybe_advance_high_watermark(self) -> bool:
        """HW = min log end offset over the ISR and its pending additions; True if it moved.
        The caller reports the change (`_changed`) once it is done changing the partition."""
        if not self.is_leader or len(self.isr) < self.min_insync_replicas:
            return False
        leo = self.log.log_end_offset
        for replica in self.pending_isr.union(self.isr):
            if replica != self.broker_id:
                state = self.followers.get(replica)
                leo = min(leo, state.log_end_offset if state else -1)
        if leo > self.log.high_watermark:
            self.log.set_high_watermark(leo)
            return True
        return False

    def isr_change(self, now_ms: int, lag_ms: int, alive: set[int]) -> list[int] | None:
        """The ISR this leader should ask for, or None to keep it: followers that have not
        caught up for `lag_ms` leave; live replicas that reached the high watermark and the
        start of this leader's epoch come back."""
        if not self.is_leader:
            return None
        isr = [
            r
            for r in self.isr
            if r == self.broker_id
            or (r in self.followers and now_ms - self.followers[r].last_caught_up_ms <= lag_ms)
        ]
        for r, state in self.followers.items():
            if (
                r not in isr
                and r in alive
                and self._may_join(state)
                and now_ms - state.last_caught_up_ms <= lag_ms
            ):
                isr.append(r)
        ordered = [r for r in self.replicas if r in isr]
        return None if ordered == self.isr else ordered

    def _may_join(self, state: ReplicaState) -> bool:
        """A follower may join the ISR once it holds the high watermark and the start of this
        leader's epoch."""
        epoch_start = next(
            (start for e, start in self.log.leader_epoch_cache.entries() if e == self.leader_epoch),
            0,
        )
        return state.log_end_offset >= max(self.log.high_watermark, epoch_start)

    def record_follower_fetch(self, replica: int, fetch_offset: int) -> None:
        """A follower fetching from `fetch_offset` holds everything below it.

        It counts as caught up now when it reached the leader's current log end, and as of its
        previous fetch when it reached the log end the leader had then (Kafka's rule: under a
        steady stream of appends a healthy follower is never exactly at the log end, yet it
        keeps up)."""
        state = self.followers.get(replica)
        if state is None or not self.is_leader:
            return
        now_ms = self.clock()
        leader_leo = self.log.log_end_offset
        state.log_end_offset = fetch_offset
        if fetch_offset >= leader_leo:
            state.last_caught_up_ms = now_ms
        elif fetch_offset >= state.last_fetch_leader_leo >= 0:
            state.last_caught_up_ms = max(state.last_caught_up_ms, state.last_fetch_ms)
        state.last_fetch_leader_leo = leader_leo
        state.last_fetch_ms = now_ms
        if self.maybe_advance_high_watermark():
            self._changed()
        if (
            self.on_follower_caught_up is not None
            and replica not in self.isr
            and self._may_join(state)
        ):
            self.on_follower_caught_up()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

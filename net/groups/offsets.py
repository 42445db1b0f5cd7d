"""Committed offsets of groups: the offset half of the group coordinators.

Kafka keeps group membership (GroupMetadataManager's groups, the join and sync protocol) apart
from committed offsets (OffsetMetadataManager): OffsetCommit, OffsetFetch, OffsetDelete and
offset expiry. This module holds that second half:

- the pure helpers both coordinators use: the records an OffsetCommit writes, the tombstones
  that delete offsets, OffsetFetch's answer, how a failed write maps to the client's error;
- `expired_offsets`, Kafka's expiry rule of `offsets.retention.minutes`;
- `ClassicGroupOffsets` and `ConsumerGroupOffsets`, the offset methods of the classic
  `GroupCoordinator` and of the KIP-848 `ConsumerGroupCoordinator` (mixins: the offsets live
  in each group, and commits interact with membership — a member's commit counts as a
  heartbeat, a group left with neither members nor offsets is dropped), and the periodic
  expiry check (`offsets.retention.check.interval.ms`) over both.

Offsets are applied in memory only once their write is replicated, so a fetch never returns
an offset a coordinator change could lose. Expired offsets are removed at once and written as
tombstones, so a reload of the partition does not bring them back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from kraft.net.groups.common import (
    ClassicGroups,
    Clock,
    ConsumerGroupConfig,
    GroupConfig,
    Records,
    TopicPartition,
    Writer,
)
from kraft.net.groups.consumer_records import encode_record
from kraft.net.groups.records import encode_offset_key, encode_offset_value
from kraft.net.groups.state import ClassicGroup, CommittedOffset, GroupState
from kraft.net.protocol import ErrorCode

if TYPE_CHECKING:
    from kraft.net.groups.consumer import ConsumerGroup
    from kraft.net.groups.consumer_records import ConsumerRecord
    from kraft.net.groups.timer import Timer

logger = logging.getLogger(__name__)

# When an offset's retention period starts (epoch ms), given the offset.
ExpiryBase = Callable[[CommittedOffset], int]


def offset_store_error(code: int) -> int:
    """Kafka's mapping of a failed offset commit write."""
    if code in (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (
        ErrorCode.MESSAGE_TOO_LARGE,
        ErrorCode.RECORD_LIST_TOO_LARGE,
        ErrorCode.INVALID_FETCH_SIZE,
    ):
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    return code


def offset_commit_records(
    group_id: str,
    offsets: Mapping[TopicPartition, CommittedOffset],
    now: int,
    metadata_max_bytes: int,
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, CommittedOffset], Records]:
    """What an OffsetCommit writes: (errors, offsets stamped with `now`, their records).
    Offsets whose metadata exceeds offset.metadata.max.bytes are refused in `errors`."""
    errors: dict[TopicPartition, int] = {}
    valid: dict[TopicPartition, CommittedOffset] = {}
    records: Records = []
    for tp, o in offsets.items():
        if len(o.metadata.encode()) > metadata_max_bytes:
            errors[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
            continue
        valid[tp] = stamped = replace(o, commit_timestamp=now)
        records.append((encode_offset_key(group_id, tp[0], tp[1]), encode_offset_value(stamped)))
    return errors, valid, records


def remove_offsets(
    group_id: str,
    offsets: dict[TopicPartition, CommittedOffset],
    partitions: Iterable[TopicPartition] | None = None,
) -> Records:
    """Removes the offsets of `partitions` (None: all) from a group's `offsets`; returns
    the tombstones that delete from the log those that were committed."""
    removing = sorted(offsets) if partitions is None else partitions
    return [
        (encode_offset_key(group_id, t, p), None)
        for t, p in removing
        if offsets.pop((t, p), None) is not None
    ]


def select_offsets(
    offsets: Mapping[TopicPartition, CommittedOffset], partitions: list[TopicPartition] | None
) -> list[tuple[TopicPartition, CommittedOffset | None]]:
    """OffsetFetch's answer from a group's offsets: all of them (sorted) when `partitions`
    is None, else one per requested partition (None: nothing committed)."""
    if partitions is None:
        return sorted(offsets.items())
    return [(tp, offsets.get(tp)) for tp in partitions]


def expired_offsets(
    offsets: Mapping[TopicPartition, CommittedOffset],
    now: int,
    retention_ms: int,
    base: ExpiryBase,
    keep: Callable[[str], bool] = lambda topic: False,
) -> list[TopicPartition]:
    """Kafka's OffsetExpirationCondition: the offsets whose retention period, counted from
    `base(offset)`, has passed; offsets of topics `keep` says are in use never expire."""
    return sorted(
        tp for tp, o in offsets.items() if not keep(tp[0]) and now - base(o) >= retention_ms
    )


def classic_expiry_base(group: ClassicGroup) -> ExpiryBase | None:
    """Kafka's ClassicGroup.offsetExpirationCondition: when the retention of each offset of
    `group` starts, or None while its offsets cannot expire.

    - an empty group that has had members (a protocol type): from the time it became empty
      (its state timestamp; the commit time when that is unknown, as after loading a record
      written without one);
    - a group of standalone commits (never any member): from each offset's commit time;
    - a group with members: never (a stable consumer group's offsets of topics it no longer
      subscribes to expire from their commit time — see `ClassicGroupOffsets`)."""
    if group.protocol_type is None:
        return lambda o: o.commit_timestamp
    if group.state is GroupState.EMPTY:
        emptied = group.state_timestamp
        return lambda o: emptied if emptied >= 0 else o.commit_timestamp
    if group.is_consumer_group and group.subscribed_topics is not None:
        if group.state is GroupState.STABLE:
            return lambda o: o.commit_timestamp
    return None


class ClassicGroupOffsets:
    """OffsetCommit, OffsetFetch, OffsetDelete and offset expiry of classic groups: the offset
    methods of `GroupCoordinator`, which provides the state and membership hooks below."""

    config: GroupConfig
    clock: Clock
    timer: Timer
    writer: Writer
    tag: str
    groups: dict[str, ClassicGroup]

    def check_group(self, group_id: str, require_id: bool = True) -> int:
        raise NotImplementedError

    def partition_of(self, group_id: str) -> int:
        raise NotImplementedError

    def _schedule_heartbeat(self, group: ClassicGroup, member_id: str, timeout_ms: int) -> None:
        raise NotImplementedError

    def _maybe_forget(self, group: ClassicGroup) -> None:
        raise NotImplementedError

    def _maybe_mark_dead(self, group: ClassicGroup) -> Records:
        raise NotImplementedError

    def commit_offsets(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        offsets: dict[TopicPartition, CommittedOffset],
        respond: Callable[[dict[TopicPartition, int]], None],
        *,
        missing_group_error: int = ErrorCode.ILLEGAL_GENERATION,
    ) -> None:
        """Store offsets for a group: as a member of its current generation, or, with
        generation -1 and no member id, for a group without members ("simple" consumers
        that assign partitions themselves). Answers once replicated."""

        def all_(code: int) -> None:
            respond(dict.fromkeys(offsets, code))

        error = self.check_group(group_id, require_id=False)
        if error:
            all_(error)
            return
        group = self.groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                # Not a group this coordinator knows: a member of a generation long gone.
                all_(missing_group_error)
                return
            group = self.groups[group_id] = ClassicGroup(
                group_id, self.partition_of(group_id), self.clock()
            )
        error = self._validate_offset_commit(group, generation_id, member_id, group_instance_id)
        if error:
            all_(error)
            self._maybe_forget(group)
            return
        if group.state is GroupState.COMPLETING_REBALANCE:
            # A member of the new generation that has not synced yet.
            all_(ErrorCode.REBALANCE_IN_PROGRESS)
            return
        member = group.members.get(member_id)
        if member is not None:
            self._schedule_heartbeat(group, member_id, member.session_timeout_ms)
        self._store_offsets(group, offsets, respond)

    def _validate_offset_commit(
        self,
        group: ClassicGroup,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
    ) -> int:
        if group.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation_id >= 0 or member_id or group_instance_id is not None:
            if group.is_static_member_fenced(group_instance_id, member_id):
                return ErrorCode.FENCED_INSTANCE_ID
            if member_id not in group.members:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
            return ErrorCode.NONE
        if group.state is not GroupState.EMPTY:
            # Only members may commit for a group that has some.
            return ErrorCode.UNKNOWN_MEMBER_ID
        return ErrorCode.NONE

    def _store_offsets(
        self,
        group: ClassicGroup,
        offsets: dict[TopicPartition, CommittedOffset],
        respond: Callable[[dict[TopicPartition, int]], None],
    ) -> None:
        errors, valid, records = offset_commit_records(
            group.group_id, offsets, self.clock(), self.config.offset_metadata_max_bytes
        )
        if not records:
            respond(errors)
            self._maybe_forget(group)
            return

        def stored(code: int) -> None:
            if code == ErrorCode.NONE:
                # Visible to fetches only once replicated, as in Kafka.
                if self.groups.get(group.group_id) is group:
                    group.offsets.update(valid)
            else:
                logger.info(
                    "%sgroup %s: offset commit failed with error %d",
                    self.tag,
                    group.group_id,
                    code,
                )
            errors.update(dict.fromkeys(valid, offset_store_error(code)))
            respond(errors)
            self._maybe_forget(group)

        self.writer(group.partition, records, stored)

    def fetch_offsets(
        self, group_id: str, partitions: list[TopicPartition] | None
    ) -> tuple[int, list[tuple[TopicPartition, CommittedOffset | None]]]:
        """(group error, offsets): every committed offset when `partitions` is None, else one
        entry per requested partition (None: nothing committed). Offsets are only those
        already replicated, so `require_stable` needs nothing more until transactions."""
        error = self.check_group(group_id, require_id=False)
        if error:
            return error, []
        group = self.groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            return ErrorCode.NONE, [(tp, None) for tp in partitions or []]
        return ErrorCode.NONE, select_offsets(group.offsets, partitions)

    def delete_offsets(
        self,
        group_id: str,
        partitions: list[TopicPartition],
        respond: Callable[[int, dict[TopicPartition, int]], None],
    ) -> None:
        """OffsetDelete: allowed for an empty group, and for the topics a consumer group
        does not subscribe to."""
        error = self.check_group(group_id)
        if error:
            respond(error, {})
            return
        group = self.groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            respond(ErrorCode.GROUP_ID_NOT_FOUND, {})
            return
        results: dict[TopicPartition, int] = {}
        if group.state is GroupState.EMPTY:
            eligible = list(partitions)
        elif group.is_consumer_group:
            eligible = []
            for tp in partitions:
                if group.is_subscribed_to(tp[0]):
                    results[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
                else:
                    eligible.append(tp)
        else:
            respond(ErrorCode.NON_EMPTY_GROUP, {})
            return
        results.update(dict.fromkeys(eligible, ErrorCode.NONE))
        records = remove_offsets(group.group_id, group.offsets, eligible)
        records += self._maybe_mark_dead(group)
        if not records:
            respond(ErrorCode.NONE, results)
            return

        def written(code: int) -> None:
            if code:
                mapped = offset_store_error(code)
                for tp in eligible:
                    results[tp] = mapped
            respond(ErrorCode.NONE, results)

        self.writer(group.partition, records, written)

    def expire_offsets(self, partitions: Iterable[int]) -> int:
        """Remove the offsets past `offsets.retention.minutes` of the groups of `partitions`
        (those served here), with tombstones; a group left empty without offsets is dropped
        (with a tombstone for its metadata). Returns how many offsets expired."""
        now = self.clock()
        served = set(partitions)
        by_partition: dict[int, Records] = {}
        expired_total = 0
        for group in list(self.groups.values()):
            if group.partition not in served:
                continue
            base = classic_expiry_base(group)
            if base is None:
                continue
            keep: Callable[[str], bool] = lambda topic: False  # noqa: E731
            if group.state is GroupState.STABLE:
                keep = group.is_subscribed_to
            expired = expired_offsets(
                group.offsets, now, self.config.offsets_retention_ms, base, keep
            )
            if not expired:
                continue
            expired_total += len(expired)
            records = remove_offsets(group.group_id, group.offsets, expired)
            records += self._maybe_mark_dead(group)
            by_partition.setdefault(group.partition, []).extend(records)
            logger.info(
                "%sgroup %s: %d committed offsets expired (offsets.retention.minutes)",
                self.tag,
                group.group_id,
                len(expired),
            )
        for partition, records in sorted(by_partition.items()):
            self.writer(partition, records, self._expiry_written(partition))
        return expired_total

    def _expiry_written(self, partition: int) -> Callable[[int], None]:
        def done(code: int) -> None:
            if code:
                # Gone from memory already; the next load may bring them back, and the next
                # expiry check after it removes them again.
                logger.warning(
                    "%swriting expired offsets of partition %d failed with error %d",
                    self.tag,
                    partition,
                    code,
                )

        return done


# The timer key of the periodic expiry check.
OFFSET_EXPIRY_TIMER = ("offset-expiry",)


class ConsumerGroupOffsets:
    """OffsetCommit, OffsetFetch and OffsetDelete of KIP-848 consumer groups, and the periodic
    offset expiry over both kinds of group: the offset methods of `ConsumerGroupCoordinator`,
    which provides the state and write hooks below."""

    classic: ClassicGroups
    config: ConsumerGroupConfig
    tag: str
    groups: dict[str, ConsumerGroup]
    _expiry_scheduled: bool

    @property
    def clock(self) -> Clock:
        raise NotImplementedError

    def _write(self, partition: int, raw: Records, done: Callable[[int], None]) -> None:
        raise NotImplementedError

    def _apply(self, group: ConsumerGroup, record: ConsumerRecord) -> None:
        raise NotImplementedError

    def _group_tombstones(self, group: ConsumerGroup) -> list[ConsumerRecord]:
        raise NotImplementedError

    def _log_failure(self, group: ConsumerGroup, what: str) -> Callable[[int], None]:
        raise NotImplementedError

    def commit_offsets(
        self,
        group_id: str,
        member_epoch: int,
        member_id: str,
        group_instance_id: str | None,
        offsets: dict[TopicPartition, CommittedOffset],
        respond: Callable[[dict[TopicPartition, int]], None],
        *,
        api_version: int = 9,
    ) -> None:
        """OffsetCommit for a consumer group: from a member at its current epoch (v9+: the
        generation field carries the member epoch), or, with epoch -1, from outside the
        group (admin tools) while it has no members."""

        def all_(code: int) -> None:
            respond(dict.fromkeys(offsets, code))

        error = self.classic.check_group(group_id, require_id=False)
        group = self.groups.get(group_id)
        if error or group is None:
            all_(error or ErrorCode.GROUP_ID_NOT_FOUND)
            return
        if not (member_epoch < 0 and not group.members):
            member = group.members.get(member_id)
            if member is None:
                all_(ErrorCode.UNKNOWN_MEMBER_ID)
                return
            if api_version < 9:
                all_(ErrorCode.UNSUPPORTED_VERSION)
                return
            if member_epoch != member.member_epoch:
                all_(ErrorCode.STALE_MEMBER_EPOCH)
                return
        errors, valid, raw = offset_commit_records(
            group_id, offsets, self.clock(), self.config.offset_metadata_max_bytes
        )
        if not raw:
            respond(errors)
            return

        def stored(code: int) -> None:
            if code == ErrorCode.NONE and self.groups.get(group_id) is group:
                group.offsets.update(valid)  # visible once replicated, as in Kafka
            errors.update(dict.fromkeys(valid, offset_store_error(code)))
            respond(errors)

        self._write(group.partition, raw, stored)

    def fetch_offsets(
        self,
        group_id: str,
        partitions: list[TopicPartition] | None,
        member_id: str | None = None,
        member_epoch: int = -1,
    ) -> tuple[int, list[tuple[TopicPartition, CommittedOffset | None]]]:
        """OffsetFetch for a consumer group: members (v9+) give their id and epoch and must
        be at their current epoch; without them (admin tools) anyone may read."""
        error = self.classic.check_group(group_id, require_id=False)
        group = self.groups.get(group_id)
        if error or group is None:
            return error or ErrorCode.GROUP_ID_NOT_FOUND, []
        if member_id or member_epoch >= 0:
            member = group.members.get(member_id or "")
            if member is None:
                return ErrorCode.UNKNOWN_MEMBER_ID, []
            if member_epoch != member.member_epoch:
                return ErrorCode.STALE_MEMBER_EPOCH, []
        return ErrorCode.NONE, select_offsets(group.offsets, partitions)

    def delete_offsets(
        self,
        group_id: str,
        partitions: list[TopicPartition],
        respond: Callable[[int, dict[TopicPartition, int]], None],
    ) -> None:
        """OffsetDelete: offsets of topics the group does not subscribe to (any, when it
        has no members)."""
        error = self.classic.check_group(group_id)
        group = self.groups.get(group_id)
        if error or group is None:
            respond(error or ErrorCode.GROUP_ID_NOT_FOUND, {})
            return
        results: dict[TopicPartition, int] = {}
        for tp in partitions:
            subscribed = bool(group.members) and group.is_subscribed_to(tp[0])
            results[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC if subscribed else ErrorCode.NONE
        deletable = [tp for tp, code in results.items() if code == ErrorCode.NONE]
        raw = remove_offsets(group_id, group.offsets, deletable)

        def written(code: int) -> None:
            if code:
                for tp, result in results.items():
                    if result == ErrorCode.NONE:
                        results[tp] = offset_store_error(code)
            respond(ErrorCode.NONE, results)

        self._write(group.partition, raw, written)

    # ------------------------------------------------------------------ expiry

    def _schedule_offset_expiry(self) -> None:
        """Check for expired offsets every offsets.retention.check.interval.ms while this
        broker coordinates any partition (a load starts the checks again)."""
        if self._expiry_scheduled:
            return
        self._expiry_scheduled = True
        self.classic.timer.schedule(
            OFFSET_EXPIRY_TIMER,
            self.classic.config.offsets_retention_check_interval_ms,
            self._offset_expiry_due,
        )

    def _offset_expiry_due(self) -> None:
        self._expiry_scheduled = False
        if not self.classic.partitions:
            return
        self.expire_offsets(self.classic.active_partitions())
        self._schedule_offset_expiry()

    def expire_offsets(self, partitions: Iterable[int]) -> int:
        """Expire the offsets of both kinds of group of `partitions` (Kafka's
        cleanupExpiredOffsets); returns how many expired. A consumer group's offset expires
        `offsets.retention.minutes` after its commit unless the group subscribes to its topic
        (it subscribes to nothing once it has no members); a consumer group left without
        members or offsets is deleted, with tombstones for its records."""
        served = set(partitions)
        expired_total = self.classic.expire_offsets(served)
        now = self.clock()
        retention_ms = self.classic.config.offsets_retention_ms
        for group in list(self.groups.values()):
            if group.partition not in served:
                continue
            keep: Callable[[str], bool] = group.is_subscribed_to
            if not group.members:
                keep = lambda topic: False  # noqa: E731
            expired = expired_offsets(
                group.offsets, now, retention_ms, lambda o: o.commit_timestamp, keep
            )
            if not expired:
                continue
            expired_total += len(expired)
            raw = remove_offsets(group.group_id, group.offsets, expired)
            logger.info(
                "%sconsumer group %s: %d committed offsets expired (offsets.retention.minutes)",
                self.tag,
                group.group_id,
                len(expired),
            )
            if not group.members and not group.offsets:
                records = self._group_tombstones(group)
                for record in records:
                    self._apply(group, record)
                raw += [encode_record(r) for r in records]
                logger.info(
                    "%sconsumer group %s: empty and without offsets; deleted",
                    self.tag,
                    group.group_id,
                )
            self._write(group.partition, raw, self._log_failure(group, "expiring offsets"))
        return expired_total

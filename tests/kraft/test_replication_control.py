from __future__ import annotations

import uuid
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from kraft.controller.replication import (
    NO_LEADER,
    RECOVERED,
    RECOVERING,
    BrokerHeartbeats,
    alter_partition,
    elect_leaderless,
    preferred_leader_changes,
    remove_broker,
    usable_brokers,
)
from kraft.metadata.image import MetadataImage
from kraft.net.protocol import ErrorCode, Message
from kraft.net.protocol import _generated as m

TOPIC_ID = uuid.UUID(int=7)


def image_with(
    brokers: dict[int, bool], replicas: list[int], isr: list[int], leader: int
) -> MetadataImage:
    """Brokers (id → fenced) and one partition t-0."""
    image = MetadataImage()
    for b, fenced in brokers.items():
        image.apply(m.RegisterBrokerRecord(broker_id=b, broker_epoch=b, fenced=fenced))
    image.apply(m.TopicRecord(name="t", topic_id=TOPIC_ID))
    image.apply(
        m.PartitionRecord(
            partition_id=0,
            topic_id=TOPIC_ID,
            replicas=replicas,
            isr=isr,
            leader=leader,
            leader_epoch=0,
            partition_epoch=0,
        )
    )
    return image


def apply_all(image: MetadataImage, records: list) -> None:
    for r in records:
        image.apply(r)


def part(image: MetadataImage):  # type: ignore[no-untyped-def]
    state = image.partition("t", 0)
    assert state is not None
    return state


def test_fencing_the_leader_elects_the_next_isr_member_in_replica_order() -> None:
    image = image_with({1: False, 2: False, 3: False}, [1, 2, 3], [1, 3, 2], 1)
    image.brokers[1].fenced = True
    records = remove_broker(image, 1, lambda _: False, usable_brokers(image))
    apply_all(image, records)
    state = part(image)
    assert (state.leader, state.isr) == (2, [3, 2])
    assert (state.leader_epoch, state.partition_epoch) == (1, 1)


def test_the_last_isr_member_leaves_for_the_elr_and_leads_again_when_back() -> None:
    image = image_with({1: False, 2: False}, [1, 2], [1], 1)
    image.brokers[1].fenced = True
    apply_all(image, remove_broker(image, 1, lambda _: False, usable_brokers(image)))
    state = part(image)
    # KIP-966: the ISR may empty; below min ISR (1) its last member is eligible, and the
    # last leader is remembered. Broker 2 is neither: no leader without unclean election.
    assert (state.leader, state.isr, state.eligible_leader_replicas) == (NO_LEADER, [], [1])
    assert state.last_known_elr == [1]
    # It comes back: it leads again, from the ELR, with nothing lost, and is the ISR.
    image.brokers[1].fenced = False
    apply_all(image, elect_leaderless(image, usable_brokers(image), lambda _: False))
    state = part(image)
    assert (state.leader, state.leader_epoch, state.isr) == (1, 2, [1])
    assert (state.eligible_leader_replicas, state.last_known_elr) == ([], [])
    assert state.leader_recovery_state == RECOVERED


def test_unclean_election_takes_any_live_replica_and_marks_recovery() -> None:
    image = image_with({1: False, 2: False}, [1, 2], [1], 1)
    image.brokers[1].fenced = True
    apply_all(image, remove_broker(image, 1, lambda topic: topic == "t", usable_brokers(image)))
    state = part(image)
    assert (state.leader, state.isr, state.leader_recovery_state) == (2, [2], RECOVERING)


def test_eligible_leader_replicas_are_clean_candidates() -> None:
    image = image_with({1: False, 2: False, 3: False}, [1, 2, 3], [1], 1)
    image.apply(
        m.PartitionChangeRecord(topic_id=TOPIC_ID, partition_id=0, eligible_leader_replicas=[3])
    )
    image.brokers[1].fenced = True
    apply_all(image, remove_broker(image, 1, lambda _: False, usable_brokers(image)))
    assert part(image).leader == 3


def test_a_follower_leaves_the_isr_when_removed() -> None:
    image = image_with({1: False, 2: False, 3: False}, [1, 2, 3], [1, 2, 3], 1)
    apply_all(image, remove_broker(image, 3, lambda _: False, usable_brokers(image)))
    state = part(image)
    assert (state.leader, state.isr, state.leader_epoch) == (1, [1, 2], 0)


def test_preferred_leader_returns_when_in_sync() -> None:
    image = image_with({1: False, 2: False}, [1, 2], [2, 1], 2)
    apply_all(image, preferred_leader_changes(image, usable_brokers(image)))
    assert part(image).leader == 1
    assert preferred_leader_changes(image, usable_brokers(image)) == []


def test_alter_partition_checks_epochs_and_membership() -> None:
    image = image_with({1: False, 2: False, 3: True}, [1, 2, 3], [1, 2], 1)
    ok = alter_partition(image, 1, TOPIC_ID, 0, 0, 0, [1], 0)
    assert ok.error_code == 0 and ok.record is not None
    image.apply(ok.record)
    assert (part(image).isr, part(image).partition_epoch) == ([1], 1)
    stale = alter_partition(image, 1, TOPIC_ID, 0, 0, 0, [1, 2], 0)
    assert stale.error_code == ErrorCode.INVALID_UPDATE_VERSION
    assert alter_partition(image, 1, TOPIC_ID, 0, 5, 1, [1, 2], 0).error_code == (
        ErrorCode.FENCED_LEADER_EPOCH
    )
    assert alter_partition(image, 2, TOPIC_ID, 0, 0, 1, [1, 2], 0).error_code == (
        ErrorCode.NOT_LEADER_OR_FOLLOWER
    )
    assert alter_partition(image, 1, TOPIC_ID, 0, 0, 1, [1, 3], 0).error_code == (
        ErrorCode.INELIGIBLE_REPLICA  # 3 is fenced
    )
    assert (
        alter_partition(image, 1, TOPIC_ID, 0, 0, 1, [2], 0).error_code == ErrorCode.INVALID_REQUEST
    )
    assert alter_partition(image, 1, uuid.UUID(int=9), 0, 0, 1, [1], 0).error_code == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    )


def test_heartbeats_expire_after_the_session_timeout() -> None:
    now = [0]
    beats = BrokerHeartbeats(lambda: now[0])
    beats.touch(1)
    beats.touch(2)
    now[0] = 5000
    beats.touch(2)
    now[0] = 9500
    assert beats.expired(9000) == [1]
    beats.forget(1)
    assert beats.expired(9000) == []


# --------------------------------------------------------------------------- ELR (KIP-966)


def min_isr(n: int) -> Callable[[str], int]:
    return lambda _topic: n


def never(_topic: str) -> bool:
    return False


def shrink(image: MetadataImage, isr: list[int], minimum: int) -> None:
    """The leader's AlterPartition to `isr`, which must be accepted."""
    state = part(image)
    result = alter_partition(
        image,
        state.leader,
        TOPIC_ID,
        0,
        state.leader_epoch,
        state.partition_epoch,
        isr,
        state.leader_recovery_state,
        min_isr(minimum),
    )
    assert result.error_code == 0 and result.record is not None
    image.apply(result.record)


def elr_state(image: MetadataImage) -> tuple[int, list[int], list[int], list[int]]:
    state = part(image)
    return state.leader, state.isr, state.eligible_leader_replicas, state.last_known_elr


def test_isr_shrinking_below_min_isr_puts_the_removed_replicas_in_the_elr() -> None:
    image = image_with({1: False, 2: False, 3: False}, [1, 2, 3], [1, 2, 3], 1)
    shrink(image, [1, 2], 2)
    # Still at min ISR: the high watermark moves on without 3, which is not eligible.
    assert elr_state(image) == (1, [1, 2], [], [])
    shrink(image, [1], 2)
    # Below min ISR the high watermark stops: 2 holds every committed write.
    assert elr_state(image) == (1, [1], [2], [])
    state = part(image)
    assert (state.leader_epoch, state.partition_epoch) == (0, 2)


def test_back_at_min_isr_the_elr_is_cleared_and_isr_members_leave_it() -> None:
    image = image_with({1: False, 2: False, 3: False}, [1, 2, 3], [1, 2, 3], 1)
    shrink(image, [1], 3)
    assert elr_state(image) == (1, [1], [2, 3], [])
    shrink(image, [1, 2], 3)
    assert elr_state(image) == (1, [1, 2], [3], [])  # never in both ISR and ELR
    shrink(image, [1, 2, 3], 3)
    assert elr_state(image) == (1, [1, 2, 3], [], [])
    assert part(image).partition_epoch == 3


def test_leader_lost_with_an_empty_isr_is_elected_cleanly_from_the_elr() -> None:
    image = image_with({1: False, 2: False, 3: False}, [1, 2, 3], [1, 2, 3], 1)
    shrink(image, [1], 2)
    shrink(image, [1, 3], 2)
    shrink(image, [1], 2)
    assert elr_state(image) == (1, [1], [3], [])
    image.brokers[1].fenced = True
    apply_all(image, remove_broker(image, 1, never, usable_brokers(image), min_isr(2)))
    state = part(image)
    # 1 joins the ELR as it leaves the ISR; 3 is eligible and usable: it leads, as the ISR,
    # and 1 stays eligible (still below min ISR). 2 never was eligible.
    assert elr_state(image) == (3, [3], [1], [])
    assert (state.leader_epoch, state.leader_recovery_state) == (1, RECOVERED)


def test_fencing_keeps_a_replica_in_the_elr_but_an_unclean_shutdown_removes_it() -> None:
    image = image_with({1: False, 2: False, 3: False}, [1, 2, 3], [1, 2, 3], 1)
    shrink(image, [1], 3)
    epoch = part(image).partition_epoch
    image.brokers[3].fenced = True
    assert remove_broker(image, 3, never, usable_brokers(image), min_isr(3)) == []
    # Broker 3 registers again after an unclean shutdown: it may have lost committed writes.
    records = remove_broker(
        image, 3, never, usable_brokers(image), min_isr(3), unclean_shutdown=True
    )
    apply_all(image, records)
    assert elr_state(image) == (1, [1], [2], [])
    assert part(image).partition_epoch == epoch + 1
    assert part(image).leader_epoch == 0  # the leader did not change


def test_with_isr_and_elr_empty_and_unclean_disabled_there_is_no_leader() -> None:
    image = image_with({1: False, 2: False, 3: False}, [1, 2, 3], [1, 2, 3], 1)
    shrink(image, [1], 1)
    image.brokers[1].fenced = True
    apply_all(image, remove_broker(image, 1, never, usable_brokers(image), min_isr(1)))
    assert elr_state(image) == (NO_LEADER, [], [1], [1])
    apply_all(image, remove_broker(image, 1, never, usable_brokers(image), unclean_shutdown=True))
    assert elr_state(image) == (NO_LEADER, [], [], [1])
    # 2 and 3 are usable but were never eligible: without unclean election nobody leads.
    assert elect_leaderless(image, usable_brokers(image), never) == []
    # With it, 2 leads alone, recovering; nothing of the old eligibility survives.
    apply_all(image, elect_leaderless(image, usable_brokers(image), lambda _: True))
    assert elr_state(image) == (2, [2], [], [])
    assert part(image).leader_recovery_state == RECOVERING


def test_the_last_known_leader_leads_again_when_isr_and_elr_are_empty() -> None:
    """Kafka's balanced recovery: the last leader, back after an unclean shutdown, is the
    best candidate there is. It is an unclean election (RECOVERING), allowed without
    `unclean.leader.election.enable` because nobody else is known to be better."""
    image = image_with({1: False, 2: False}, [1, 2], [1], 1)
    image.brokers[1].fenced = True
    apply_all(image, remove_broker(image, 1, never, usable_brokers(image)))
    apply_all(image, remove_broker(image, 1, never, usable_brokers(image), unclean_shutdown=True))
    assert elr_state(image) == (NO_LEADER, [], [], [1])
    image.brokers[1].fenced = False
    apply_all(image, elect_leaderless(image, usable_brokers(image), never))
    assert elr_state(image) == (1, [1], [], [])
    assert part(image).leader_recovery_state == RECOVERING


def test_an_unclean_election_clears_the_elr() -> None:
    image = image_with({1: False, 2: False, 3: False}, [1, 2, 3], [1], 1)
    image.apply(
        m.PartitionChangeRecord(topic_id=TOPIC_ID, partition_id=0, eligible_leader_replicas=[2])
    )
    image.brokers[2].fenced = True
    image.brokers[1].fenced = True
    apply_all(image, remove_broker(image, 1, lambda _: True, usable_brokers(image), min_isr(2)))
    # No eligible replica is usable: 3 leads uncleanly; 1 and 2 must truncate to it.
    assert elr_state(image) == (3, [3], [], [])
    assert part(image).leader_recovery_state == RECOVERING


def test_the_leader_reports_recovered_and_stays_alone_while_recovering() -> None:
    image = image_with({1: False, 2: False}, [1, 2], [1], 1)
    image.apply(m.PartitionChangeRecord(topic_id=TOPIC_ID, partition_id=0, leader_recovery_state=1))
    refused = alter_partition(image, 1, TOPIC_ID, 0, 0, 1, [1, 2], RECOVERING)
    assert refused.error_code == ErrorCode.INVALID_REQUEST
    done = alter_partition(image, 1, TOPIC_ID, 0, 0, 1, [1], RECOVERED)
    assert done.error_code == 0 and done.record is not None
    assert done.record.isr is None and done.record.leader_recovery_state == RECOVERED
    image.apply(done.record)
    assert part(image).leader_recovery_state == RECOVERED
    assert alter_partition(image, 1, TOPIC_ID, 0, 0, 2, [1], RECOVERED).record is None


# A model of the data: which replicas hold every committed write. Writes commit only while
# the ISR has at least min ISR members, onto every ISR member; a replica joining the ISR has
# caught up; an unclean shutdown may lose writes; an unclean election starts over from its
# leader (the loss it may cause is what unclean election accepts).
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["commit", "shrink", "expand", "fence", "unfence", "crash"]),
        st.integers(1, 4),
    ),
    max_size=40,
)


@given(
    ops=_OPS,
    minimum=st.integers(1, 4),
    unclean=st.booleans(),
)
def test_clean_elections_only_ever_pick_replicas_with_every_committed_write(
    ops: list[tuple[str, int]], minimum: int, unclean: bool
) -> None:
    replicas = [1, 2, 3, 4]
    image = image_with({b: False for b in replicas}, replicas, list(replicas), 1)
    has_all = set(replicas)
    unclean_for = (lambda _: True) if unclean else never
    for op, broker in ops:
        before = part(image)
        old = (before.leader, before.leader_epoch, before.partition_epoch)
        clean_candidates = set(before.isr) | set(before.eligible_leader_replicas)
        records: list[Message] = []
        if op == "commit":
            if before.leader != NO_LEADER and len(before.isr) >= minimum:
                has_all = set(before.isr)
            continue
        if op in ("shrink", "expand") and before.leader != NO_LEADER:
            if op == "shrink" and broker != before.leader and broker in before.isr:
                isr = [r for r in before.isr if r != broker]
            elif (
                op == "expand"
                and broker not in before.isr
                and broker in usable_brokers(image)
                and before.leader_recovery_state == RECOVERED
            ):
                isr = [*before.isr, broker]
            else:
                continue
            result = alter_partition(
                image,
                before.leader,
                TOPIC_ID,
                0,
                before.leader_epoch,
                before.partition_epoch,
                isr,
                before.leader_recovery_state,
                min_isr(minimum),
                unclean_for,
            )
            assert result.error_code == 0
            records = [result.record] if result.record else []
            if op == "expand":
                has_all.add(broker)  # it caught up before it asked to join
        elif op == "fence" and not image.brokers[broker].fenced:
            image.brokers[broker].fenced = True
            records = remove_broker(
                image, broker, unclean_for, usable_brokers(image), min_isr(minimum)
            )
        elif op == "crash":
            # Registered again after an unclean shutdown: fenced, and it may have lost writes.
            image.brokers[broker].fenced = True
            has_all.discard(broker)
            records = remove_broker(
                image,
                broker,
                unclean_for,
                usable_brokers(image),
                min_isr(minimum),
                unclean_shutdown=True,
            )
        elif op == "unfence" and image.brokers[broker].fenced:
            image.brokers[broker].fenced = False
            records = elect_leaderless(image, usable_brokers(image), unclean_for, min_isr(minimum))
        assert len(records) <= 1
        apply_all(image, records)
        state = part(image)
        # Every record bumps the partition epoch; only a leader change bumps the leader's.
        assert state.partition_epoch == old[2] + len(records)
        assert state.leader_epoch == old[1] + (state.leader != old[0])
        if state.leader != old[0] and state.leader != NO_LEADER:
            if state.leader in clean_candidates:
                assert state.leader in has_all, "a clean election keeps every committed write"
            else:
                assert state.leader_recovery_state == RECOVERING, "unclean, and marked so"
                has_all = {state.leader}
        # The invariants of the ISR and the ELR.
        assert not set(state.isr) & set(state.eligible_leader_replicas)
        if len(state.isr) >= minimum:
            assert state.eligible_leader_replicas == []
        assert set(state.isr) | set(state.eligible_leader_replicas) <= has_all
        if state.leader != NO_LEADER:
            assert state.leader in state.isr and state.leader in usable_brokers(image)
        elif state.isr:
            assert not set(state.isr) & usable_brokers(image)

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from kraft.controller.replication import (
    NO_LEADER,
    RECOVERING,
    BrokerHeartbeats,
    alter_partition,
    elect_leaderless,
    preferred_leader_changes,
    remove_broker,
    usable_brokers,
)
from kraft.metadata.image import MetadataImage
from net.protocol import ErrorCode
from net.protocol import _generated as m

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


def test_the_last_isr_member_stays_and_there_is_no_leader_without_unclean() -> None:
    image = image_with({1: False, 2: False}, [1, 2], [1], 1)
    image.brokers[1].fenced = True
    apply_all(image, remove_broker(image, 1, lambda _: False, usable_brokers(image)))
    state = part(image)
    assert (state.leader, state.isr) == (NO_LEADER, [1])
    # It comes back: it leads again, from the ISR, with nothing lost.
    image.brokers[1].fenced = False
    apply_all(image, elect_leaderless(image, usable_brokers(image), lambda _: False))
    assert (part(image).leader, part(image).leader_epoch) == (1, 2)


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


@given(
    isr=st.lists(st.integers(1, 5), min_size=1, max_size=5, unique=True),
    fenced=st.sets(st.integers(1, 5)),
    unclean=st.booleans(),
)
def test_removing_brokers_never_empties_the_isr_or_elects_outside_it_when_clean(
    isr: list[int], fenced: set[int], unclean: bool
) -> None:
    replicas = [1, 2, 3, 4, 5]
    image = image_with({b: False for b in replicas}, replicas, isr, isr[0])
    for b in sorted(fenced):
        image.brokers[b].fenced = True
        before = list(part(image).isr)
        apply_all(image, remove_broker(image, b, lambda _: unclean, usable_brokers(image)))
        state = part(image)
        assert state.isr, "the ISR is never emptied"
        if state.leader != NO_LEADER:
            assert state.leader in usable_brokers(image), "only a live broker leads"
            if state.leader_recovery_state != RECOVERING:
                assert state.leader in before, "a clean election picks from the ISR"
            assert state.leader in state.isr

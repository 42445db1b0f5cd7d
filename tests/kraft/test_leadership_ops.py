"""Operator-driven leadership on the controller: a named replica made leader (kraft's
TransferLeadership) and broker maintenance mode (the broker config kraft.maintenance.mode),
as commands on an in-memory metadata log and through the controller's request service."""

from __future__ import annotations

from pathlib import Path

from kraft.config import NodeConfig
from kraft.controller.config_describe import ConfigEntry, describe_broker_configs
from kraft.controller.controller import Result, TopicSpec
from kraft.controller.leadership import maintenance_command, transfer_leadership_command
from kraft.controller.replication import alter_partition, preferred_leader_changes, remove_broker
from kraft.controller.replication import usable_brokers as usable
from kraft.controller.service import ControllerService
from kraft.metadata.image import BROKER_RESOURCE, MAINTENANCE_KEY, MetadataImage
from kraft.metadata.snapshot import image_to_records
from kraft.net.broker.handlers import supported_versions
from kraft.net.protocol import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    ErrorCode,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    Message,
    TransferLeadershipRequest,
    TransferLeadershipResponse,
    decode_request,
    encode_request,
)
from kraft.net.protocol import _generated as m
from tests.kraft.test_controller import Cluster, assert_replay_matches, cluster

TRANSFER_KEY = TransferLeadershipRequest.API_KEY


async def _topic(c: Cluster, name: str, assignments: dict[int, list[int]]) -> None:
    result = await c.create_one(TopicSpec(name, assignments=assignments))
    assert result.error_code == 0, result


def _state(c: Cluster, topic: str, index: int = 0) -> m.PartitionRecord:
    state = c.image.partition(topic, index)
    assert state is not None
    return state  # type: ignore[return-value]


async def _transfer(c: Cluster, topic: str, index: int, replica: int) -> tuple[int, str | None]:
    return await c.run(transfer_leadership_command(c.controller, topic, index, replica))


async def _maintenance(c: Cluster, broker: int, enable: bool) -> tuple[int, str | None]:
    return await c.run(maintenance_command(c.controller, broker, enable))


def _preferred(c: Cluster) -> list[Message]:
    return preferred_leader_changes(c.image, usable(c.image), c.controller.min_isr_for(c.image))


async def _commit(c: Cluster, *records: Message) -> None:
    """Records through the controller's log (so replays see them too)."""
    await c.run(lambda image: Result(list(records), None))


def _shrink_isr(c: Cluster, topic: str, isr: list[int]) -> Message:
    return m.PartitionChangeRecord(topic_id=c.image.topics[topic].topic_id, partition_id=0, isr=isr)


async def test_a_named_replica_in_the_isr_becomes_leader_and_preferred_election_returns_it() -> (
    None
):
    c = await cluster()
    await _topic(c, "t", {0: [1, 2, 3]})
    assert _state(c, "t").leader == 1
    epoch = _state(c, "t").leader_epoch
    assert await _transfer(c, "t", 0, 3) == (0, None)
    after = _state(c, "t")
    assert after.leader == 3
    assert after.leader_epoch == epoch + 1
    # A transfer, not a reassignment: the replica order and the ISR stay.
    assert after.replicas == [1, 2, 3] and after.isr == [1, 2, 3]
    records = _preferred(c)
    assert [r.leader for r in records] == [1]  # type: ignore[attr-defined]
    await _commit(c, *records)
    assert _state(c, "t").leader == 1
    assert_replay_matches(c)


async def test_a_transfer_that_cannot_be_made_names_why_and_commits_nothing() -> None:
    c = await cluster(brokers=4)
    await _topic(c, "t", {0: [1, 2, 3]})
    # Broker 2 out of the ISR, broker 3 fenced.
    await _commit(
        c,
        _shrink_isr(c, "t", [1, 3]),
        m.FenceBrokerRecord(id=3, epoch=c.image.brokers[3].epoch),
    )
    entries = len(c.log.entries)
    cases = [
        ("nope", 0, 1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "nope-0"),
        ("t", 5, 1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "t-5"),
        ("t", 0, 4, ErrorCode.INVALID_REPLICA_ASSIGNMENT, "no replica"),
        ("t", 0, 9, ErrorCode.INVALID_REPLICA_ASSIGNMENT, "no replica"),
        ("t", 0, 1, ErrorCode.ELECTION_NOT_NEEDED, "already leads"),
        ("t", 0, 2, ErrorCode.INELIGIBLE_REPLICA, "not in its ISR"),
        ("t", 0, 3, ErrorCode.INELIGIBLE_REPLICA, "fenced"),
    ]
    for topic, index, replica, code, why in cases:
        got_code, message = await _transfer(c, topic, index, replica)
        assert got_code == code, (topic, index, replica, message)
        assert message is not None and why in message
    assert len(c.log.entries) == entries
    assert _state(c, "t").leader == 1


async def test_no_transfer_to_a_broker_in_controlled_shutdown_or_maintenance() -> None:
    c = await cluster()
    await _topic(c, "t", {0: [1, 2, 3]})
    await _maintenance(c, 2, True)
    code, message = await _transfer(c, "t", 0, 2)
    assert code == ErrorCode.INELIGIBLE_REPLICA and message and "maintenance" in message
    await _commit(
        c,
        m.BrokerRegistrationChangeRecord(
            broker_id=3, broker_epoch=c.image.brokers[3].epoch, in_controlled_shutdown=1
        ),
    )
    code, message = await _transfer(c, "t", 0, 3)
    assert code == ErrorCode.INELIGIBLE_REPLICA and message and "controlled shutdown" in message


async def test_maintenance_moves_leaderships_keeps_isrs_and_survives_restarts() -> None:
    c = await cluster()
    await _topic(c, "a", {0: [2, 1, 3], 1: [2, 3, 1], 2: [1, 2, 3]})
    await _topic(c, "solo", {0: [2]})
    assert await _maintenance(c, 2, True) == (0, None)
    assert c.image.in_maintenance() == {2}
    assert c.image.broker_config(2) == {MAINTENANCE_KEY: "true"}
    assert [_state(c, "a", i).leader for i in range(3)] == [1, 3, 1]
    for i in range(3):
        assert 2 in _state(c, "a", i).isr  # still a follower in every ISR
    # Nobody else can lead it: the partition keeps its leader rather than go offline.
    assert _state(c, "solo").leader == 2
    # Neither the periodic preferred election nor a new registration brings leadership back.
    assert _preferred(c) == []
    await c.add_broker(2)
    assert c.image.in_maintenance() == {2}
    assert [_state(c, "a", i).leader for i in range(3)] == [1, 3, 1]
    # Snapshots and replays carry it.
    fresh = MetadataImage()
    for record in image_to_records(c.image):
        fresh.apply(record)
    assert fresh.in_maintenance() == {2}
    assert_replay_matches(c)


async def test_elections_pass_over_maintenance_unless_no_one_else_can_lead() -> None:
    c = await cluster()
    await _topic(c, "t", {0: [1, 2, 3]})
    await _maintenance(c, 2, True)
    unclean = c.controller.unclean_for(c.image)
    min_isr = c.controller.min_isr_for(c.image)
    # The leader goes: broker 3 leads, although 2 comes first in replica order.
    for r in remove_broker(c.image, 1, unclean, usable(c.image), min_isr):
        c.image.apply(r)
    assert _state(c, "t").leader == 3
    # And when 3 goes too, 2 leads rather than nobody.
    for r in remove_broker(c.image, 3, unclean, usable(c.image), min_isr):
        c.image.apply(r)
    assert _state(c, "t").leader == 2
    # Once 1 is back in the ISR, the periodic check moves leadership off 2.
    state = _state(c, "t")
    result = alter_partition(
        c.image,
        2,
        c.image.topics["t"].topic_id,
        0,
        state.leader_epoch,
        state.partition_epoch,
        [1, 2],
        0,
        min_isr,
    )
    assert result.error_code == 0 and result.record is not None
    c.image.apply(result.record)
    assert _state(c, "t").leader == 2  # an ISR change moves no leadership
    records = _preferred(c)
    assert [r.leader for r in records] == [1]  # type: ignore[attr-defined]


async def test_a_broker_in_maintenance_may_rejoin_the_isr() -> None:
    c = await cluster()
    await _topic(c, "t", {0: [1, 2, 3]})
    topic_id = c.image.topics["t"].topic_id
    await _commit(c, _shrink_isr(c, "t", [1, 3]))
    await _maintenance(c, 2, True)
    state = _state(c, "t")
    result = alter_partition(
        c.image, 1, topic_id, 0, state.leader_epoch, state.partition_epoch, [1, 2, 3], 0
    )
    assert result.error_code == 0 and result.record is not None
    assert result.record.isr == [1, 2, 3]


async def test_out_of_maintenance_a_preferred_election_brings_leadership_back() -> None:
    c = await cluster()
    await _topic(c, "t", {0: [2, 1, 3]})
    await _maintenance(c, 2, True)
    assert _state(c, "t").leader == 1
    # Asked again while in: still in, nothing more to move.
    entries = len(c.log.entries)
    assert await _maintenance(c, 2, True) == (0, None)
    assert len(c.log.entries) == entries
    assert await _maintenance(c, 2, False) == (0, None)
    assert c.image.in_maintenance() == frozenset()
    assert c.image.broker_config(2) == {}
    assert _state(c, "t").leader == 1  # taking it out moves nothing by itself
    await _commit(c, *_preferred(c))
    assert _state(c, "t").leader == 2
    assert_replay_matches(c)


async def test_maintenance_of_an_unregistered_broker_is_refused() -> None:
    c = await cluster()
    entries = len(c.log.entries)
    code, message = await _maintenance(c, 7, True)
    assert code == ErrorCode.BROKER_ID_NOT_REGISTERED and message and "7" in message
    assert len(c.log.entries) == entries


# ------------------------------------------------------------ the controller's request service


def _service(c: Cluster, tmp_path: Path) -> ControllerService:
    config = NodeConfig(
        node_id=1,
        process_roles=("broker", "controller"),
        listeners=(),
        advertised_listeners=(),
        log_dirs=(str(tmp_path),),
    )
    return ControllerService(
        config,
        "cluster",
        c.image,
        c.controller,
        is_active=lambda: True,
        quorum_status=lambda: None,
        last_offset=lambda: c.image.last_offset,
    )


def _broker_config(name: str, op: int, value: str | None) -> IncrementalAlterConfigsRequest:
    Config = IncrementalAlterConfigsRequest.AlterableConfig
    return IncrementalAlterConfigsRequest(
        resources=[
            IncrementalAlterConfigsRequest.AlterConfigsResource(
                resource_type=BROKER_RESOURCE,
                resource_name=name,
                configs=[Config(name=MAINTENANCE_KEY, config_operation=op, value=value)],
            )
        ]
    )


async def test_the_request_service_answers_transfers_and_maintenance(tmp_path: Path) -> None:
    c = await cluster()
    await _topic(c, "t", {0: [1, 2, 3]})
    service = _service(c, tmp_path)
    request = TransferLeadershipRequest(topic_name="t", partition_index=0, leader_id=2)
    answer = await service.handle_request(request, 0)
    assert isinstance(answer, TransferLeadershipResponse)
    assert (answer.error_code, answer.leader_id, answer.leader_epoch) == (0, 2, 1)
    answer = await service.handle_request(
        TransferLeadershipRequest(topic_name="t", partition_index=0, leader_id=5), 0
    )
    assert isinstance(answer, TransferLeadershipResponse)
    assert answer.error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT and answer.error_message
    assert answer.leader_id == 2

    answer = await service.handle_request(_broker_config("2", 0, "true"), 1)
    assert isinstance(answer, IncrementalAlterConfigsResponse)
    assert answer.responses[0].error_code == 0
    assert c.image.in_maintenance() == {2} and _state(c, "t").leader == 1
    for name, op, value, code in [
        ("x", 0, "true", ErrorCode.INVALID_REQUEST),
        ("2", 0, "maybe", ErrorCode.INVALID_CONFIG),
        ("9", 0, "true", ErrorCode.BROKER_ID_NOT_REGISTERED),
    ]:
        answer = await service.handle_request(_broker_config(name, op, value), 1)
        assert isinstance(answer, IncrementalAlterConfigsResponse)
        assert answer.responses[0].error_code == code, (name, value)
    assert c.image.in_maintenance() == {2}
    answer = await service.handle_request(_broker_config("2", 1, None), 1)
    assert isinstance(answer, IncrementalAlterConfigsResponse)
    assert answer.responses[0].error_code == 0 and c.image.in_maintenance() == frozenset()


async def test_other_dynamic_broker_configs_stay_refused(tmp_path: Path) -> None:
    c = await cluster()
    service = _service(c, tmp_path)
    Config = IncrementalAlterConfigsRequest.AlterableConfig
    request = IncrementalAlterConfigsRequest(
        resources=[
            IncrementalAlterConfigsRequest.AlterConfigsResource(
                resource_type=BROKER_RESOURCE,
                resource_name="1",
                configs=[Config(name="log.retention.ms", config_operation=0, value="1")],
            )
        ]
    )
    answer = await service.handle_request(request, 1)
    assert isinstance(answer, IncrementalAlterConfigsResponse)
    assert answer.responses[0].error_code == ErrorCode.INVALID_REQUEST
    assert c.image.broker_config(1) == {}


async def test_transfer_leadership_is_advertised_nowhere(tmp_path: Path) -> None:
    c = await cluster()
    answer = await _service(c, tmp_path).handle_request(ApiVersionsRequest(), 3)
    assert isinstance(answer, ApiVersionsResponse)
    advertised = {k.api_key for k in answer.api_keys}
    assert 43 in advertised and TRANSFER_KEY not in advertised
    assert TRANSFER_KEY not in supported_versions()  # brokers' client listeners


def test_transfer_leadership_round_trips_on_the_wire() -> None:
    request = TransferLeadershipRequest(topic_name="t", partition_index=3, leader_id=2)
    frame = encode_request(request, 0, correlation_id=9, client_id="kraft-broker")
    header, decoded = decode_request(bytes(frame)[4:])
    assert header.api_key == TRANSFER_KEY and header.correlation_id == 9
    assert decoded == request


async def test_the_broker_describes_its_maintenance_mode_as_a_dynamic_config(
    tmp_path: Path,
) -> None:
    c = await cluster()
    config = _service(c, tmp_path).config

    def entry() -> ConfigEntry:
        (found,) = describe_broker_configs(config, [MAINTENANCE_KEY], c.image)
        return found

    assert (entry().value, entry().source_name, entry().read_only) == (
        "false",
        "DEFAULT_CONFIG",
        False,
    )
    await _maintenance(c, 1, True)
    assert (entry().value, entry().source_name) == ("true", "DYNAMIC_BROKER_CONFIG")
    # Without the image (no metadata yet), only the static configs.
    assert MAINTENANCE_KEY not in {e.name for e in describe_broker_configs(config)}


async def test_new_partitions_are_not_led_by_a_broker_in_maintenance() -> None:
    c = await cluster()
    await _maintenance(c, 1, True)
    await _topic(c, "t", {0: [1, 2, 3], 1: [2, 1, 3]})
    await _topic(c, "solo", {0: [1]})
    assert [_state(c, "t", i).leader for i in (0, 1)] == [2, 2]
    assert _state(c, "t").isr == [1, 2, 3]  # a follower in sync from the start
    assert _state(c, "solo").leader == 1  # nobody else can

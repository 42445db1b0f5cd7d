"""Golden bytes: frames encoded by kafka-python 3 and aiokafka, read and reproduced by us.

Each case builds a request (or response) with another client's own encoder, then checks that
our decoder reads the values that were put in, and that our encoder gives back the very same
bytes. kafka-python 3 has two independent encoders (its JSON-driven classes and the older
hand-written ``kafka.protocol.old`` schemas); aiokafka has its own hand-written schemas.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from kraft.net.protocol import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    CreateTopicsRequest,
    DeleteRecordsRequest,
    ErrorCode,
    FetchRequest,
    FetchResponse,
    FindCoordinatorRequest,
    InitProducerIdRequest,
    JoinGroupRequest,
    ListOffsetsRequest,
    Message,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
    ProduceResponse,
    RequestHeader,
    StructSpec,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    spec_of,
)

kp = pytest.importorskip("kafka.protocol")

from aiokafka.protocol import admin as aio_admin  # noqa: E402
from aiokafka.protocol import coordination as aio_coordination  # noqa: E402
from aiokafka.protocol import fetch as aio_fetch  # noqa: E402
from aiokafka.protocol import group as aio_group  # noqa: E402
from aiokafka.protocol import metadata as aio_metadata  # noqa: E402
from aiokafka.protocol import offset as aio_offset  # noqa: E402
from aiokafka.protocol import produce as aio_produce  # noqa: E402
from aiokafka.protocol import transaction as aio_transaction  # noqa: E402
from kafka.protocol import consumer as kp_consumer  # noqa: E402
from kafka.protocol import metadata as kp_metadata  # noqa: E402
from kafka.protocol import producer as kp_producer  # noqa: E402
from kafka.protocol.admin import topics as kp_topics  # noqa: E402
from kafka.protocol.old import api_versions as old_api_versions  # noqa: E402
from kafka.protocol.old import fetch as old_fetch  # noqa: E402
from kafka.protocol.old import find_coordinator as old_find_coordinator  # noqa: E402
from kafka.protocol.old import group as old_group  # noqa: E402
from kafka.protocol.old import init_producer_id as old_init_producer_id  # noqa: E402
from kafka.protocol.old import list_offsets as old_list_offsets  # noqa: E402
from kafka.protocol.old import metadata as old_metadata  # noqa: E402
from kafka.protocol.old import produce as old_produce  # noqa: E402

# A tiny magic-2 record batch is just opaque bytes to the codec; any bytes will do.
RECORDS = bytes(range(61)) + b"payload"
TOPIC_ID = uuid.UUID("0b5c3f6e-8a7d-4a36-9c9f-1d2e3f405162")

Check = Callable[[RequestHeader, Any], None]


def kp_new(cls: Any, version: int, correlation_id: int = 11, **fields: Any) -> bytes:
    """Frame a request with kafka-python 3's JSON-driven classes."""
    request = cls[version](**fields)
    request.with_header(correlation_id=correlation_id, client_id="kp3")
    return bytes(request.encode(header=True, framed=True))


def kp_old(request: Any, correlation_id: int = 12) -> bytes:
    """Frame a request with kafka-python's hand-written (old) classes."""
    request.with_header(correlation_id=correlation_id, client_id="kp-old")
    return bytes(request.encode(header=True, framed=True))


def aio(request: Any, correlation_id: int = 13) -> bytes:
    """Frame a request as aiokafka's connection does: header + body, int32 size first."""
    header = request.build_request_header(correlation_id=correlation_id, client_id="aio")
    message = header.encode() + request.encode()
    return struct.pack(">i", len(message)) + message


def expect(cls: type[Message], **values: Any) -> Check:
    def check(header: RequestHeader, message: Any) -> None:
        assert type(message) is cls
        for name, want in values.items():
            got: Any = message
            for part in name.split("."):
                got = got[int(part)] if part.isdigit() else getattr(got, part)
            assert got == want, f"{name}: {got!r} != {want!r}"

    return check


REQUEST_CASES: list[tuple[str, Callable[[], bytes], Check]] = [
    # ---- ApiVersions
    (
        "kp3-ApiVersions-v0",
        lambda: kp_new(kp_metadata.ApiVersionsRequest, 0),
        expect(ApiVersionsRequest),
    ),
    (
        "kp3-ApiVersions-v3",
        lambda: kp_new(
            kp_metadata.ApiVersionsRequest,
            3,
            client_software_name="kafka-python",
            client_software_version="3.0.12",
        ),
        expect(
            ApiVersionsRequest,
            client_software_name="kafka-python",
            client_software_version="3.0.12",
        ),
    ),
    (
        "old-ApiVersions-v0",
        lambda: kp_old(old_api_versions.ApiVersionsRequest_v0()),
        expect(ApiVersionsRequest),
    ),
    (
        "old-ApiVersions-v3",
        lambda: kp_old(old_api_versions.ApiVersionsRequest_v3("kraft-test", "0.1", {})),
        expect(
            ApiVersionsRequest, client_software_name="kraft-test", client_software_version="0.1"
        ),
    ),
    (
        "aio-ApiVersions-v2",
        lambda: aio(aio_admin.ApiVersionRequest_v2()),
        expect(ApiVersionsRequest),
    ),
    # ---- Metadata
    (
        "kp3-Metadata-v0",
        lambda: kp_new(
            kp_metadata.MetadataRequest,
            0,
            topics=[kp_metadata.MetadataRequest.MetadataRequestTopic(name="orders")],
        ),
        expect(MetadataRequest, **{"topics.0.name": "orders"}),
    ),
    (
        "kp3-Metadata-v1-all-topics",
        lambda: kp_new(kp_metadata.MetadataRequest, 1, topics=None),
        expect(MetadataRequest, topics=None),
    ),
    (
        "kp3-Metadata-v9-flexible",
        lambda: kp_new(
            kp_metadata.MetadataRequest,
            9,
            topics=[
                kp_metadata.MetadataRequest.MetadataRequestTopic(name="a"),
                kp_metadata.MetadataRequest.MetadataRequestTopic(name="b"),
            ],
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=True,
        ),
        expect(
            MetadataRequest,
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=True,
            **{"topics.0.name": "a", "topics.1.name": "b"},
        ),
    ),
    (
        "kp3-Metadata-v12-topic-id",
        lambda: kp_new(
            kp_metadata.MetadataRequest,
            12,
            topics=[kp_metadata.MetadataRequest.MetadataRequestTopic(topic_id=TOPIC_ID, name=None)],
        ),
        expect(MetadataRequest, **{"topics.0.topic_id": TOPIC_ID, "topics.0.name": None}),
    ),
    (
        "old-Metadata-v1",
        lambda: kp_old(old_metadata.MetadataRequest_v1(["x", "y"])),
        expect(MetadataRequest, **{"topics.0.name": "x", "topics.1.name": "y"}),
    ),
    (
        "old-Metadata-v8",
        lambda: kp_old(old_metadata.MetadataRequest_v8(None, True, False, True)),
        expect(
            MetadataRequest,
            topics=None,
            allow_auto_topic_creation=True,
            include_cluster_authorized_operations=False,
            include_topic_authorized_operations=True,
        ),
    ),
    (
        "aio-Metadata-v5",
        lambda: aio(aio_metadata.MetadataRequest_v5(["t"], True)),
        expect(MetadataRequest, allow_auto_topic_creation=True, **{"topics.0.name": "t"}),
    ),
    # ---- Produce
    (
        "kp3-Produce-v3",
        lambda: kp_new(
            kp_producer.ProduceRequest,
            3,
            transactional_id=None,
            acks=-1,
            timeout_ms=30000,
            topic_data=[
                kp_producer.ProduceRequest.TopicProduceData(
                    name="orders",
                    partition_data=[
                        kp_producer.ProduceRequest.TopicProduceData.PartitionProduceData(
                            index=2, records=RECORDS
                        )
                    ],
                )
            ],
        ),
        expect(
            ProduceRequest,
            transactional_id=None,
            acks=-1,
            timeout_ms=30000,
            **{
                "topic_data.0.name": "orders",
                "topic_data.0.partition_data.0.index": 2,
                "topic_data.0.partition_data.0.records": RECORDS,
            },
        ),
    ),
    (
        "kp3-Produce-v9-flexible",
        lambda: kp_new(
            kp_producer.ProduceRequest,
            9,
            transactional_id="txn-1",
            acks=1,
            timeout_ms=1500,
            topic_data=[
                kp_producer.ProduceRequest.TopicProduceData(
                    name="t",
                    partition_data=[
                        kp_producer.ProduceRequest.TopicProduceData.PartitionProduceData(
                            index=0, records=RECORDS
                        ),
                        kp_producer.ProduceRequest.TopicProduceData.PartitionProduceData(
                            index=1, records=None
                        ),
                    ],
                )
            ],
        ),
        expect(
            ProduceRequest,
            transactional_id="txn-1",
            acks=1,
            **{
                "topic_data.0.partition_data.0.records": RECORDS,
                "topic_data.0.partition_data.1.records": None,
            },
        ),
    ),
    (
        "old-Produce-v7",
        lambda: kp_old(old_produce.ProduceRequest_v7(None, -1, 1000, [("orders", [(0, RECORDS)])])),
        expect(
            ProduceRequest,
            acks=-1,
            timeout_ms=1000,
            **{"topic_data.0.partition_data.0.records": RECORDS},
        ),
    ),
    (
        "aio-Produce-v3",
        lambda: aio(aio_produce.ProduceRequest_v3("tx", 1, 5000, [("t", [(7, RECORDS)])])),
        expect(
            ProduceRequest,
            transactional_id="tx",
            **{"topic_data.0.partition_data.0.index": 7},
        ),
    ),
    (
        "aio-Produce-v8",
        lambda: aio(aio_produce.ProduceRequest_v8(None, 0, 5000, [("t", [(0, RECORDS)])])),
        expect(ProduceRequest, acks=0),
    ),
    # ---- Fetch
    (
        "kp3-Fetch-v4",
        lambda: kp_new(
            kp_consumer.FetchRequest,
            4,
            replica_id=-1,
            max_wait_ms=500,
            min_bytes=1,
            max_bytes=52428800,
            isolation_level=1,
            topics=[
                kp_consumer.FetchRequest.FetchTopic(
                    topic="orders",
                    partitions=[
                        kp_consumer.FetchRequest.FetchTopic.FetchPartition(
                            partition=0, fetch_offset=42, partition_max_bytes=1048576
                        )
                    ],
                )
            ],
        ),
        expect(
            FetchRequest,
            max_wait_ms=500,
            isolation_level=1,
            **{"topics.0.topic": "orders", "topics.0.partitions.0.fetch_offset": 42},
        ),
    ),
    (
        "kp3-Fetch-v13-topic-id",
        lambda: kp_new(
            kp_consumer.FetchRequest,
            13,
            max_wait_ms=100,
            min_bytes=1,
            max_bytes=1000,
            session_id=0,
            session_epoch=-1,
            topics=[
                kp_consumer.FetchRequest.FetchTopic(
                    topic_id=TOPIC_ID,
                    partitions=[
                        kp_consumer.FetchRequest.FetchTopic.FetchPartition(
                            partition=3,
                            current_leader_epoch=7,
                            fetch_offset=100,
                            last_fetched_epoch=6,
                            log_start_offset=-1,
                            partition_max_bytes=4096,
                        )
                    ],
                )
            ],
            forgotten_topics_data=[],
            rack_id="rack-a",
        ),
        expect(
            FetchRequest,
            rack_id="rack-a",
            **{
                "topics.0.topic_id": TOPIC_ID,
                "topics.0.partitions.0.partition": 3,
                "topics.0.partitions.0.last_fetched_epoch": 6,
            },
        ),
    ),
    (
        "old-Fetch-v11",
        lambda: kp_old(
            old_fetch.FetchRequest_v11(
                -1,
                500,
                1,
                1 << 20,
                0,
                0,
                -1,
                [("orders", [(0, 5, 1000, -1, 65536)])],
                [("gone", [1, 2])],
                "r1",
            )
        ),
        expect(
            FetchRequest,
            session_epoch=-1,
            rack_id="r1",
            **{
                "topics.0.partitions.0.current_leader_epoch": 5,
                "forgotten_topics_data.0.topic": "gone",
                "forgotten_topics_data.0.partitions": [1, 2],
            },
        ),
    ),
    (
        "aio-Fetch-v4",
        lambda: aio(aio_fetch.FetchRequest_v4(-1, 100, 1, 1000, 0, [("t", [(0, 9, 500)])])),
        expect(FetchRequest, **{"topics.0.partitions.0.fetch_offset": 9}),
    ),
    # ---- ListOffsets
    (
        "kp3-ListOffsets-v1",
        lambda: kp_new(
            kp_consumer.ListOffsetsRequest,
            1,
            replica_id=-1,
            topics=[
                kp_consumer.ListOffsetsRequest.ListOffsetsTopic(
                    name="t",
                    partitions=[
                        kp_consumer.ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition(
                            partition_index=0, timestamp=-1
                        )
                    ],
                )
            ],
        ),
        expect(ListOffsetsRequest, **{"topics.0.partitions.0.timestamp": -1}),
    ),
    (
        "kp3-ListOffsets-v7-flexible",
        lambda: kp_new(
            kp_consumer.ListOffsetsRequest,
            7,
            replica_id=-1,
            isolation_level=1,
            topics=[
                kp_consumer.ListOffsetsRequest.ListOffsetsTopic(
                    name="t",
                    partitions=[
                        kp_consumer.ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition(
                            partition_index=1, current_leader_epoch=3, timestamp=-2
                        )
                    ],
                )
            ],
        ),
        expect(
            ListOffsetsRequest,
            isolation_level=1,
            **{"topics.0.partitions.0.current_leader_epoch": 3},
        ),
    ),
    (
        "old-ListOffsets-v4",
        lambda: kp_old(old_list_offsets.ListOffsetsRequest_v4(-1, 0, [("t", [(0, 2, -1)])])),
        expect(ListOffsetsRequest, **{"topics.0.partitions.0.current_leader_epoch": 2}),
    ),
    (
        "aio-ListOffsets-v2",
        lambda: aio(aio_offset.OffsetRequest_v2(-1, 1, [("t", [(0, -2)])])),
        expect(ListOffsetsRequest, isolation_level=1),
    ),
    # ---- CreateTopics
    (
        "kp3-CreateTopics-v5-flexible",
        lambda: kp_new(
            kp_topics.CreateTopicsRequest,
            5,
            topics=[
                kp_topics.CreateTopicsRequest.CreatableTopic(
                    name="new-topic",
                    num_partitions=3,
                    replication_factor=2,
                    assignments=[],
                    configs=[
                        kp_topics.CreateTopicsRequest.CreatableTopic.CreatableTopicConfig(
                            name="cleanup.policy", value="compact"
                        )
                    ],
                )
            ],
            timeout_ms=30000,
            validate_only=False,
        ),
        expect(
            CreateTopicsRequest,
            timeout_ms=30000,
            **{
                "topics.0.num_partitions": 3,
                "topics.0.configs.0.name": "cleanup.policy",
                "topics.0.configs.0.value": "compact",
            },
        ),
    ),
    (
        "aio-CreateTopics-v3",
        lambda: aio(
            aio_admin.CreateTopicsRequest_v3(
                [("t", 1, 1, [], [("retention.ms", "1000")])], 1000, True
            )
        ),
        expect(CreateTopicsRequest, validate_only=True, **{"topics.0.configs.0.value": "1000"}),
    ),
    # ---- InitProducerId
    (
        "kp3-InitProducerId-v3-flexible",
        lambda: kp_new(
            kp_producer.InitProducerIdRequest,
            3,
            transactional_id=None,
            transaction_timeout_ms=60000,
            producer_id=-1,
            producer_epoch=-1,
        ),
        expect(InitProducerIdRequest, transactional_id=None, transaction_timeout_ms=60000),
    ),
    (
        "old-InitProducerId-v1",
        lambda: kp_old(old_init_producer_id.InitProducerIdRequest_v1("tid", 1000)),
        expect(InitProducerIdRequest, transactional_id="tid"),
    ),
    (
        "aio-InitProducerId-v0",
        lambda: aio(aio_transaction.InitProducerIdRequest_v0(None, 5000)),
        expect(InitProducerIdRequest, transactional_id=None, transaction_timeout_ms=5000),
    ),
    # ---- FindCoordinator
    (
        "kp3-FindCoordinator-v4-batched",
        lambda: kp_new(
            kp_metadata.FindCoordinatorRequest, 4, key_type=0, coordinator_keys=["g1", "g2"]
        ),
        expect(FindCoordinatorRequest, coordinator_keys=["g1", "g2"]),
    ),
    (
        "old-FindCoordinator-v1",
        lambda: kp_old(old_find_coordinator.FindCoordinatorRequest_v1("group", 0)),
        expect(FindCoordinatorRequest, key="group", key_type=0),
    ),
    (
        "aio-FindCoordinator-v1",
        lambda: aio(aio_coordination.FindCoordinatorRequest_v1("txn", 1)),
        expect(FindCoordinatorRequest, key="txn", key_type=1),
    ),
    # ---- JoinGroup
    (
        "kp3-JoinGroup-v7-flexible",
        lambda: kp_new(
            kp_consumer.JoinGroupRequest,
            7,
            group_id="g",
            session_timeout_ms=10000,
            rebalance_timeout_ms=300000,
            member_id="",
            group_instance_id=None,
            protocol_type="consumer",
            protocols=[
                kp_consumer.JoinGroupRequest.JoinGroupRequestProtocol(
                    name="range", metadata=b"\x00\x01meta"
                )
            ],
        ),
        expect(
            JoinGroupRequest,
            group_id="g",
            group_instance_id=None,
            **{"protocols.0.name": "range", "protocols.0.metadata": b"\x00\x01meta"},
        ),
    ),
    (
        "old-JoinGroup-v5",
        lambda: kp_old(
            old_group.JoinGroupRequest_v5(
                "g", 10000, 30000, "m-1", "static-1", "consumer", [("range", b"md")]
            )
        ),
        expect(JoinGroupRequest, member_id="m-1", group_instance_id="static-1"),
    ),
    (
        "aio-JoinGroup-v5",
        lambda: aio(
            aio_group.JoinGroupRequest_v5(
                "g", 10000, 30000, "", None, "consumer", [("roundrobin", b"x")]
            )
        ),
        expect(JoinGroupRequest, group_instance_id=None, **{"protocols.0.name": "roundrobin"}),
    ),
    # ---- DeleteRecords (aiokafka's one flexible request)
    (
        "aio-DeleteRecords-v2-flexible",
        lambda: aio(aio_admin.DeleteRecordsRequest_v2([("t", [(0, 10, {})], {})], 1000, {})),
        expect(DeleteRecordsRequest, timeout_ms=1000, **{"topics.0.partitions.0.offset": 10}),
    ),
]


@pytest.mark.parametrize(
    ("build", "check"),
    [(b, c) for _, b, c in REQUEST_CASES],
    ids=[name for name, _, _ in REQUEST_CASES],
)
def test_request_golden_bytes(build: Callable[[], bytes], check: Check) -> None:
    frame = build()
    header, message = decode_request(frame[4:])
    check(header, message)
    assert header.client_id in ("kp3", "kp-old", "aio")
    again = encode_request(message, header.api_version, header.correlation_id, header.client_id)
    assert bytes(again) == frame


# ---------------------------------------------------------------------------------------------
# Responses: kafka-python 3 encodes, we decode and re-encode; we encode, kafka-python decodes.


def kp_response(cls: Any, version: int, correlation_id: int, **fields: Any) -> bytes:
    response = cls[version](**fields)
    response.with_header(correlation_id=correlation_id)
    return bytes(response.encode(header=True, framed=True))


def only_in(struct_spec: StructSpec, version: int, **fields: Any) -> dict[str, Any]:
    """Keep the fields a version has (kafka-python refuses the others on nested structs)."""
    present = {f.name for f in struct_spec.fields if f.present_in(version)}
    return {k: v for k, v in fields.items() if k in present}


def nested(spec: StructSpec, name: str) -> StructSpec:
    for f in spec.fields:
        if f.struct is not None and f.struct.name == name:
            return f.struct
        if f.struct is not None:
            try:
                return nested(f.struct, name)
            except KeyError:
                pass
    raise KeyError(name)


def test_metadata_response_golden() -> None:
    kmr = kp_metadata.MetadataResponse
    spec = spec_of(MetadataResponse)
    broker_spec = nested(spec, "MetadataResponseBroker")
    topic_spec = nested(spec, "MetadataResponseTopic")
    partition_spec = nested(spec, "MetadataResponsePartition")
    for version in (1, 7, 9, 12):
        partition = kmr.MetadataResponseTopic.MetadataResponsePartition(
            **only_in(
                partition_spec,
                version,
                error_code=0,
                partition_index=0,
                leader_id=1,
                leader_epoch=4,
                replica_nodes=[1, 2],
                isr_nodes=[1],
                offline_replicas=[],
            )
        )
        topic = kmr.MetadataResponseTopic(
            **only_in(
                topic_spec,
                version,
                error_code=0,
                name="t",
                topic_id=TOPIC_ID,
                is_internal=False,
                partitions=[partition],
                # (kafka-python renames topic_authorized_operations to a bit-set field;
                # left at its default, -2147483648.)
            )
        )
        broker = kmr.MetadataResponseBroker(
            **only_in(broker_spec, version, node_id=1, host="h1", port=9092, rack=None)
        )
        frame = kp_response(
            kmr,
            version,
            5,
            **only_in(
                spec,
                version,
                throttle_time_ms=0,
                brokers=[broker],
                cluster_id="cid",
                controller_id=1,
                topics=[topic],
            ),
        )
        header, message = decode_response(frame[4:], 3, version)
        assert header.correlation_id == 5
        assert isinstance(message, MetadataResponse)
        assert message.brokers[0].host == "h1"
        assert message.topics[0].partitions[0].replica_nodes == [1, 2]
        if version >= 2:
            assert message.cluster_id == "cid"
        if version >= 10:
            assert message.topics[0].topic_id == TOPIC_ID
        assert bytes(encode_response(message, version, 5)) == frame


def test_produce_response_golden() -> None:
    kpr = kp_producer.ProduceResponse
    topic_cls = kpr.TopicProduceResponse
    partition_cls = topic_cls.PartitionProduceResponse
    for version in (3, 8, 9, 11):
        frame = kp_response(
            kpr,
            version,
            77,
            responses=[
                topic_cls(
                    name="t",
                    partition_responses=[
                        partition_cls(
                            index=0,
                            error_code=0,
                            base_offset=1234,
                            log_append_time_ms=-1,
                            log_start_offset=0,
                            record_errors=[],
                            error_message=None,
                        )
                    ],
                )
            ],
            throttle_time_ms=0,
        )
        header, message = decode_response(frame[4:], 0, version)
        assert isinstance(message, ProduceResponse)
        assert message.responses[0].partition_responses[0].base_offset == 1234
        assert bytes(encode_response(message, version, 77)) == frame


def test_our_fetch_response_read_by_kafka_python() -> None:
    for version in (4, 11, 12, 13, 16):
        ours = FetchResponse(
            throttle_time_ms=3,
            error_code=0,
            session_id=0,
            responses=[
                FetchResponse.FetchableTopicResponse(
                    topic="orders" if version < 13 else "",
                    topic_id=TOPIC_ID if version >= 13 else uuid.UUID(int=0),
                    partitions=[
                        FetchResponse.PartitionData(
                            partition_index=1,
                            error_code=0,
                            high_watermark=500,
                            last_stable_offset=500,
                            log_start_offset=0,
                            aborted_transactions=None,
                            records=RECORDS,
                        )
                    ],
                )
            ],
        )
        frame = bytes(encode_response(ours, version, 21))
        theirs = kp_consumer.FetchResponse.decode(frame, version=version, header=True, framed=True)
        partition = theirs.responses[0].partitions[0]
        assert partition.high_watermark == 500
        assert bytes(partition.records) == RECORDS
        if version >= 13:
            assert theirs.responses[0].topic_id == TOPIC_ID
        else:
            assert theirs.responses[0].topic == "orders"
        # And back through kafka-python's encoder: same bytes.
        theirs.with_header(correlation_id=21)
        assert bytes(theirs.encode(header=True, framed=True)) == frame


def test_api_versions_response_read_by_kafka_python() -> None:
    ours = ApiVersionsResponse(
        error_code=0,
        api_keys=[
            ApiVersionsResponse.ApiVersion(api_key=0, min_version=3, max_version=11),
            ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4),
        ],
        throttle_time_ms=0,
    )
    for version in (0, 1, 3):
        frame = bytes(encode_response(ours, version, 1))
        # ApiVersions responses always use response header v0: the correlation id, no tags.
        assert frame[4:8] == b"\x00\x00\x00\x01"
        theirs = kp_metadata.ApiVersionsResponse.decode(
            frame, version=version, header=True, framed=True
        )
        assert [(k.api_key, k.max_version) for k in theirs.api_keys] == [(0, 11), (18, 4)]


def test_unsupported_api_versions_answer_read_by_clients() -> None:
    """A broker answers an ApiVersions version it lacks with v0 + UNSUPPORTED_VERSION."""
    answer = ApiVersionsResponse(
        error_code=ErrorCode.UNSUPPORTED_VERSION,
        api_keys=[ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4)],
    )
    frame = bytes(encode_response(answer, 0, 3))
    # kafka-python reads the body as v0 when an error is present, whatever it asked for.
    theirs = kp_metadata.ApiVersionsResponse.decode(frame, version=3, header=True, framed=True)
    assert theirs.error_code == ErrorCode.UNSUPPORTED_VERSION
    header, message = decode_response(frame[4:], 18, 3)
    assert isinstance(message, ApiVersionsResponse)
    assert message.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert message.api_keys[0].max_version == 4


def test_records_are_zero_copy() -> None:
    frame = kp_old(old_produce.ProduceRequest_v7(None, 1, 1000, [("t", [(0, RECORDS)])]))
    body = frame[4:]
    _, message = decode_request(body)
    assert isinstance(message, ProduceRequest)
    records = message.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview)
    assert records.obj is body
    assert records == RECORDS

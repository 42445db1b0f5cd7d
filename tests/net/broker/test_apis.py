"""KafkaApis: requests dispatched to their handlers with the broker's collaborators and no
broker — a real replica manager and group coordinator over a temporary directory, an image,
and a controller client standing in for the active controller (what forwarding and producer
ids reach)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from kraft.config import NodeConfig
from kraft.controller.client import ControllerClient
from kraft.log.manager import LogManager
from kraft.metadata.image import MetadataImage
from kraft.net.broker.apis import KafkaApis
from kraft.net.broker.coordinator_partitions import CoordinatorPartitionWriter
from kraft.net.broker.forwarding import ForwardingManager
from kraft.net.broker.producer_ids import ProducerIdManager
from kraft.net.broker.replica_manager import ReplicaManager
from kraft.net.broker.replication import ReplicaFetcherManager
from kraft.net.groups.service import GroupCoordinatorService
from kraft.net.protocol import (
    AllocateProducerIdsRequest,
    AllocateProducerIdsResponse,
    ApiVersionsRequest,
    ApiVersionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    ErrorCode,
    InitProducerIdRequest,
    InitProducerIdResponse,
    Message,
    RequestHeader,
)
from kraft.net.server import CloseConnection, Connection

CONN = Connection(peer="127.0.0.1:5000", listener="PLAINTEXT")
# An idempotent producer's first InitProducerId (no transactional id, no id yet).
INIT_PRODUCER_ID = InitProducerIdRequest(
    transactional_id=None, transaction_timeout_ms=-1, producer_id=-1, producer_epoch=-1
)


class ActiveController:
    """The controller client's `send`: records what was forwarded and answers it, or lets
    the caller's timeout pass when `silent`."""

    def __init__(self) -> None:
        self.sent: list[tuple[Message, int | None]] = []
        self.silent = False
        self.next_block = 1000

    async def send(
        self, request: Message, *, timeout_s: float, version: int | None = None
    ) -> Message:
        self.sent.append((request, version))
        if self.silent:
            raise TimeoutError
        if isinstance(request, AllocateProducerIdsRequest):
            start, self.next_block = self.next_block, self.next_block + 2
            return AllocateProducerIdsResponse(producer_id_start=start, producer_id_len=2)
        assert isinstance(request, CreateTopicsRequest)
        return CreateTopicsResponse(
            topics=[CreateTopicsResponse.CreatableTopicResult(name=t.name) for t in request.topics]
        )


def apis(tmp_path: Path, controller: ActiveController) -> KafkaApis:
    config = NodeConfig(
        node_id=1, process_roles=("broker",), listeners=(), advertised_listeners=(), log_dirs=()
    )
    image = MetadataImage()
    replicas = ReplicaManager(
        1,
        LogManager([str(tmp_path)]),
        lambda: image,
        ReplicaFetcherManager(1, lambda _: None, ""),
    )
    client = cast(ControllerClient, controller)
    forwarding = ForwardingManager(lambda: client)
    groups = GroupCoordinatorService(
        config, lambda: image, CoordinatorPartitionWriter(replicas), forwarding.create_topics
    )
    return KafkaApis(
        node_id=1,
        cluster_id="apis-test",
        config=config,
        image=lambda: image,
        replica_manager=replicas,
        groups=groups,
        forwarding=forwarding,
        next_producer_id=ProducerIdManager(1, lambda: 7, lambda: client).next_producer_id,
    )


def header(api_key: int, version: int) -> RequestHeader:
    return RequestHeader(api_key=api_key, api_version=version, correlation_id=1, client_id="t")


def create_topics(*names: str) -> CreateTopicsRequest:
    return CreateTopicsRequest(
        topics=[
            CreateTopicsRequest.CreatableTopic(name=n, num_partitions=1, replication_factor=1)
            for n in names
        ],
        timeout_ms=50,
    )


async def test_api_versions_advertises_the_dispatch_table(tmp_path: Path) -> None:
    api = apis(tmp_path, ActiveController())
    response = await api.handle(header(18, 3), ApiVersionsRequest(), CONN)
    assert isinstance(response, ApiVersionsResponse)
    advertised = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert advertised == api.supported_versions
    assert 0 in advertised and 68 in advertised


async def test_a_version_outside_the_advertised_range_closes_the_connection(
    tmp_path: Path,
) -> None:
    api = apis(tmp_path, ActiveController())
    low, _ = api.supported_versions[19]
    with pytest.raises(CloseConnection):
        await api.handle(header(19, low - 1), create_topics("t"), CONN)
    with pytest.raises(CloseConnection):
        await api.handle(header(9999, 0), create_topics("t"), CONN)


async def test_admin_requests_are_forwarded_with_the_client_version(tmp_path: Path) -> None:
    controller = ActiveController()
    api = apis(tmp_path, controller)
    response = await api.handle(header(19, 5), create_topics("a", "b"), CONN)
    assert isinstance(response, CreateTopicsResponse)
    assert [(t.name, t.error_code) for t in response.topics] == [("a", 0), ("b", 0)]
    assert [(type(r).__name__, v) for r, v in controller.sent] == [("CreateTopicsRequest", 5)]


async def test_a_forwarded_request_without_an_answer_times_out_item_by_item(
    tmp_path: Path,
) -> None:
    controller = ActiveController()
    controller.silent = True
    response = await apis(tmp_path, controller).handle(header(19, 5), create_topics("a", "b"), CONN)
    assert isinstance(response, CreateTopicsResponse)
    assert [(t.name, t.error_code) for t in response.topics] == [
        ("a", ErrorCode.REQUEST_TIMED_OUT),
        ("b", ErrorCode.REQUEST_TIMED_OUT),
    ]


async def test_producer_ids_come_from_blocks_the_controller_allocates(tmp_path: Path) -> None:
    controller = ActiveController()
    api = apis(tmp_path, controller)
    pids = []
    for _ in range(3):
        response = await api.handle(header(22, 4), INIT_PRODUCER_ID, CONN)
        assert isinstance(response, InitProducerIdResponse)
        assert response.error_code == ErrorCode.NONE
        pids.append(response.producer_id)
    assert pids == [1000, 1001, 1002]  # the second block starts at 1002
    allocations = [r for r, _ in controller.sent if isinstance(r, AllocateProducerIdsRequest)]
    assert [(r.broker_id, r.broker_epoch) for r in allocations] == [(1, 7), (1, 7)]

"""Forwarding to the active controller (Kafka's ForwardingManager): the admin requests that
change metadata may reach any broker; the active controller answers them — this node's own
when it is the active one — and the broker relays the answer."""

from __future__ import annotations

from collections.abc import Callable

from kraft.controller.client import ControllerClient
from kraft.controller.controller import TopicSpec
from kraft.controller.scram_credentials import alter_refused
from kraft.net.protocol import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    AlterUserScramCredentialsRequest,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeQuorumResponse,
    ElectLeadersRequest,
    ElectLeadersResponse,
    ErrorCode,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    Message,
    TransferLeadershipRequest,
    TransferLeadershipResponse,
)

# Requests forwarded to the active controller without a timeout of their own.
FORWARD_TIMEOUT_S = 30.0


class ForwardingManager:
    def __init__(self, client: Callable[[], ControllerClient | None]) -> None:
        # Read at each request: the node sets the broker's controller client once it knows
        # the way to the controller (None only in tests that need no controller).
        self._client = client

    async def forward(self, request: Message, version: int | None = None) -> Message:
        """The active controller's answer, bounded by the request's own timeout when it has
        one: REQUEST_TIMED_OUT for every item after it."""
        client = self._client()
        assert client is not None
        timeout_ms = getattr(request, "timeout_ms", 0) or FORWARD_TIMEOUT_S * 1000
        try:
            return await client.send(request, version=version, timeout_s=timeout_ms / 1000)
        except TimeoutError:
            return timed_out_response(request)

    async def create_topics(self, specs: list[TopicSpec]) -> list[tuple[str, int]]:
        """Create topics through the active controller: (name, error code) per topic."""
        request = CreateTopicsRequest(
            topics=[
                CreateTopicsRequest.CreatableTopic(
                    name=s.name,
                    num_partitions=s.num_partitions,
                    replication_factor=s.replication_factor,
                    configs=[
                        CreateTopicsRequest.CreatableTopicConfig(name=k, value=v)
                        for k, v in s.configs.items()
                    ],
                )
                for s in specs
            ],
            timeout_ms=int(FORWARD_TIMEOUT_S * 1000),
        )
        response = await self.forward(request)
        assert isinstance(response, CreateTopicsResponse)
        return [(t.name, t.error_code) for t in response.topics]


def timed_out_response(request: Message) -> Message:
    """REQUEST_TIMED_OUT for every item of a forwarded request that got no answer in time."""
    code = ErrorCode.REQUEST_TIMED_OUT
    if isinstance(request, CreateTopicsRequest):
        return CreateTopicsResponse(
            topics=[
                CreateTopicsResponse.CreatableTopicResult(name=t.name, error_code=code)
                for t in request.topics
            ]
        )
    if isinstance(request, DeleteTopicsRequest):
        names = list(request.topic_names) or [t.name or "" for t in request.topics]
        return DeleteTopicsResponse(
            responses=[
                DeleteTopicsResponse.DeletableTopicResult(name=n, error_code=code) for n in names
            ]
        )
    if isinstance(request, CreatePartitionsRequest):
        return CreatePartitionsResponse(
            results=[
                CreatePartitionsResponse.CreatePartitionsTopicResult(name=t.name, error_code=code)
                for t in request.topics
            ]
        )
    if isinstance(request, AlterConfigsRequest):
        return AlterConfigsResponse(
            responses=[
                AlterConfigsResponse.AlterConfigsResourceResponse(
                    error_code=code, resource_type=r.resource_type, resource_name=r.resource_name
                )
                for r in request.resources
            ]
        )
    if isinstance(request, IncrementalAlterConfigsRequest):
        return IncrementalAlterConfigsResponse(
            responses=[
                IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
                    error_code=code, resource_type=r.resource_type, resource_name=r.resource_name
                )
                for r in request.resources
            ]
        )
    if isinstance(request, ElectLeadersRequest):
        return ElectLeadersResponse(
            error_code=code,
            replica_election_results=[
                ElectLeadersResponse.ReplicaElectionResult(
                    topic=t.topic,
                    partition_result=[
                        ElectLeadersResponse.PartitionResult(partition_id=p, error_code=code)
                        for p in t.partitions
                    ],
                )
                for t in request.topic_partitions or []
            ],
        )
    if isinstance(request, AlterUserScramCredentialsRequest):
        return alter_refused(request, code)
    if isinstance(request, TransferLeadershipRequest):
        return TransferLeadershipResponse(error_code=code, error_message="no active controller")
    return DescribeQuorumResponse(error_code=code, error_message="no active controller")

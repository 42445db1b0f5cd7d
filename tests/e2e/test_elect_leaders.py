"""ElectLeaders (api key 43) with the admin clients of confluent-kafka and kafka-python.

A single node leads every partition already, so every election is ELECTION_NOT_NEEDED;
what this proves is the wire format, the forwarding to the controller and the error codes
the clients understand. The election rules themselves are tested in tests/kraft.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient

from tests.e2e.conftest import NodeProcess


def _topic(admin: AdminClient) -> str:
    name = f"elect-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(30)
    return name


def test_confluent_elect_leaders(shared_node: NodeProcess) -> None:
    admin = AdminClient({"bootstrap.servers": shared_node.bootstrap})
    name = _topic(admin)
    for election in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        partitions = [TopicPartition(name, 0), TopicPartition(name, 1)]
        results = admin.elect_leaders(election, partitions).result(30)
        assert len(results) == 2
        for error in results.values():
            assert isinstance(error, KafkaError)
            assert error.code() == KafkaError.ELECTION_NOT_NEEDED
    results = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(name, 9)]).result(30)
    (error,) = results.values()
    assert isinstance(error, KafkaError)
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # Every partition: those needing no election are left out of the answer.
    assert admin.elect_leaders(ElectionType.PREFERRED, None).result(30) == {}


def test_kafka_python_elect_leaders(shared_node: NodeProcess) -> None:
    name = _topic(AdminClient({"bootstrap.servers": shared_node.bootstrap}))
    admin = KafkaAdminClient(bootstrap_servers=shared_node.bootstrap)
    try:
        response = admin.elect_leaders(0, {name: [0, 1]})
        codes = [
            p.error_code for r in response.replica_election_results for p in r.partition_result
        ]
        assert codes == [84, 84]  # ELECTION_NOT_NEEDED
        with pytest.raises(Exception, match="UnknownTopicOrPartition"):
            admin.elect_leaders(1, {name: [7]})
    finally:
        admin.close()

"""Leadership writes of the /v1 admin API against a live 3-node cluster, their effect seen
through a Kafka client's Metadata (confluent-kafka): a named replica made leader (a transfer,
undone by a preferred election) and a broker's maintenance mode, which survives a controller
failover and the broker's own restart and leaves a real shutdown as it was. Every write goes
through a node that is not the active controller."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kraft.launcher import LocalCluster
from tests.admin.conftest import Admin
from tests.admin.test_api import _error
from tests.wait import wait_until

# Partition → (leader, ISR), as a Kafka client's Metadata request sees it.
Leaders = dict[int, tuple[int, list[int]]]


@pytest.fixture(scope="module")
def kafka(cluster: LocalCluster) -> Iterator[AdminClient]:
    yield AdminClient({"bootstrap.servers": cluster.bootstrap_servers})


def _leaders(kafka: AdminClient, topic: str) -> Leaders:
    try:
        metadata = kafka.list_topics(topic, timeout=5)
    except KafkaException:  # no broker answered in time (one is restarting): ask again
        return {}
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return {}
    return {p.id: (p.leader, list(p.isrs)) for p in found.partitions.values()}


def _wait_leaders(kafka: AdminClient, topic: str, what: str, check: Any) -> Leaders:
    seen: dict[str, Leaders] = {}

    def holds() -> bool:
        seen["last"] = _leaders(kafka, topic)
        return bool(seen["last"]) and bool(check(seen["last"]))

    wait_until(holds, what, explain=lambda: f"Metadata: {seen.get('last')}")
    return seen["last"]


def _controller(admins: dict[int, Admin], among: list[int]) -> int:
    found: dict[str, int] = {}

    def known() -> bool:
        for node in among:
            controller = admins[node].get("/v1/cluster")["controller_id"]
            if controller in among:
                found["id"] = controller
                return True
        return False

    wait_until(known, f"an active controller among {among}")
    return found["id"]


def _create(admin: Admin, partitions: int) -> str:
    topic = f"lead-{uuid.uuid4().hex[:8]}"
    body = {"name": topic, "partitions": partitions, "replication_factor": 3}
    r = admin.call("POST", "/v1/topics", body)
    assert r.status_code == 201, r.text
    return topic


def _partitions(admin: Admin, topic: str) -> dict[int, dict[str, Any]]:
    return {p["partition"]: p for p in admin.get(f"/v1/topics/{topic}")["partitions"]}


def _broker(admin: Admin, broker_id: int) -> dict[str, Any]:
    return dict({b["node_id"]: b for b in admin.get("/v1/brokers")}[broker_id])


def _elect(admin: Admin, topic: str, partition: int, **extra: Any) -> Any:
    body = {"partitions": [{"topic": topic, "partition": partition}], **extra}
    return admin.call("POST", "/v1/elect-leaders", body)


def _elect_all(admin: Admin) -> None:
    """A preferred election of every partition. Where the preferred replica cannot lead (in
    maintenance, or stopped) it fails; when all that needed one fail so, the answer is 409."""
    r = admin.call("POST", "/v1/elect-leaders", {})
    if r.status_code != 200:
        _error(r, 409, "PREFERRED_LEADER_NOT_AVAILABLE")


def test_a_named_replica_leads_until_a_preferred_election(
    cluster: LocalCluster, admins: dict[int, Admin], kafka: AdminClient
) -> None:
    controller = _controller(admins, [1, 2, 3])
    via = admins[next(n for n in (1, 2, 3) if n != controller)]
    topic = _create(via, 1)
    _wait_leaders(kafka, topic, "a leader for the new topic", lambda ls: ls[0][0] >= 0)
    wait_until(lambda: len(_partitions(via, topic)[0]["isr"]) == 3, "a full ISR")
    before = _partitions(via, topic)[0]
    preferred = before["replicas"][0]
    assert before["leader"] == preferred
    target = before["replicas"][2]

    r = _elect(via, topic, 0, replica=target)
    assert r.status_code == 200, r.text
    assert r.json() == [{"name": f"{topic}-0", "error": None, "message": None}]
    _wait_leaders(kafka, topic, f"replica {target} leading", lambda ls: ls[0][0] == target)
    after = _partitions(via, topic)[0]
    assert after["leader_epoch"] == before["leader_epoch"] + 1
    assert after["replicas"] == before["replicas"]  # a transfer, not a reassignment

    # Already the leader: nothing to do, said so.
    r = _elect(via, topic, 0, replica=target)
    assert r.status_code == 200 and r.json()[0]["error"] == "ELECTION_NOT_NEEDED", r.text

    # Bad input: a 4xx naming the problem, and the partition as it was.
    cases = [
        (_elect(via, topic, 0, replica=9), 400, "INVALID_REPLICA_ASSIGNMENT", "no replica"),
        (_elect(via, topic, 7, replica=target), 404, "UNKNOWN_TOPIC_OR_PARTITION", "-7"),
        (_elect(via, "nope-x", 0, replica=target), 404, "UNKNOWN_TOPIC_OR_PARTITION", "nope"),
        (_elect(via, topic, 0, replica=-1), 400, "INVALID_REQUEST", "body.replica"),
        (
            _elect(via, topic, 0, replica=preferred, election="unclean"),
            400,
            "INVALID_REQUEST",
            "unclean",
        ),
        (
            via.call(
                "POST",
                "/v1/elect-leaders",
                {"partitions": None, "replica": preferred},
            ),
            400,
            "INVALID_REQUEST",
            "exactly one partition",
        ),
    ]
    for response, status, error, mentioned in cases:
        assert mentioned in _error(response, status, error)["message"]
    assert _partitions(via, topic)[0]["leader_epoch"] == after["leader_epoch"]
    assert _leaders(kafka, topic)[0][0] == target

    # The preferred election moves leadership back to the first replica.
    r = _elect(via, topic, 0)
    assert r.status_code == 200 and r.json()[0]["error"] is None, r.text
    _wait_leaders(kafka, topic, "the preferred replica back", lambda ls: ls[0][0] == preferred)


def test_maintenance_moves_leaderships_and_survives_failover_and_restart(
    cluster: LocalCluster, admins: dict[int, Admin], kafka: AdminClient
) -> None:
    nodes = [1, 2, 3]
    controller = _controller(admins, nodes)
    # The broker put in maintenance is not the active controller, so stopping the
    # controller below is a failover while it stays in maintenance.
    broker = next(n for n in nodes if n != controller)
    other = next(n for n in nodes if n not in (controller, broker))
    via = admins[broker]
    topic = _create(via, 6)
    _wait_leaders(
        kafka,
        topic,
        "a leader and a full ISR for every partition",
        lambda ls: all(leader >= 0 and len(isr) == 3 for leader, isr in ls.values()),
    )
    # Every broker leads its preferred partitions once they are all in sync.
    _elect_all(via)
    _wait_leaders(
        kafka,
        topic,
        f"broker {broker} leading",
        lambda ls: any(leader == broker for leader, _ in ls.values()),
    )

    # Bad input: a 4xx naming the broker, and nobody in maintenance.
    _error(via.call("PUT", "/v1/brokers/9/maintenance"), 404, "BROKER_ID_NOT_REGISTERED")
    _error(via.call("PUT", "/v1/brokers/x/maintenance"), 400, "INVALID_REQUEST")
    _error(via.call("PUT", "/v1/brokers/-1/maintenance"), 400, "INVALID_REQUEST")
    _error(via.call("PUT", f"/v1/brokers/{broker}/maintenance", token=None), 401)
    assert not any(b["in_maintenance"] for b in via.get("/v1/brokers"))

    r = via.call("PUT", f"/v1/brokers/{broker}/maintenance")
    assert r.status_code == 200 and r.json()["error"] is None, r.text

    def drained(ls: Leaders) -> bool:
        # No leadership, yet a follower in every ISR.
        return all(leader != broker and broker in isr for leader, isr in ls.values())

    _wait_leaders(kafka, topic, f"no leadership on broker {broker}", drained)
    wait_until(lambda: _broker(via, broker)["leaderships"] == 0, "no leaderships listed")
    wait_until(
        lambda: _broker(admins[other], broker)["state"] == "maintenance",
        f"broker {broker} in maintenance on node {other}",
    )
    # Elections pass it over; it cannot be named leader either.
    _elect_all(via)
    r = _elect(via, topic, 0, replica=broker)
    assert "maintenance" in _error(r, 409, "INELIGIBLE_REPLICA")["message"]
    assert drained(_leaders(kafka, topic))

    # Controller failover: the state is in the metadata log, the new controller keeps it.
    assert cluster.stop_node(controller) == 0
    new_controller = _controller(admins, [broker, other])
    assert new_controller != controller
    assert _broker(admins[other], broker)["in_maintenance"] is True
    _elect_all(via)
    _wait_leaders(
        kafka,
        topic,
        f"broker {other} leading it all",
        lambda ls: all(leader == other for leader, _ in ls.values()),
    )
    cluster.restart(controller)
    _wait_leaders(
        kafka, topic, "full ISRs again", lambda ls: all(len(isr) == 3 for _, isr in ls.values())
    )
    _elect_all(via)
    _wait_leaders(
        kafka,
        topic,
        f"broker {controller} leading again, {broker} still not",
        lambda ls: drained(ls) and any(leader == controller for leader, _ in ls.values()),
    )

    # A real shutdown of a broker in maintenance still exits; back, it is still in maintenance.
    assert cluster.stop_node(broker) == 0
    cluster.restart(broker)
    wait_until(
        lambda: _broker(admins[other], broker)["state"] == "maintenance",
        f"broker {broker} registered again, in maintenance",
    )
    _wait_leaders(
        kafka,
        topic,
        "full ISRs after the restart",
        lambda ls: all(len(isr) == 3 for _, isr in ls.values()),
    )
    _elect_all(via)
    assert drained(_leaders(kafka, topic))

    # Out: eligible again, and a preferred election brings its leaderships back.
    r = via.call("DELETE", f"/v1/brokers/{broker}/maintenance")
    assert r.status_code == 200 and r.json()["error"] is None, r.text
    wait_until(
        lambda: _broker(admins[other], broker)["state"] == "registered",
        f"broker {broker} out of maintenance",
    )
    preferred = {p: info["replicas"][0] for p, info in _partitions(via, topic).items()}
    assert broker in preferred.values()
    _elect_all(via)
    _wait_leaders(
        kafka,
        topic,
        "every preferred replica leading",
        lambda ls: all(ls[p][0] == preferred[p] for p in preferred),
    )


def test_a_kafka_client_sets_maintenance_with_alter_configs(
    cluster: LocalCluster, admins: dict[int, Admin]
) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        resource = ConfigResource(
            ConfigResourceType.BROKER, "3", configs={"kraft.maintenance.mode": "true"}
        )
        response = client.alter_configs([resource])
        assert response == {"broker": {"3": "OK"}}, response
        wait_until(lambda: _broker(admins[1], 3)["in_maintenance"], "broker 3 in maintenance")

        # DescribeConfigs of the broker lists it as a dynamic broker config.
        def described() -> str | None:
            found = client.describe_configs(
                [ConfigResource(ConfigResourceType.BROKER, "3")], config_filter="dynamic"
            )
            (by_name,) = found.values()
            entry = by_name.get("3", {}).get("kraft.maintenance.mode")
            return None if entry is None else str(entry["value"])

        wait_until(lambda: described() == "true", "broker 3 describing its maintenance mode")
    finally:
        client.close()
        r = admins[1].call("DELETE", "/v1/brokers/3/maintenance")
        assert r.status_code == 200, r.text
    wait_until(lambda: _broker(admins[1], 3)["state"] == "registered", "broker 3 out of it")

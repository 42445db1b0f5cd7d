"""The /v1 admin API against a live 3-node cluster: every endpoint, writes checked through a
Kafka client (kafka-python), bad input refused with a 4xx JSON error and nothing changed, and
the bearer token of writes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from kraft.launcher import LocalCluster
from tests.admin.conftest import Admin
from tests.wait import wait_until

ROUTES = {
    ("get", "/v1/health"),
    ("get", "/v1/ready"),
    ("get", "/v1/cluster"),
    ("get", "/v1/brokers"),
    ("get", "/v1/quorum"),
    ("get", "/v1/topics"),
    ("post", "/v1/topics"),
    ("get", "/v1/topics/{topic}"),
    ("delete", "/v1/topics/{topic}"),
    ("post", "/v1/topics/{topic}/partitions"),
    ("patch", "/v1/topics/{topic}/configs"),
    ("get", "/v1/topics/{topic}/partitions/{partition}/records"),
    ("post", "/v1/elect-leaders"),
    ("get", "/v1/groups"),
    ("get", "/v1/groups/{group}"),
    ("delete", "/v1/groups/{group}"),
    ("post", "/v1/groups/{group}/reset-offsets"),
    ("post", "/v1/brokers/{broker}/controlled-shutdown"),
    ("delete", "/v1/brokers/{broker}/controlled-shutdown"),
    ("put", "/v1/brokers/{broker}/maintenance"),
    ("delete", "/v1/brokers/{broker}/maintenance"),
    ("get", "/v1/openapi.json"),
}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _error(r: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "message"} and body["message"], body
    if error is not None:
        assert body["error"] == error, body
    return dict(body)


@pytest.fixture(scope="module")
def kadmin(cluster: LocalCluster) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    yield client
    client.close()


def _partitions_seen(cluster: LocalCluster, topic: str) -> set[int]:
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers)
    try:
        return set(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()


def _topic_config(kadmin: KafkaAdminClient, topic: str) -> dict[str, str]:
    described = kadmin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
    )
    (by_name,) = described.values()
    return {key: str(data["value"]) for key, data in by_name[topic].items()}


def test_reads_describe_the_cluster(cluster: LocalCluster, admins: dict[int, Admin]) -> None:
    for admin in admins.values():
        assert admin.get("/v1/health")["node_id"] in cluster.broker_ids
        wait_until(
            lambda a=admin: a.call("GET", "/v1/ready").status_code == 200,  # type: ignore[misc]
            "every node ready",
        )
    admin = admins[1]
    overview = admin.get("/v1/cluster")
    assert overview["controller_id"] in cluster.controller_ids
    assert overview["quorum"]["leader_id"] == overview["controller_id"]
    assert {v["node_id"] for v in overview["quorum"]["voters"]} == {1, 2, 3}
    assert [b["state"] for b in overview["brokers"]] == ["registered"] * 3
    assert overview["is_healthy"] is True and overview["reasons"] == []
    assert [b["node_id"] for b in admin.get("/v1/brokers")] == [1, 2, 3]
    quorum = admin.get("/v1/quorum")
    assert quorum["term"] >= 1 and len(quorum["voters"]) == 3
    assert isinstance(admin.get("/v1/topics"), list)
    groups = admin.get("/v1/groups")
    assert groups["unreachable"] == {}
    document = admin.get("/v1/openapi.json")
    assert document["openapi"].startswith("3.")
    served = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert served == ROUTES


def test_topic_writes_seen_by_a_kafka_client(
    cluster: LocalCluster, admin: Admin, kadmin: KafkaAdminClient
) -> None:
    topic = _name("t")
    r = admin.call(
        "POST",
        "/v1/topics",
        {
            "name": topic,
            "partitions": 2,
            "replication_factor": 3,
            "configs": {"retention.ms": "3600000"},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"name": topic, "error": None, "message": None}
    wait_until(lambda: _partitions_seen(cluster, topic) == {0, 1}, "the topic seen by Kafka")
    _error(admin.call("POST", "/v1/topics", {"name": topic}), 409, "TOPIC_ALREADY_EXISTS")

    described = admin.get(f"/v1/topics/{topic}")
    assert described["topic"]["partitions"] == 2
    assert described["topic"]["replication_factor"] == 3
    for p in described["partitions"]:
        assert sorted(p["replicas"]) == [1, 2, 3] and p["leader"] in p["replicas"]
        assert set(p["isr"]) <= set(p["replicas"])
    configs = {c["name"]: c for c in described["configs"]}
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert configs["retention.ms"]["default"] != "3600000"
    assert configs["cleanup.policy"]["is_default"] is True

    r = admin.call("POST", f"/v1/topics/{topic}/partitions", {"count": 4})
    assert r.status_code == 200, r.text
    wait_until(lambda: _partitions_seen(cluster, topic) == {0, 1, 2, 3}, "4 partitions in Kafka")

    r = admin.call(
        "PATCH",
        f"/v1/topics/{topic}/configs",
        {"set": {"max.message.bytes": "123456"}, "delete": ["retention.ms"]},
    )
    assert r.status_code == 200, r.text
    seen = _topic_config(kadmin, topic)
    assert seen["max.message.bytes"] == "123456" and seen["retention.ms"] != "3600000"

    # An invalid config: refused, nothing changed.
    r = admin.call("PATCH", f"/v1/topics/{topic}/configs", {"set": {"max.message.bytes": "x"}})
    _error(r, 400, "INVALID_CONFIG")
    assert _topic_config(kadmin, topic)["max.message.bytes"] == "123456"

    r = admin.call("DELETE", f"/v1/topics/{topic}")
    assert r.status_code == 200, r.text
    wait_until(lambda: not _partitions_seen(cluster, topic), "the topic gone from Kafka")
    _error(admin.call("GET", f"/v1/topics/{topic}"), 404, "UNKNOWN_TOPIC_OR_PARTITION")
    _error(admin.call("DELETE", f"/v1/topics/{topic}"), 404, "UNKNOWN_TOPIC_OR_PARTITION")


def test_latest_records_shown_safely(cluster: LocalCluster, admins: dict[int, Admin]) -> None:
    topic = _name("rec")
    r = admins[1].call("POST", "/v1/topics", {"name": topic, "partitions": 1})
    assert r.status_code == 201, r.text
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all")
    try:
        for i in range(5):
            producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0)
        producer.send(
            topic,
            key=None,
            value=b"\xff\xfe\x00",
            partition=0,
            headers=[("h", b"\x80"), ("t", b"ok")],
        )
        producer.flush(30)
    finally:
        producer.close()
    # Any node answers, whichever leads the partition (read over the Kafka protocol).
    for admin in admins.values():
        page = admin.get(f"/v1/topics/{topic}/partitions/0/records", params={"limit": 3})
        assert (page["log_start_offset"], page["high_watermark"]) == (0, 6)
        records = page["records"]
        assert [r["offset"] for r in records] == [3, 4, 5]
        assert records[0]["key"] == "k3" and records[0]["value"] == "v3"
        assert records[0]["key_encoding"] == "utf-8"
        last = records[-1]
        assert last["key"] is None
        assert (last["value"], last["value_encoding"]) == ("//4A", "base64")
        assert last["headers"] == [
            {"key": "h", "value": "gA==", "value_encoding": "base64"},
            {"key": "t", "value": "ok", "value_encoding": "utf-8"},
        ]
        assert last["timestamp"] > 1_600_000_000_000
    admin = admins[1]
    all_of_them = admin.get(f"/v1/topics/{topic}/partitions/0/records", params={"limit": 100})
    assert [r["offset"] for r in all_of_them["records"]] == list(range(6))
    _error(admin.call("GET", f"/v1/topics/{topic}/partitions/7/records"), 404)
    _error(admin.call("GET", f"/v1/topics/{topic}/partitions/x/records"), 400)
    _error(admin.call("GET", f"/v1/topics/{topic}/partitions/0/records?limit=0"), 400)


def _committed(kadmin: KafkaAdminClient, group: str) -> dict[tuple[str, int], int]:
    offsets = kadmin.list_group_offsets(group)[group]
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def test_group_reads_reset_and_delete(
    cluster: LocalCluster, admin: Admin, kadmin: KafkaAdminClient
) -> None:
    topic, group = _name("g"), _name("group")
    assert admin.call("POST", "/v1/topics", {"name": topic, "partitions": 2}).status_code == 201
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all")
    before = int(time.time() * 1000)
    for i in range(10):
        producer.send(topic, value=b"x", partition=i % 2)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    consumer.commit(
        {TopicPartition(topic, 0): _offset_meta(3), TopicPartition(topic, 1): _offset_meta(5)}
    )
    consumer.close()

    wait_until(
        lambda: group in {g["group_id"] for g in admin.get("/v1/groups")["groups"]},
        "the group listed",
    )
    detail = admin.get(f"/v1/groups/{group}")
    lags = {(o["topic"], o["partition"]): (o["committed"], o["lag"]) for o in detail["offsets"]}
    assert lags == {(topic, 0): (3, 2), (topic, 1): (5, 0)}
    assert detail["total_lag"] == 2

    def reset(body: dict[str, Any]) -> dict[tuple[str, int], int]:
        r = admin.call("POST", f"/v1/groups/{group}/reset-offsets", body)
        assert r.status_code == 200, r.text
        answered = {(o["topic"], o["partition"]): o["offset"] for o in r.json()["offsets"]}
        committed = _committed(kadmin, group)
        assert {tp: committed[tp] for tp in answered} == answered
        return answered

    assert reset({"to": "earliest"}) == {(topic, 0): 0, (topic, 1): 0}
    assert reset({"to": "latest"}) == {(topic, 0): 5, (topic, 1): 5}
    assert reset({"to": "offset", "offset": 2, "topic": topic, "partitions": [1]}) == {
        (topic, 1): 2
    }
    assert reset({"to": "offset", "offset": 99, "topic": topic}) == {(topic, 0): 5, (topic, 1): 5}
    assert reset({"to": "timestamp", "timestamp": before}) == {(topic, 0): 0, (topic, 1): 0}
    _error(admin.call("POST", f"/v1/groups/{group}/reset-offsets", {"to": "offset"}), 400)
    _error(admin.call("POST", "/v1/groups/nope-x/reset-offsets", {"to": "earliest"}), 404)

    # A group with a member: the coordinator refuses, nothing changes.
    member = KafkaConsumer(
        topic, bootstrap_servers=cluster.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        wait_until(lambda: bool(member.poll(100) is not None and member.assignment()), "a member")
        r = admin.call("POST", f"/v1/groups/{group}/reset-offsets", {"to": "latest"})
        _error(r, 409)
        assert _committed(kadmin, group) == {(topic, 0): 0, (topic, 1): 0}
        _error(admin.call("DELETE", f"/v1/groups/{group}"), 409, "NON_EMPTY_GROUP")
    finally:
        member.close()

    wait_until(
        lambda: admin.call("DELETE", f"/v1/groups/{group}").status_code == 200,
        "the group deleted once empty",
    )
    _error(admin.call("GET", f"/v1/groups/{group}"), 404, "GROUP_ID_NOT_FOUND")


def _offset_meta(offset: int) -> Any:
    from kafka.structs import OffsetAndMetadata

    try:
        return OffsetAndMetadata(offset, "", -1)
    except TypeError:
        return OffsetAndMetadata(offset, "")


def test_elect_leaders(admin: Admin) -> None:
    topic = _name("e")
    assert admin.call("POST", "/v1/topics", {"name": topic, "partitions": 2}).status_code == 201
    r = admin.call("POST", "/v1/elect-leaders", {"partitions": [{"topic": topic, "partition": 0}]})
    assert r.status_code == 200, r.text
    assert [x["name"] for x in r.json()] == [f"{topic}-0"]
    assert admin.call("POST", "/v1/elect-leaders", {}).status_code == 200
    r = admin.call(
        "POST",
        "/v1/elect-leaders",
        {"partitions": [{"topic": topic, "partition": 0}], "replica": 2, "election": "unclean"},
    )
    assert "named replica" in _error(r, 400, "INVALID_REQUEST")["message"]
    r = admin.call(
        "POST", "/v1/elect-leaders", {"partitions": [{"topic": "nope-x", "partition": 0}]}
    )
    _error(r, 404, "UNKNOWN_TOPIC_OR_PARTITION")


def test_bad_input_is_a_4xx_and_changes_nothing(cluster: LocalCluster, admin: Admin) -> None:
    topic = _name("bad")
    cases = [
        (admin.call("POST", "/v1/topics", raw=b'{"name": '), 400, "INVALID_JSON", "malformed"),
        (admin.call("POST", "/v1/topics", raw=b"[1]"), 400, "INVALID_REQUEST", "object"),
        (
            admin.call("POST", "/v1/topics", {"name": topic, "partitions": "3"}),
            400,
            None,
            "body.partitions",
        ),
        (
            admin.call("POST", "/v1/topics", {"name": topic, "colour": "red"}),
            400,
            None,
            "body.colour",
        ),
        (admin.call("POST", "/v1/topics", {"name": "bad name!"}), 400, None, "body.name"),
        (admin.call("POST", "/v1/topics", {"partitions": 1}), 400, None, "body.name"),
        (
            admin.call("POST", "/v1/topics", {"name": topic, "configs": {"retention.ms": "soon"}}),
            400,
            "INVALID_CONFIG",
            "retention.ms",
        ),
        (
            admin.call("POST", "/v1/topics", {"name": topic, "configs": {"no.such": "1"}}),
            400,
            None,
            "no.such",
        ),
        (
            admin.call("POST", "/v1/topics", raw=b'{"name": "' + b"a" * (2 << 20) + b'"}'),
            413,
            "REQUEST_ENTITY_TOO_LARGE",
            "larger",
        ),
        (admin.call("POST", "/v1/topics/nope-x/partitions", {"count": 9}), 404, None, "nope"),
        (
            admin.call("PATCH", "/v1/topics/nope-x/configs", {"set": {"retention.ms": "1"}}),
            404,
            None,
            "",
        ),
        (admin.call("PATCH", f"/v1/topics/{topic}/configs", {}), 400, None, "nothing"),
        (admin.call("GET", "/v1/groups/nope-x"), 404, "GROUP_ID_NOT_FOUND", "nope-x"),
        (admin.call("GET", "/v1/nowhere"), 404, "NOT_FOUND", "/v1/nowhere"),
        (admin.call("PUT", "/v1/topics"), 405, "METHOD_NOT_ALLOWED", "PUT"),
    ]
    for response, status, error, mentioned in cases:
        body = _error(response, status, error)
        assert mentioned in body["message"], body
    assert topic not in {t["name"] for t in admin.get("/v1/topics")}
    assert not _partitions_seen(cluster, topic)


def test_writes_need_the_token(admin: Admin) -> None:
    topic = _name("auth")
    r = admin.call("POST", "/v1/topics", {"name": topic}, token=None)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    _error(r, 401, "UNAUTHORIZED")
    _error(admin.call("POST", "/v1/topics", {"name": topic}, token="wrong"), 403, "FORBIDDEN")
    _error(admin.call("DELETE", "/v1/groups/x", token=None), 401)
    # Reads stay open.
    assert admin.call("GET", "/v1/topics", token=None).status_code == 200
    assert topic not in {t["name"] for t in admin.get("/v1/topics")}


def test_controlled_shutdown(cluster: LocalCluster, admins: dict[int, Admin]) -> None:
    r = admins[1].call("DELETE", "/v1/brokers/3/controlled-shutdown")
    assert "maintenance" in _error(r, 400, "INVALID_REQUEST")["message"]
    # Asked of another node's broker: refused (a broker asks for its own shutdown).
    _error(admins[1].call("POST", "/v1/brokers/3/controlled-shutdown"), 400, "INVALID_REQUEST")
    topic = _name("cs")
    r = admins[1].call(
        "POST", "/v1/topics", {"name": topic, "partitions": 3, "replication_factor": 3}
    )
    assert r.status_code == 201
    r = admins[3].call("POST", "/v1/brokers/3/controlled-shutdown")
    assert r.status_code == 200, r.text

    def state_of_3() -> str:
        return str({b["node_id"]: b for b in admins[1].get("/v1/brokers")}[3]["state"])

    wait_until(lambda: state_of_3() != "registered", "broker 3 out of service")
    described = admins[1].get(f"/v1/topics/{topic}")
    assert all(p["leader"] != 3 for p in described["partitions"])
    ready = admins[3].call("GET", "/v1/ready")
    assert ready.status_code == 503 and ready.json()["reasons"], ready.text
    overview = admins[1].get("/v1/cluster")
    assert overview["is_healthy"] is False and overview["reasons"]
    cluster.restart(3)
    wait_until(lambda: state_of_3() == "registered", "broker 3 back after its restart")
    wait_until(lambda: admins[3].call("GET", "/v1/ready").status_code == 200, "node 3 ready")

"""Real clients against a real `kraft serve` process: kafka-python, aiokafka and confluent-kafka.

Every test runs once per client through `client_drivers`: admin calls, produce with every
codec and acknowledgement mode, reads by manual assignment, ListOffsets by time, recovery
after kill -9, topic deletion and the error paths a client must see as Kafka error codes.
Each test ends by checking that the node logged no closed connection: a client request the
broker could not answer (an unsupported API such as FindCoordinator, a response it failed to
encode) shows up there even when the client quietly retries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence

import pytest

from tests.e2e.client_drivers import (
    CODECS,
    DRIVERS,
    INVALID_TOPIC_EXCEPTION,
    MESSAGE_TOO_LARGE,
    TOPIC_ALREADY_EXISTS,
    UNKNOWN_TOPIC_OR_PARTITION,
    Ack,
    ClientDriver,
    ClientError,
    Outgoing,
    ProducerSettings,
    Stored,
)
from tests.e2e.conftest import NodeProcess

pytestmark = pytest.mark.timeout(90)

# The (acks, idempotence) pairs a producer accepts: idempotence requires acks=all.
ACK_MODES = (("1", False), ("all", False), ("all", True))
# An arbitrary fixed instant, so timestamps are explicit and differ from the broker's clock.
BASE_TS = 1_700_000_000_000
MAX_MESSAGE_BYTES = 1048588  # Kafka's default max.message.bytes


@pytest.fixture(params=sorted(DRIVERS))
def client_cls(request: pytest.FixtureRequest) -> type[ClientDriver]:
    return DRIVERS[request.param]


@pytest.fixture
def client(client_cls: type[ClientDriver], shared_node: NodeProcess) -> ClientDriver:
    return client_cls(shared_node.bootstrap)


@pytest.fixture(scope="module")
def strict_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node that never creates topics on a client's behalf."""
    n = NodeProcess(tmp_path_factory.mktemp("strict"), extra={"auto.create.topics.enable": "false"})
    n.start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic name unique to the test id (clients share one node per module)."""
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")


# ------------------------------------------------------------------------------ helpers


def make_records(count: int, partitions: int, first_ts: int, tag: str = "r") -> list[Outgoing]:
    """Records that exercise what a client can set: null and non-null keys, a tombstone,
    repeated and empty headers, a non-ASCII header key, compressible and small values,
    explicit partitions and partitioner-chosen ones. Timestamps grow by 10 ms."""
    records = []
    for i in range(count):
        key = None if i % 4 == 0 else f"{tag}-key-{i}".encode()
        value = None if i == 3 else f"{tag}-value-{i}|".encode() * (1 + (i * 37) % 200)
        headers: tuple[tuple[str, bytes], ...] = ()
        if i % 3:
            headers = (
                ("trace", f"id-{i}".encode()),
                ("dup", b"a"),
                ("dup", b""),
                ("ключ", b"\xff"),
            )
        partition = None if (key is not None and i % 4 == 1) else i % partitions
        records.append(Outgoing(key, value, headers, first_ts + 10 * i, partition))
    return records


def acked(results: Sequence[Ack | ClientError]) -> list[Ack]:
    failures = [r for r in results if isinstance(r, ClientError)]
    assert failures == [], f"{len(failures)} of {len(results)} sends failed"
    return [r for r in results if isinstance(r, Ack)]


def as_stored(records: Sequence[Outgoing], acks: Sequence[Ack]) -> dict[tuple[int, int], Stored]:
    expected = {}
    for r, a in zip(records, acks, strict=True):
        if r.partition is not None:
            assert a.partition == r.partition, r
        expected[(a.partition, a.offset)] = Stored(
            a.partition, a.offset, r.key, r.value, r.headers, r.timestamp
        )
    return expected


def by_position(records: Sequence[Stored]) -> dict[tuple[int, int], Stored]:
    positions = {(s.partition, s.offset): s for s in records}
    assert len(positions) == len(records), "a record was read twice"
    return positions


def assert_dense(positions: Sequence[tuple[int, int]]) -> None:
    """Offsets of every partition are 0..n-1: nothing lost, nothing written twice."""
    per_partition: dict[int, list[int]] = {}
    for p, o in positions:
        per_partition.setdefault(p, []).append(o)
    for p, offsets in per_partition.items():
        assert sorted(offsets) == list(range(len(offsets))), f"partition {p}"


def log_mark(node: NodeProcess) -> int:
    return node.log_path.stat().st_size


def assert_node_log_clean(node: NodeProcess, since: int) -> None:
    with open(node.log_path, "rb") as f:
        f.seek(since)
        new = f.read().decode(errors="replace")
    bad = [line for line in new.splitlines() if "closing connection" in line or "ERROR" in line]
    assert bad == [], "\n".join(bad)


# --------------------------------------------------------------------- produce and read


@pytest.mark.parametrize("codec", CODECS)
def test_produce_every_ack_mode_and_read_back(
    client: ClientDriver, shared_node: NodeProcess, topic: str, codec: str
) -> None:
    mark = log_mark(shared_node)
    assert client.create_topics({topic: 3}) == {topic: 0}
    assert client.topics()[topic] == 3

    expected: dict[tuple[int, int], Stored] = {}
    for mode, (acks, idempotent) in enumerate(ACK_MODES):
        records = make_records(12, 3, BASE_TS + 1000 * mode, tag=f"{codec}-{acks}-{idempotent}")
        settings = ProducerSettings(compression=codec, acks=acks, idempotent=idempotent)
        expected |= as_stored(records, acked(client.produce(topic, records, settings)))
    assert_dense(list(expected))

    assert by_position(client.read_all(topic, 3)) == expected
    assert_node_log_clean(shared_node, mark)


def test_offsets_for_times(client: ClientDriver, shared_node: NodeProcess, topic: str) -> None:
    """ListOffsets by timestamp answers the first offset whose timestamp is >= T, also when
    T falls inside a compressed multi-record batch."""
    mark = log_mark(shared_node)
    assert client.create_topics({topic: 2}) == {topic: 0}
    records = [Outgoing(b"k", b"v%d" % i, (), BASE_TS + 10 * i, partition=i % 2) for i in range(20)]
    settings = ProducerSettings(compression="gzip", acks="all")
    stored = as_stored(records, acked(client.produce(topic, records, settings)))

    def first_at_or_after(partition: int, ts: int) -> int | None:
        offsets = [o for (p, o), s in stored.items() if p == partition and s.timestamp >= ts]
        return min(offsets, default=None)

    last_ts = BASE_TS + 10 * 19
    for ts in (0, BASE_TS, BASE_TS + 1, BASE_TS + 45, BASE_TS + 100, last_ts, last_ts + 1):
        want = {p: first_at_or_after(p, ts) for p in (0, 1)}
        assert client.offsets_for_times(topic, {0: ts, 1: ts}) == want, f"T={ts}"
    assert_node_log_clean(shared_node, mark)


def test_produce_auto_creates_topic(
    client: ClientDriver, shared_node: NodeProcess, topic: str
) -> None:
    mark = log_mark(shared_node)
    assert topic not in client.topics()
    records = [Outgoing(b"k%d" % i, b"v%d" % i, (), BASE_TS + i) for i in range(3)]
    acks = acked(client.produce(topic, records, ProducerSettings()))
    assert acks == [Ack(0, 0), Ack(0, 1), Ack(0, 2)]  # num.partitions=1
    assert client.topics()[topic] == 1
    assert by_position(client.read_all(topic, 1)) == as_stored(records, acks)
    assert_node_log_clean(shared_node, mark)


# ------------------------------------------------------------------------- admin paths


def test_delete_topic(client: ClientDriver, shared_node: NodeProcess, topic: str) -> None:
    mark = log_mark(shared_node)
    assert client.create_topics({topic: 2}) == {topic: 0}
    records = make_records(4, 2, BASE_TS)
    acked(client.produce(topic, records, ProducerSettings()))

    assert client.delete_topics([topic]) == {topic: 0}
    assert topic not in client.topics()
    assert client.delete_topics([topic]) == {topic: UNKNOWN_TOPIC_OR_PARTITION}

    # The same name again is a new, empty topic: the old log went with the old topic.
    assert client.create_topics({topic: 1}) == {topic: 0}
    assert client.topics()[topic] == 1
    again = [Outgoing(b"k", b"new", (), BASE_TS, partition=0)]
    acks = acked(client.produce(topic, again, ProducerSettings()))
    assert acks == [Ack(0, 0)]
    assert by_position(client.read_all(topic, 1)) == as_stored(again, acks)
    assert client.delete_topics([topic]) == {topic: 0}
    assert_node_log_clean(shared_node, mark)


def test_create_topic_errors(client: ClientDriver, shared_node: NodeProcess, topic: str) -> None:
    mark = log_mark(shared_node)
    longest = (topic + "-").ljust(249, "x")  # 249 characters is Kafka's limit
    codes = client.create_topics(
        {"bad name!": 1, "x" * 250: 1, ".": 1, "..": 1, longest: 1, topic: 1}
    )
    assert codes == {
        "bad name!": INVALID_TOPIC_EXCEPTION,
        "x" * 250: INVALID_TOPIC_EXCEPTION,
        ".": INVALID_TOPIC_EXCEPTION,
        "..": INVALID_TOPIC_EXCEPTION,
        longest: 0,
        topic: 0,
    }
    assert client.create_topics({topic: 3}) == {topic: TOPIC_ALREADY_EXISTS}
    listed = client.topics()
    assert listed[topic] == 1
    assert listed[longest] == 1
    assert not {"bad name!", "x" * 250, ".", ".."} & listed.keys()
    # `longest` stays: deleting it is test_delete_topic_with_longest_name's business.
    assert client.delete_topics([topic]) == {topic: 0}
    assert_node_log_clean(shared_node, mark)


def test_delete_topic_with_longest_name(client_cls: type[ClientDriver], node: NodeProcess) -> None:
    """A 249-character name is valid; its log dir (name + "-0") fits in 255 bytes but the
    renamed-for-deletion one must be shortened, as Kafka does."""
    client = client_cls(node.bootstrap)
    longest = "longest-".ljust(249, "x")
    assert client.create_topics({longest: 1}) == {longest: 0}
    record = Outgoing(b"k", b"v", (), BASE_TS)
    assert acked(client.produce(longest, [record], ProducerSettings())) == [Ack(0, 0)]
    mark = log_mark(node)
    assert client.delete_topics([longest]) == {longest: 0}
    assert longest not in client.topics()
    assert_node_log_clean(node, mark)
    node.restart()
    assert longest not in client.topics()


# ------------------------------------------------------------------------- error paths


def test_broker_refuses_record_over_max_message_bytes(
    client: ClientDriver, shared_node: NodeProcess, topic: str
) -> None:
    """The client's own limit is raised well above the record, so the refusal can only be
    the broker's: MESSAGE_TOO_LARGE, and nothing appended."""
    mark = log_mark(shared_node)
    assert client.create_topics({topic: 1}) == {topic: 0}
    huge = Outgoing(b"k", os.urandom(2 << 20), (), BASE_TS, partition=0)
    settings = ProducerSettings(max_request_size=8 << 20)
    [result] = client.produce(topic, [huge], settings)
    assert isinstance(result, ClientError), result
    assert result.code == MESSAGE_TOO_LARGE, result

    # Just under the limit is accepted; it lands at offset 0, so the refused one left nothing.
    fits = Outgoing(b"k", os.urandom(MAX_MESSAGE_BYTES - 1024), (), BASE_TS + 1, partition=0)
    acks = acked(client.produce(topic, [fits], settings))
    assert acks == [Ack(0, 0)]
    assert by_position(client.read_all(topic, 1)) == as_stored([fits], acks)
    assert_node_log_clean(shared_node, mark)


def test_unknown_topic_without_auto_create(
    client_cls: type[ClientDriver], strict_node: NodeProcess, topic: str
) -> None:
    """kafka-python only reports its metadata wait timing out; aiokafka and confluent-kafka
    name UNKNOWN_TOPIC_OR_PARTITION."""
    client = client_cls(strict_node.bootstrap)
    mark = log_mark(strict_node)
    record = Outgoing(b"k", b"v", (), BASE_TS)
    [result] = client.produce(topic, [record], ProducerSettings(timeout_s=2))
    assert isinstance(result, ClientError), result
    assert result.code in (UNKNOWN_TOPIC_OR_PARTITION, None), result
    assert topic not in client.topics()

    # Explicit creation still works on this node.
    assert client.create_topics({topic: 1}) == {topic: 0}
    assert acked(client.produce(topic, [record], ProducerSettings())) == [Ack(0, 0)]
    assert client.delete_topics([topic]) == {topic: 0}
    assert_node_log_clean(strict_node, mark)


# ---------------------------------------------------------------------------- crash


def test_acknowledged_records_survive_kill_9(
    client_cls: type[ClientDriver], node: NodeProcess
) -> None:
    """kill -9 loses no acknowledged record (the page cache survives the process), offsets
    continue where they stopped, and a topic deleted before the crash stays deleted."""
    client = client_cls(node.bootstrap)
    mark = log_mark(node)
    topic, doomed = "survivor", "doomed"
    assert client.create_topics({topic: 3, doomed: 1}) == {topic: 0, doomed: 0}
    expected: dict[tuple[int, int], Stored] = {}
    for mode, (acks, idempotent) in enumerate(ACK_MODES):
        records = make_records(9, 3, BASE_TS + 1000 * mode, tag=f"m{mode}")
        settings = ProducerSettings(compression=CODECS[mode + 1], acks=acks, idempotent=idempotent)
        expected |= as_stored(records, acked(client.produce(topic, records, settings)))
    acked(client.produce(doomed, make_records(3, 1, BASE_TS), ProducerSettings()))
    assert client.delete_topics([doomed]) == {doomed: 0}

    node.kill()
    node.start()

    assert by_position(client.read_all(topic, 3)) == expected
    listed = client.topics()
    assert listed.get(topic) == 3
    assert doomed not in listed

    more = make_records(6, 3, BASE_TS + 10_000, tag="after")
    settings = ProducerSettings(acks="all", idempotent=True)
    expected |= as_stored(more, acked(client.produce(topic, more, settings)))
    assert_dense(list(expected))
    assert by_position(client.read_all(topic, 3)) == expected
    assert_node_log_clean(node, mark)

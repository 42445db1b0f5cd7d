"""kraft.embedded.node: a node on the test's own event loop, driven by aiokafka on that loop,
started and stopped like a service would (context manager, aiohttp cleanup_ctx), and leaving
nothing behind: no task, no thread, no bound port, no temporary directory."""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import kraft
import kraft.embedded
from kraft.config import ConfigError
from kraft.embedded.inloop import EmbeddedNode, TopicCreationError
from kraft.launcher import free_ports
from tests.wait import wait_until_async

# In-process, seconds: the node runs on the test's own loop (no child processes).
pytestmark = pytest.mark.unit

HOST = "127.0.0.1"
DEADLINE_S = 20.0


# --------------------------------------------------------------------------- helpers


def port_is_free(port: int) -> bool:
    """Whether a server could bind `port` again (SO_REUSEADDR, as asyncio's servers do)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def is_empty(directory: Path) -> bool:
    return not any(directory.iterdir())


def exists(path: Path) -> bool:
    return path.exists()


def loop_executor_thread(t: threading.Thread) -> bool:
    """The loop's default executor (aiokafka resolves names there): the host's, not ours."""
    return t.name.startswith("asyncio_")


class Leftovers:
    """Tasks and threads that exist now and did not when the test began."""

    def __init__(self) -> None:
        self.tasks = set(asyncio.all_tasks())
        self.threads = set(threading.enumerate())

    def check(self) -> None:
        tasks = set(asyncio.all_tasks()) - self.tasks - {asyncio.current_task()}
        threads = [
            t
            for t in set(threading.enumerate()) - self.threads
            if t.is_alive() and not loop_executor_thread(t)
        ]
        assert not tasks, f"tasks left running: {tasks}"
        assert not threads, f"threads left running: {threads}"


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the node's temporary data dir goes (so a test can see it come and go)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        return [(await producer.send_and_wait(topic, v)).offset for v in values]
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, group: str | None = None) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(DEADLINE_S):
            while len(values) < count:
                batch = await consumer.getmany(timeout_ms=500)
                values += [r.value for records in batch.values() for r in records if r.value]
        return values
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- tests


async def test_produce_and_consume_on_the_same_loop(temp_root: Path) -> None:
    leftovers = Leftovers()
    async with kraft.embedded.node() as n:
        assert n.node_id == 1 and n.cluster_id
        assert n.port is not None and n.port != 0
        assert n.bootstrap_servers == f"{HOST}:{n.port}"
        assert n.admin_url is None
        data_dir = Path(n.data_dir)
        assert data_dir.parent == temp_root and exists(data_dir)
        assert n.api.health().ready
        offsets = await produce(n.bootstrap_servers, "events", [b"a", b"b", b"c"])
        assert offsets == [0, 1, 2]
        assert await consume(n.bootstrap_servers, "events", 3, group="readers") == [
            b"a",
            b"b",
            b"c",
        ]
        port = n.port
        assert not port_is_free(port)
    assert port_is_free(port)
    assert not exists(data_dir)
    leftovers.check()


def test_import_kraft_stays_cheap_and_reaches_embedded_lazily() -> None:
    probe = (
        "import sys, kraft; assert 'kraft.node' not in sys.modules, 'eager'; "
        "from kraft.embedded.inloop import EmbeddedNode; "
        "assert kraft.embedded.node is not EmbeddedNode and "
        "isinstance(kraft.embedded.node(), EmbeddedNode)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_create_topic_waits_for_leaders_and_refuses_with_kafka_errors() -> None:
    async with kraft.embedded.node({"kraft.admin.listener": f"{HOST}:0"}) as n:
        await n.create_topic("orders", partitions=3, config={"retention.ms": 60000})
        detail = n.api.topic("orders")
        assert detail is not None
        assert [(p.leader, p.hosted_here) for p in detail.partitions] == [(1, True)] * 3
        assert detail.topic.configs == {"retention.ms": "60000"}
        with pytest.raises(TopicCreationError) as exists:
            await n.create_topic("orders")
        assert exists.value.error == "TOPIC_ALREADY_EXISTS"
        with pytest.raises(TopicCreationError) as invalid:
            await n.create_topic("bad", config={"no.such.config": 1})
        assert invalid.value.error == "INVALID_CONFIG"
        assert n.admin_url is not None
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{n.admin_url}/v1/topics/orders") as response,
        ):
            assert response.status == 200
            assert (await response.json())["topic"]["partitions"] == 3
        admin_port = n.node.admin_port
        assert admin_port is not None
    assert port_is_free(admin_port)


async def test_clients_still_connected_are_disconnected_on_exit() -> None:
    """A service may stop its node before its clients: their connections are closed and no
    connection task of the node outlives it."""
    leftovers = Leftovers()
    async with kraft.embedded.node() as n:
        assert n.port is not None
        reader, writer = await asyncio.open_connection(HOST, n.port)
        await produce(n.bootstrap_servers, "t", [b"x"])
    try:
        async with asyncio.timeout(DEADLINE_S):
            assert await reader.read() == b""  # closed by the node
        leftovers.check()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_body_that_raises_stops_the_node(temp_root: Path) -> None:
    leftovers = Leftovers()
    with pytest.raises(LookupError, match="from the body"):
        async with kraft.embedded.node() as n:
            port = n.port
            raise LookupError("from the body")
    assert port is not None and port_is_free(port)
    assert is_empty(temp_root)
    leftovers.check()


async def test_cancelling_the_enclosing_task_stops_the_node(temp_root: Path) -> None:
    leftovers = Leftovers()
    started: asyncio.Future[EmbeddedNode] = asyncio.get_running_loop().create_future()

    async def service() -> None:
        async with kraft.embedded.node() as n:
            started.set_result(n)
            await asyncio.Event().wait()  # serves until cancelled

    task = asyncio.create_task(service())
    n = await started
    port = n.port
    assert port is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert port_is_free(port)
    assert is_empty(temp_root)
    leftovers.check()


async def test_stopping_finishes_when_cancelled_again_meanwhile(temp_root: Path) -> None:
    leftovers = Leftovers()
    n = kraft.embedded.node({"kraft.admin.listener": f"{HOST}:0"})
    await n.start()
    port = n.port
    assert port is not None
    stopping = asyncio.create_task(n.stop())
    await asyncio.sleep(0)  # the stop is under way (its shutdown task is scheduled)...
    assert not port_is_free(port)
    stopping.cancel()  # ...when the host cancels it
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert port_is_free(port)
    assert is_empty(temp_root)
    await n.stop()  # idempotent
    leftovers.check()


async def test_concurrent_stops_return_once_stopped() -> None:
    n = kraft.embedded.node()
    await n.start()
    port = n.port
    assert port is not None
    first, second = asyncio.create_task(n.stop()), asyncio.create_task(n.stop())
    await second
    assert port_is_free(port)
    await first


async def test_cancelled_at_any_point_of_starting_leaves_nothing(temp_root: Path) -> None:
    """Cancelled at its first, second, ... suspension, until it starts before the cancel."""
    leftovers = Leftovers()
    for steps in itertools.count(1):  # at 0 the start would not have begun
        n = kraft.embedded.node({"kraft.admin.listener": f"{HOST}:0"})
        task = asyncio.create_task(n.start())
        for _ in range(steps):
            await asyncio.sleep(0)
        if task.done():
            await n.stop()
            break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        bound = [s.port for s in n.node.servers]
        assert all(port_is_free(p) for p in bound), (steps, bound)
        assert is_empty(temp_root), steps
        leftovers.check()
    assert steps > 1  # the start really was interrupted part-way


async def test_given_data_dir_is_kept_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = {"log.dirs": str(data), "num.partitions": 2}
    async with kraft.embedded.node(config) as first:
        cluster_id = first.cluster_id
        await first.create_topic("kept", partitions=1)
        await produce(first.bootstrap_servers, "kept", [b"one", b"two"])
    assert (data / "meta.properties").exists()
    async with kraft.embedded.node(config) as second:
        assert second.cluster_id == cluster_id
        assert second.data_dir == str(data)
        assert await consume(second.bootstrap_servers, "kept", 2) == [b"one", b"two"]
        detail = second.api.topic("kept")
        assert detail is not None and detail.partitions[0].high_watermark == 2
    assert (data / "kept-0").is_dir()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"authorizer.class.name": "StandardAuthorizer"}, "authorizer.class.name"),
        ({"listeners": "SASL_SSL://127.0.0.1:0,CONTROLLER://127.0.0.1:0"}, "SASL_SSL"),
        ({"num.partitions": 0}, "num.partitions"),
        ({"min.insync.replicas": "two"}, "min.insync.replicas"),
        ({"num.partitions": [3]}, "expected str, int, bool or float"),
        ({"node.id": 2, "controller.quorum.voters": "1@127.0.0.1:0"}, "does not contain"),
        ({"kraft.admin.listener": "nowhere"}, "kraft.admin.listener"),
    ],
)
def test_refused_config_raises_before_anything_starts(
    config: dict[str, Any], message: str, temp_root: Path
) -> None:
    threads = set(threading.enumerate())
    with pytest.raises(ConfigError, match=message):
        kraft.embedded.node(config)
    assert is_empty(temp_root)
    assert set(threading.enumerate()) == threads


async def test_data_dir_of_another_node_is_refused_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with kraft.embedded.node({"log.dirs": str(data), "node.id": 2}):
        pass
    leftovers = Leftovers()
    n = kraft.embedded.node({"log.dirs": str(data)})
    with pytest.raises(RuntimeError, match="formatted for node 2, but this node.s node.id is 1"):
        await n.start()
    assert n.node.servers == []
    leftovers.check()


# --------------------------------------------------------------------------- aiohttp

NODE = web.AppKey("node", EmbeddedNode)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)


async def embedded_kafka(app: web.Application) -> AsyncIterator[None]:
    """The service's own broker, started and stopped with the app."""
    async with kraft.embedded.node() as n:
        await n.create_topic("orders", partitions=2)
        producer = AIOKafkaProducer(bootstrap_servers=n.bootstrap_servers, acks="all")
        await producer.start()
        app[NODE], app[PRODUCER] = n, producer
        try:
            yield
        finally:
            await producer.stop()


async def publish(request: web.Request) -> web.Response:
    sent = await request.app[PRODUCER].send_and_wait(
        "orders", await request.read(), key=request.match_info["key"].encode()
    )
    return web.json_response({"partition": sent.partition, "offset": sent.offset})


async def test_aiohttp_service_publishes_through_its_embedded_node(temp_root: Path) -> None:
    leftovers = Leftovers()
    app = web.Application()
    app.cleanup_ctx.append(embedded_kafka)
    app.router.add_post("/orders/{key}", publish)
    async with TestClient(TestServer(app, host=HOST)) as client:
        n = app[NODE]
        port = n.port
        for i in range(4):
            response = await client.post(f"/orders/k{i}", data=f"order {i}".encode())
            assert response.status == 200, await response.text()
        got = await consume(n.bootstrap_servers, "orders", 4, group="fulfilment")
        assert sorted(got) == [f"order {i}".encode() for i in range(4)]
    assert port is not None and port_is_free(port)
    assert is_empty(temp_root)
    leftovers.check()


# --------------------------------------------------------------------------- quorum


async def test_three_voters_on_one_loop_stop_their_raft_threads(tmp_path: Path) -> None:
    """With more than one voter the metadata lives in the Raft quorum (pysyncobj's thread):
    each node's thread stops with it."""
    leftovers = Leftovers()
    raft, control = free_ports(3), free_ports(3)
    voters = ",".join(f"{i + 1}@{HOST}:{p}" for i, p in enumerate(raft))
    nodes = [
        kraft.embedded.node(
            {
                "node.id": i + 1,
                "cluster.id": "embedded-quorum-test",
                "listeners": f"PLAINTEXT://{HOST}:0,CONTROLLER://{HOST}:{control[i]}",
                "controller.quorum.voters": voters,
                "controller.quorum.bootstrap.servers": ",".join(f"{HOST}:{p}" for p in control),
                "offsets.topic.replication.factor": 3,
                "default.replication.factor": 3,
                "log.dirs": str(tmp_path / f"node-{i + 1}"),
            }
        )
        for i in range(3)
    ]
    try:
        async with asyncio.timeout(DEADLINE_S):
            await asyncio.gather(*(n.start() for n in nodes))
        assert any(t.name.startswith("kraft-quorum-") for t in threading.enumerate())
        await nodes[0].create_topic("replicated", partitions=1)
        detail = nodes[0].api.topic("replicated")
        assert detail is not None and sorted(detail.partitions[0].replicas) == [1, 2, 3]
        await produce(nodes[0].bootstrap_servers, "replicated", [b"x"])
        await wait_until_async(
            lambda: all(
                (p := n.api.partition("replicated", 0)) is not None and p.high_watermark == 1
                for n in nodes
            ),
            "every replica at high watermark 1",
        )
    finally:
        await asyncio.gather(*(n.stop() for n in nodes))
    assert not any(t.name.startswith("kraft-quorum-") for t in threading.enumerate())
    assert all(port_is_free(p) for p in raft + control)
    leftovers.check()

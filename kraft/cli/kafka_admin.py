"""A small Kafka client for the `kraft` CLI, over the Kafka protocol only, so the CLI works
against any Kafka-compatible cluster (Apache Kafka 3.x/4.x included).

Requests go where Kafka's own clients send them: topic and config writes to the broker the
Metadata names as controller (every KRaft broker forwards them to the active controller),
group requests to the group's coordinator (FindCoordinator), ListOffsets / Produce / Fetch to
the partition leaders. Versions are the highest both sides support, capped where a newer
version changes the fields filled here (topic ids instead of names in Fetch v13+, Produce
v13+, OffsetFetch/OffsetCommit v10+). Every connect and every request is bounded by the
client's timeout: a cluster that does not answer raises `Unreachable`, an error code from the
cluster raises `KafkaError` (`NotFound` for an unknown topic or group).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from kraft.net.client import KafkaConnection
from kraft.net.protocol import (
    API_KEYS,
    ErrorCode,
    ListOffsetsRequest,
    ListOffsetsResponse,
    Message,
    MetadataRequest,
    MetadataResponse,
    ProtocolError,
    encode_request,
    error_name,
)

M = TypeVar("M", bound=Message)

_NOT_FOUND = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.UNKNOWN_TOPIC_ID,
    ErrorCode.GROUP_ID_NOT_FOUND,
}


class CliError(Exception):
    """An error the CLI reports with a message and an exit code."""


class Unreachable(CliError):
    """No broker answered within the timeout."""


class KafkaError(CliError):
    def __init__(self, code: int, message: str) -> None:
        self.name = error_name(code)
        self.code = code
        super().__init__(f"{message}: {self.name}")


class NotFound(KafkaError):
    """An unknown topic, partition or group."""


def check(code: int, what: str, message: str | None = None) -> None:
    """Raise for a non-zero Kafka error code about `what`."""
    if code == 0:
        return
    text = f"{what}: {message}" if message else what
    if code in _NOT_FOUND:
        raise NotFound(code, text)
    raise KafkaError(code, text)


@dataclass(frozen=True, slots=True)
class Broker:
    node_id: int
    host: str
    port: int
    rack: str | None


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    out = []
    for item in servers.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"bootstrap server {item!r} is not host:port")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    return out


class KafkaAdmin:
    """Connections to a cluster's brokers, opened on demand; use as `async with`."""

    def __init__(self, bootstrap: str, timeout: float = 10.0, client_id: str = "kraft-cli"):
        self.bootstrap = parse_bootstrap(bootstrap)
        self.timeout = timeout
        self.client_id = client_id
        self.brokers: dict[int, Broker] = {}
        self.controller_id = -1
        self.cluster_id: str | None = None
        self._connections: dict[int, KafkaConnection] = {}
        self._bootstrap_conn: KafkaConnection | None = None

    async def __aenter__(self) -> KafkaAdmin:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        conns = list(self._connections.values())
        if self._bootstrap_conn is not None:
            conns.append(self._bootstrap_conn)
        self._connections.clear()
        self._bootstrap_conn = None
        for conn in conns:
            await conn.close()

    # ------------------------------------------------------------ connections

    async def _open(self, host: str, port: int) -> KafkaConnection:
        conn = KafkaConnection(host, port, client_id=self.client_id)
        try:
            async with asyncio.timeout(self.timeout):
                await conn.connect()
        except (OSError, TimeoutError, ProtocolError) as e:
            await conn.close()
            raise Unreachable(f"cannot connect to {host}:{port}: {e or type(e).__name__}") from e
        return conn

    async def connect(self) -> None:
        """Bootstrap: the first server that answers, then its Metadata (within the timeout)."""
        errors = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        for host, port in self.bootstrap:
            try:
                async with asyncio.timeout_at(deadline):
                    self._bootstrap_conn = await self._open(host, port)
                    await self.refresh_metadata()
                return
            except (Unreachable, TimeoutError) as e:
                errors.append(str(e) or f"{host}:{port}: timed out")
        servers = ",".join(f"{h}:{p}" for h, p in self.bootstrap)
        raise Unreachable(
            f"no broker of {servers} reachable within {self.timeout:g}s ({'; '.join(errors)})"
        )

    async def connection(self, node_id: int) -> KafkaConnection:
        conn = self._connections.get(node_id)
        if conn is not None and conn.connected:
            return conn
        broker = self.brokers.get(node_id)
        if broker is None:
            raise KafkaError(ErrorCode.BROKER_NOT_AVAILABLE, f"broker {node_id} is not known")
        conn = await self._open(broker.host, broker.port)
        self._connections[node_id] = conn
        return conn

    def any_broker(self) -> int:
        if not self.brokers:
            raise KafkaError(ErrorCode.BROKER_NOT_AVAILABLE, "the cluster lists no brokers")
        return min(self.brokers)

    def controller(self) -> int:
        """The broker the Metadata names as controller (it forwards to the active one)."""
        return self.controller_id if self.controller_id in self.brokers else self.any_broker()

    async def call(
        self,
        node_id: int | None,
        message: Message,
        response_type: type[M],
        *,
        max_version: int | None = None,
        min_version: int = 0,
    ) -> M:
        """One request to a broker (None: the bootstrap connection) at the highest common
        version, at most `max_version`, bounded by the timeout."""
        if node_id is None:
            assert self._bootstrap_conn is not None
            conn = self._bootstrap_conn
        else:
            conn = await self.connection(node_id)
        version = self.version(conn, message, max_version, min_version)
        try:
            async with asyncio.timeout(self.timeout):
                response = await conn.send(message, version)
        except TimeoutError as e:
            name = API_KEYS[type(message).API_KEY or 0].name
            raise Unreachable(
                f"{name} to {conn.host}:{conn.port} got no answer within {self.timeout:g}s"
            ) from e
        except ConnectionError as e:
            raise Unreachable(str(e)) from e
        assert isinstance(response, response_type)
        return response

    @staticmethod
    def version(
        conn: KafkaConnection, message: Message, max_version: int | None, min_version: int = 0
    ) -> int:
        api_key = type(message).API_KEY
        assert api_key is not None
        name = API_KEYS[api_key].name
        try:
            version = conn.version_for(api_key)
        except ProtocolError as e:
            raise KafkaError(ErrorCode.UNSUPPORTED_VERSION, f"{name} is not supported") from e
        if max_version is not None:
            version = min(version, max_version)
        lo = conn.versions.get(api_key, (0, 0))[0]
        if version < max(min_version, lo):
            raise KafkaError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"{name} v{max(min_version, lo)}+ is needed, {conn.host}:{conn.port} offers "
                f"up to v{conn.versions.get(api_key, (0, -1))[1]}",
            )
        return version

    def supports(self, api_key: int) -> bool:
        conn = self._bootstrap_conn
        return conn is not None and api_key in conn.versions

    # ------------------------------------------------------------ metadata

    async def metadata(self, topics: Sequence[str] | None = None) -> MetadataResponse:
        """Metadata of `topics` (None: all), refreshing the brokers and controller."""
        request = MetadataRequest(
            topics=None
            if topics is None
            else [MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
            allow_auto_topic_creation=False,
        )
        # Any broker will do: connected ones first, then the bootstrap connection, then the
        # others (one may have died since the last refresh).
        connected = [n for n, c in self._connections.items() if c.connected]
        others = [n for n in sorted(self.brokers) if n not in connected]
        candidates: list[int | None] = [*connected, None, *others]
        if self._bootstrap_conn is None or not self._bootstrap_conn.connected:
            candidates.remove(None)
        response: MetadataResponse | None = None
        failure: Unreachable | None = None
        for node in candidates:
            try:
                response = await self.call(
                    node, request, MetadataResponse, max_version=12, min_version=1
                )
                break
            except Unreachable as e:
                failure = e
        if response is None:
            raise failure or Unreachable("no broker left to ask for metadata")
        self.brokers = {
            b.node_id: Broker(b.node_id, b.host, b.port, b.rack) for b in response.brokers
        }
        self.controller_id = response.controller_id
        self.cluster_id = response.cluster_id
        return response

    async def refresh_metadata(self) -> MetadataResponse:
        return await self.metadata([])

    async def topic_metadata(self, topics: Sequence[str]) -> MetadataResponse:
        """Metadata of the named topics; NotFound names an unknown one."""
        response = await self.metadata(topics)
        for topic in response.topics:
            check(topic.error_code, f"topic {topic.name!r}")
        return response

    async def leaders(self, topic: str) -> dict[int, int]:
        """partition -> leader id of `topic`."""
        response = await self.topic_metadata([topic])
        (t,) = response.topics
        return {p.partition_index: p.leader_id for p in t.partitions}


async def send_without_response(admin: KafkaAdmin, node_id: int, message: Message) -> None:
    """A request Kafka does not answer (Produce with acks=0): written on a connection of its
    own, since the shared connection would wait for a response that never comes."""
    broker = admin.brokers[node_id]
    conn = await admin.connection(node_id)
    version = admin.version(conn, message, 11, 3)
    try:
        async with asyncio.timeout(admin.timeout):
            _, writer = await asyncio.open_connection(broker.host, broker.port)
            writer.write(encode_request(message, version, 1, admin.client_id))
            await writer.drain()
            writer.close()
            await writer.wait_closed()
    except (OSError, TimeoutError) as e:
        raise Unreachable(f"cannot send to broker {node_id}: {e or type(e).__name__}") from e


EARLIEST = -2
LATEST = -1


async def list_offsets(
    admin: KafkaAdmin, topic: str, partitions: Sequence[int] | None, timestamp: int
) -> dict[int, int]:
    """partition -> offset of `topic` at `timestamp` (EARLIEST, LATEST or ms since the epoch;
    -1 where no record is that recent), asked of each partition's leader."""
    leaders = await admin.leaders(topic)
    wanted = sorted(leaders) if partitions is None else list(partitions)
    by_leader: dict[int, list[int]] = {}
    for partition in wanted:
        if partition not in leaders:
            raise NotFound(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"partition {topic}-{partition}")
        by_leader.setdefault(leaders[partition], []).append(partition)
    out: dict[int, int] = {}
    for leader, parts in by_leader.items():
        if leader < 0:
            raise KafkaError(
                ErrorCode.LEADER_NOT_AVAILABLE, f"partitions {topic}-{parts} have no leader"
            )
        request = ListOffsetsRequest(
            replica_id=-1,
            topics=[
                ListOffsetsRequest.ListOffsetsTopic(
                    name=topic,
                    partitions=[
                        ListOffsetsRequest.ListOffsetsPartition(
                            partition_index=p, timestamp=timestamp
                        )
                        for p in parts
                    ],
                )
            ],
        )
        response = await admin.call(leader, request, ListOffsetsResponse, min_version=1)
        for t in response.topics:
            for p in t.partitions:
                check(p.error_code, f"partition {topic}-{p.partition_index}")
                out[p.partition_index] = p.offset
    return out

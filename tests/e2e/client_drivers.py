"""One blocking interface over kafka-python, aiokafka and confluent-kafka.

Each end-to-end test is written once against `ClientDriver` and parametrized over the three
drivers, so a behaviour the broker gets right for one client but wrong for another (an older
request version, a different batching or compression path) shows up as one failing id.

Every driver uses only its client's public API; nothing here joins a consumer group (the broker
has no group APIs yet): reads use manual partition assignment and never commit offsets.
Every client a driver opens is closed before the method returns.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Kafka error codes the tests look for.
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


@dataclass(frozen=True)
class Outgoing:
    """A record to produce; `partition=None` lets the client's partitioner pick from the key."""

    key: bytes | None
    value: bytes | None  # None: a tombstone
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int
    partition: int | None = None


@dataclass(frozen=True)
class Ack:
    partition: int
    offset: int


@dataclass(frozen=True)
class Stored:
    """A record as a consumer read it back."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int


class ClientError(Exception):
    """A failure as the client reported it.

    `code` is the Kafka error code when the client names one, None when it only gave up
    waiting (a client-side timeout)."""

    def __init__(self, code: int | None, detail: str) -> None:
        super().__init__(f"code={code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class ProducerSettings:
    compression: str = "none"
    acks: str = "all"  # "1" or "all"
    idempotent: bool = False
    max_request_size: int | None = None
    # Upper bound on everything one produce call may wait for (metadata, delivery).
    timeout_s: float = 20.0


class ClientDriver(ABC):
    name: str

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    @abstractmethod
    def create_topics(self, partitions: dict[str, int]) -> dict[str, int]:
        """Create each topic with its partition count; the error code per topic (0: created)."""

    @abstractmethod
    def delete_topics(self, names: Sequence[str]) -> dict[str, int]:
        """The error code per topic (0: deleted)."""

    @abstractmethod
    def topics(self) -> dict[str, int]:
        """Every topic the cluster metadata lists, with its partition count."""

    @abstractmethod
    def produce(
        self, topic: str, records: Sequence[Outgoing], settings: ProducerSettings
    ) -> list[Ack | ClientError]:
        """Send every record with one producer, then wait for all of them; the outcome of
        each, in order."""

    @abstractmethod
    def read_all(self, topic: str, partitions: int, timeout_s: float = 20.0) -> list[Stored]:
        """Every record of partitions 0..partitions-1, from the log start to the end offset
        the client sees when it starts reading."""

    @abstractmethod
    def offsets_for_times(self, topic: str, timestamps: dict[int, int]) -> dict[int, int | None]:
        """Per partition, the first offset whose timestamp is >= the given one (None: none)."""


def _deadline(timeout_s: float) -> float:
    return time.monotonic() + timeout_s


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(what)


# --------------------------------------------------------------------------- kafka-python


class KafkaPythonDriver(ClientDriver):
    name = "kafka-python"

    @staticmethod
    def _error(e: Exception) -> ClientError:
        return ClientError(getattr(e, "errno", None), f"{type(e).__name__}: {e}")

    def _admin(self) -> Any:
        from kafka.admin import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)

    def create_topics(self, partitions: dict[str, int]) -> dict[str, int]:
        admin = self._admin()
        try:
            response = admin.create_topics(
                {
                    name: {"num_partitions": count, "replication_factor": 1}
                    for name, count in partitions.items()
                },
                raise_errors=False,
            )
        finally:
            admin.close()
        return {t["name"]: t["error_code"] for t in response["topics"]}

    def delete_topics(self, names: Sequence[str]) -> dict[str, int]:
        admin = self._admin()
        try:
            response = admin.delete_topics(list(names), raise_errors=False)
        finally:
            admin.close()
        return {t["name"]: t["error_code"] for t in response["topics"]}

    def topics(self) -> dict[str, int]:
        admin = self._admin()
        try:
            described = admin.describe_topics()
        finally:
            admin.close()
        return {t["name"]: len(t["partitions"]) for t in described if t["error_code"] == 0}

    def produce(
        self, topic: str, records: Sequence[Outgoing], settings: ProducerSettings
    ) -> list[Ack | ClientError]:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        timeout_ms = int(settings.timeout_s * 1000)
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks=-1 if settings.acks == "all" else int(settings.acks),
            enable_idempotence=settings.idempotent,
            compression_type=None if settings.compression == "none" else settings.compression,
            max_request_size=settings.max_request_size or 1048576,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms // 2,
            delivery_timeout_ms=timeout_ms,
            linger_ms=5,
        )
        try:
            pending: list[Any] = []
            for r in records:
                try:
                    pending.append(
                        producer.send(
                            topic,
                            value=r.value,
                            key=r.key,
                            headers=list(r.headers),
                            partition=r.partition,
                            timestamp_ms=r.timestamp,
                        )
                    )
                except KafkaError as e:
                    pending.append(self._error(e))
            producer.flush(timeout=settings.timeout_s)
            results: list[Ack | ClientError] = []
            for p in pending:
                if isinstance(p, ClientError):
                    results.append(p)
                    continue
                try:
                    metadata = p.get(timeout=settings.timeout_s)
                except KafkaError as e:
                    results.append(self._error(e))
                else:
                    results.append(Ack(metadata.partition, metadata.offset))
            return results
        finally:
            producer.close(timeout=10)

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            request_timeout_ms=10_000,
        )

    def read_all(self, topic: str, partitions: int, timeout_s: float = 20.0) -> list[Stored]:
        from kafka import TopicPartition

        deadline = _deadline(timeout_s)
        consumer = self._consumer()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            end = consumer.end_offsets(tps)
            consumer.seek_to_beginning(*tps)
            out: list[Stored] = []
            while any(consumer.position(tp) < end[tp] for tp in tps):
                _check_deadline(deadline, f"kafka-python read {topic}: {len(out)} records")
                for messages in consumer.poll(timeout_ms=200).values():
                    out += [
                        Stored(
                            m.partition,
                            m.offset,
                            m.key,
                            m.value,
                            tuple(m.headers or ()),
                            m.timestamp,
                        )
                        for m in messages
                    ]
            return out
        finally:
            consumer.close()

    def offsets_for_times(self, topic: str, timestamps: dict[int, int]) -> dict[int, int | None]:
        from kafka import TopicPartition

        consumer = self._consumer()
        try:
            found = consumer.offsets_for_times(
                {TopicPartition(topic, p): ts for p, ts in timestamps.items()}
            )
        finally:
            consumer.close()
        return {tp.partition: (o.offset if o is not None else None) for tp, o in found.items()}


# ------------------------------------------------------------------------------- aiokafka


class AioKafkaDriver(ClientDriver):
    """aiokafka is asyncio-only: each method runs its own short-lived event loop."""

    name = "aiokafka"

    @staticmethod
    def _error(e: Exception) -> ClientError:
        return ClientError(getattr(e, "errno", None), f"{type(e).__name__}: {e}")

    async def _with_admin(self, call: Any) -> Any:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            return await call(admin)
        finally:
            await admin.close()

    def create_topics(self, partitions: dict[str, int]) -> dict[str, int]:
        from aiokafka.admin import NewTopic

        new = [NewTopic(name, count, 1) for name, count in partitions.items()]
        response = asyncio.run(self._with_admin(lambda admin: admin.create_topics(new)))
        return {t["topic"]: t["error_code"] for t in response.to_object()["topic_errors"]}

    def delete_topics(self, names: Sequence[str]) -> dict[str, int]:
        response = asyncio.run(self._with_admin(lambda admin: admin.delete_topics(list(names))))
        return {t["topic"]: t["error_code"] for t in response.to_object()["topic_error_codes"]}

    def topics(self) -> dict[str, int]:
        described = asyncio.run(self._with_admin(lambda admin: admin.describe_topics()))
        return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}

    def produce(
        self, topic: str, records: Sequence[Outgoing], settings: ProducerSettings
    ) -> list[Ack | ClientError]:
        return asyncio.run(self._produce(topic, records, settings))

    async def _produce(
        self, topic: str, records: Sequence[Outgoing], settings: ProducerSettings
    ) -> list[Ack | ClientError]:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        timeout_ms = int(settings.timeout_s * 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all" if settings.acks == "all" else int(settings.acks),
            enable_idempotence=settings.idempotent,
            compression_type=None if settings.compression == "none" else settings.compression,
            max_request_size=settings.max_request_size or 1048576,
            request_timeout_ms=timeout_ms,
            linger_ms=5,
        )
        await producer.start()
        try:
            pending: list[Any] = []
            for r in records:
                try:
                    pending.append(
                        await producer.send(
                            topic,
                            value=r.value,
                            key=r.key,
                            headers=list(r.headers),
                            partition=r.partition,
                            timestamp_ms=r.timestamp,
                        )
                    )
                except KafkaError as e:
                    pending.append(self._error(e))
            results: list[Ack | ClientError] = []
            for p in pending:
                if isinstance(p, ClientError):
                    results.append(p)
                    continue
                try:
                    metadata = await asyncio.wait_for(p, settings.timeout_s)
                except KafkaError as e:
                    results.append(self._error(e))
                except TimeoutError as e:
                    results.append(ClientError(None, f"no delivery report: {e!r}"))
                else:
                    results.append(Ack(metadata.partition, metadata.offset))
            return results
        finally:
            await producer.stop()

    def _consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            request_timeout_ms=10_000,
        )

    def read_all(self, topic: str, partitions: int, timeout_s: float = 20.0) -> list[Stored]:
        return asyncio.run(asyncio.wait_for(self._read_all(topic, partitions), timeout_s))

    async def _read_all(self, topic: str, partitions: int) -> list[Stored]:
        from aiokafka import TopicPartition

        consumer = self._consumer()
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[Stored] = []
            while any([await consumer.position(tp) < end[tp] for tp in tps]):
                batches = await consumer.getmany(*tps, timeout_ms=200)
                for messages in batches.values():
                    out += [
                        Stored(
                            m.partition,
                            m.offset,
                            m.key,
                            m.value,
                            tuple(m.headers or ()),
                            m.timestamp,
                        )
                        for m in messages
                    ]
            return out
        finally:
            await consumer.stop()

    def offsets_for_times(self, topic: str, timestamps: dict[int, int]) -> dict[int, int | None]:
        return asyncio.run(self._offsets_for_times(topic, timestamps))

    async def _offsets_for_times(
        self, topic: str, timestamps: dict[int, int]
    ) -> dict[int, int | None]:
        from aiokafka import TopicPartition

        consumer = self._consumer()
        await consumer.start()
        try:
            found = await consumer.offsets_for_times(
                {TopicPartition(topic, p): ts for p, ts in timestamps.items()}
            )
        finally:
            await consumer.stop()
        return {tp.partition: (o.offset if o is not None else None) for tp, o in found.items()}


# ------------------------------------------------------------------------ confluent-kafka


class ConfluentDriver(ClientDriver):
    name = "confluent-kafka"

    @staticmethod
    def _error(e: Any) -> ClientError:
        """From a confluent KafkaError. librdkafka reports its own conditions with negative
        codes: `_UNKNOWN_TOPIC` is its name for the broker's UNKNOWN_TOPIC_OR_PARTITION in a
        metadata response, the `_*TIMED_OUT` ones are client-side timeouts; any other
        negative code is kept as is (and matches no Kafka error code)."""
        from confluent_kafka import KafkaError

        code = e.code()
        if code == KafkaError._UNKNOWN_TOPIC:
            return ClientError(UNKNOWN_TOPIC_OR_PARTITION, f"{e.name()}: {e.str()}")
        if code in (KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT):
            return ClientError(None, f"{e.name()}: {e.str()}")
        return ClientError(code, f"{e.name()}: {e.str()}")

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap})

    def _results(self, futures: dict[str, Any]) -> dict[str, int]:
        from confluent_kafka import KafkaException

        codes: dict[str, int] = {}
        for name, future in futures.items():
            try:
                future.result(timeout=15)
            except KafkaException as e:
                codes[name] = e.args[0].code()
            else:
                codes[name] = 0
        return codes

    def create_topics(self, partitions: dict[str, int]) -> dict[str, int]:
        from confluent_kafka.admin import NewTopic

        # The admin client has no close(): it is destroyed when garbage collected, failing its
        # pending futures with _DESTROY, so it must stay referenced until they complete.
        admin = self._admin()
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=count) for name, count in partitions.items()],
            operation_timeout=10,
            request_timeout=15,
        )
        return self._results(futures)

    def delete_topics(self, names: Sequence[str]) -> dict[str, int]:
        admin = self._admin()
        futures = admin.delete_topics(list(names), operation_timeout=10, request_timeout=15)
        return self._results(futures)

    def topics(self) -> dict[str, int]:
        metadata = self._admin().list_topics(timeout=10)
        return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}

    def produce(
        self, topic: str, records: Sequence[Outgoing], settings: ProducerSettings
    ) -> list[Ack | ClientError]:
        from confluent_kafka import KafkaException, Producer

        timeout_ms = int(settings.timeout_s * 1000)
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "acks": settings.acks,
            "enable.idempotence": settings.idempotent,
            "compression.type": settings.compression,
            "linger.ms": 5,
            "message.timeout.ms": timeout_ms,
            "request.timeout.ms": timeout_ms // 2,
            # How long a topic missing from metadata may take to appear before its records
            # fail with _UNKNOWN_TOPIC (librdkafka's default is 30 s).
            "topic.metadata.propagation.max.ms": min(timeout_ms, 2_000),
        }
        if settings.max_request_size is not None:
            config["message.max.bytes"] = settings.max_request_size
        producer = Producer(config)
        results: list[Ack | ClientError | None] = [None] * len(records)

        def on_delivery(index: int, err: Any, msg: Any) -> None:
            results[index] = (
                self._error(err) if err is not None else Ack(msg.partition(), msg.offset())
            )

        for index, r in enumerate(records):
            kwargs: dict[str, Any] = {} if r.partition is None else {"partition": r.partition}
            try:
                producer.produce(
                    topic,
                    value=r.value,
                    key=r.key,
                    headers=list(r.headers),
                    timestamp=r.timestamp,
                    on_delivery=functools.partial(on_delivery, index),
                    **kwargs,
                )
            except KafkaException as e:
                results[index] = self._error(e.args[0])
            # Serve delivery callbacks so the local queue never fills up.
            producer.poll(0)
        # The producer has no close(): flush() is its orderly shutdown.
        left = producer.flush(settings.timeout_s + 5)
        return [
            r if r is not None else ClientError(None, f"no delivery report ({left} left)")
            for r in results
        ]

    def _consumer(self) -> Any:
        from confluent_kafka import Consumer

        # group.id is mandatory for this client, but with assign() and no commits it never
        # needs the group coordinator.
        return Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"kraft-e2e-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
            }
        )

    def read_all(self, topic: str, partitions: int, timeout_s: float = 20.0) -> list[Stored]:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        deadline = _deadline(timeout_s)
        consumer = self._consumer()
        try:
            end = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)
            }
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
            next_offset = dict.fromkeys(range(partitions), 0)
            out: list[Stored] = []
            while any(next_offset[p] < end[p] for p in range(partitions)):
                _check_deadline(deadline, f"confluent read {topic}: {len(out)} records")
                for m in consumer.consume(num_messages=500, timeout=0.2):
                    if m.error() is not None:
                        raise self._error(m.error())
                    out.append(
                        Stored(
                            m.partition(),
                            m.offset(),
                            m.key(),
                            m.value(),
                            tuple(m.headers() or ()),
                            m.timestamp()[1],
                        )
                    )
                    next_offset[m.partition()] = m.offset() + 1
            return out
        finally:
            consumer.close()

    def offsets_for_times(self, topic: str, timestamps: dict[int, int]) -> dict[int, int | None]:
        from confluent_kafka import TopicPartition

        consumer = self._consumer()
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, p, ts) for p, ts in timestamps.items()], timeout=10
            )
        finally:
            consumer.close()
        # librdkafka reports "no such record" as offset -1 (OFFSET_END).
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}


DRIVERS: dict[str, type[ClientDriver]] = {
    d.name: d for d in (KafkaPythonDriver, AioKafkaDriver, ConfluentDriver)
}

"""The replica fetcher manager's shutdown: metadata that arrives while it stops (a controlled
shutdown moves leaders, the broker becomes a follower elsewhere) neither breaks the stop nor
starts fetchers that nothing would stop (found by a process test: "dictionary changed size
during iteration" made a node exit 1 on SIGTERM)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

from kraft.net.broker.partition import Partition
from kraft.net.broker.replication import ReplicaFetcher, ReplicaFetcherManager


class SlowStopFetcher:
    """Stands in for a socket fetcher: its stop yields to the loop, as closing a
    connection does."""

    instances: list[SlowStopFetcher] = []

    def __init__(self, source: int, on_stop: Any = None) -> None:
        self.source = source
        self.partitions: dict[tuple[str, int], Partition] = {}
        self.started = self.stopped = False
        self.on_stop = on_stop
        SlowStopFetcher.instances.append(self)

    def start(self) -> None:
        self.started = True

    def add(self, partition: Partition) -> None:
        self.partitions[(partition.topic, partition.index)] = partition

    def remove(self, key: tuple[str, int]) -> None:
        self.partitions.pop(key, None)

    async def stop(self) -> None:
        if self.on_stop is not None:
            self.on_stop()
        await asyncio.sleep(0)
        self.stopped = True


def _partition(topic: str, leader: int) -> Partition:
    p = cast(Any, Partition).__new__(Partition)
    p.topic, p.index, p.leader, p.topic_id = topic, 0, leader, uuid.uuid4()
    return cast(Partition, p)


async def test_follow_during_stop_starts_nothing_and_every_fetcher_stops() -> None:
    SlowStopFetcher.instances.clear()
    manager: ReplicaFetcherManager

    def metadata_arrives() -> None:
        manager.follow(_partition("moved", leader=3))

    def new_fetcher(source: int) -> ReplicaFetcher:
        hook = metadata_arrives if source == 2 else None
        return cast(ReplicaFetcher, SlowStopFetcher(source, hook))

    manager = ReplicaFetcherManager(1, lambda _: None, "", new_fetcher=new_fetcher)
    manager.follow(_partition("a", leader=2))
    manager.follow(_partition("b", leader=4))
    await manager.stop()
    assert [f.source for f in SlowStopFetcher.instances] == [2, 4]
    assert all(f.stopped for f in SlowStopFetcher.instances)
    assert manager.fetchers == {}

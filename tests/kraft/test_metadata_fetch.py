"""The controller's metadata Fetch / FetchSnapshot handlers, with no network.

A `Committer` stands for one controller's quorum: each `commit` encodes one entry as the
Raft log holds it, publishes it to the image and feeds it to the handlers' window, as
`kraft.node` wires them. Responses go through the codec (encode, decode) at the versions
brokers use, so every field set here is one the wire carries.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from kraft.controller.metadata_fetch import (
    METADATA_TOPIC,
    METADATA_TOPIC_ID,
    CommittedEntries,
    MetadataFetch,
)
from kraft.log.batch import iter_headers
from kraft.log.records import decode_records
from kraft.metadata.image import MetadataImage
from kraft.metadata.publisher import MetadataPublisher
from kraft.metadata.record_log import encode_entry
from kraft.metadata.snapshot import decode_snapshot, image_from_records
from kraft.net.protocol import (
    ErrorCode,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    Message,
    RequestHeader,
    decode_metadata_record,
    decode_response,
    encode_response,
)
from kraft.net.protocol import _generated as m
from tests.wait import wait_until_async

CLUSTER = "test-cluster-id"


class Committer:
    def __init__(self, entries: CommittedEntries | None = None, active: bool = True) -> None:
        self.image = MetadataImage()
        self.publisher = MetadataPublisher(self.image)
        self.active = active
        self.term = 3
        self.next_offset = 0
        # Every pass of a fetch checks leadership first, then answers or parks without
        # yielding in between: a fetch that checked and has not answered is parked.
        self.leadership_checks = 0
        self.fetch = MetadataFetch(
            1,
            CLUSTER,
            self.image,
            self._is_active,
            lambda: (1 if self.active else 2, self.term),
            entries,
        )

    def _is_active(self) -> bool:
        self.leadership_checks += 1
        return self.active

    async def parked(self) -> None:
        await wait_until_async(lambda: self.leadership_checks > 0, "the fetch to park", 5)

    def commit(self, *records: Message) -> int:
        """One committed entry; the offset of its first record."""
        first = self.next_offset
        self.next_offset += len(records)
        self.publisher.publish(first, records)
        self.fetch.on_commit(first, encode_entry(records), len(records))
        return first

    def topics(self, count: int, prefix: str = "t") -> None:
        for i in range(count):
            topic_id = uuid.uuid4()
            self.commit(
                m.TopicRecord(name=f"{prefix}{i}", topic_id=topic_id),
                m.PartitionRecord(partition_id=0, topic_id=topic_id, replicas=[1], isr=[1]),
            )


def fetch_request(offset: int, max_wait_ms: int = 0, max_bytes: int = 1 << 20) -> FetchRequest:
    return FetchRequest(
        cluster_id=CLUSTER,
        replica_state=FetchRequest.ReplicaState(replica_id=7, replica_epoch=5),
        max_wait_ms=max_wait_ms,
        min_bytes=1,
        topics=[
            FetchRequest.FetchTopic(
                topic=METADATA_TOPIC,
                topic_id=METADATA_TOPIC_ID,
                partitions=[
                    FetchRequest.FetchPartition(
                        partition=0, fetch_offset=offset, partition_max_bytes=max_bytes
                    )
                ],
            )
        ],
    )


def header(api_key: int, version: int) -> RequestHeader:
    return RequestHeader(api_key=api_key, api_version=version, correlation_id=1)


def wire(response: Message, api_key: int, version: int) -> Message:
    """The response as a broker decodes it."""
    frame = encode_response(response, version, 1)
    return decode_response(bytes(frame[4:]), api_key, version)[1]


async def fetch(c: Committer, request: FetchRequest, version: int = 17) -> FetchResponse:
    response = wire(await c.fetch.fetch(header(1, version), request), 1, version)
    assert isinstance(response, FetchResponse)
    return response


def partition(response: FetchResponse) -> FetchResponse.PartitionData:
    ((topic,),) = [response.responses]
    (data,) = topic.partitions
    return data


def batches(data: FetchResponse.PartitionData) -> list[tuple[int, list[Message]]]:
    """(base offset, records) of each batch of a Fetch answer."""
    raw = bytes(data.records or b"")
    out = []
    for pos, h in iter_headers(raw):
        records = decode_records(raw[pos : pos + h.size])
        out.append((h.base_offset, [decode_metadata_record(r.value) for r in records if r.value]))
    return out


async def fetch_snapshot(
    c: Committer, end_offset: int, epoch: int, position: int = 0, max_bytes: int = 1 << 20
) -> FetchSnapshotResponse:
    request = FetchSnapshotRequest(
        cluster_id=CLUSTER,
        replica_id=7,
        max_bytes=max_bytes,
        topics=[
            FetchSnapshotRequest.TopicSnapshot(
                name=METADATA_TOPIC,
                partitions=[
                    FetchSnapshotRequest.PartitionSnapshot(
                        partition=0,
                        snapshot_id=FetchSnapshotRequest.SnapshotId(
                            end_offset=end_offset, epoch=epoch
                        ),
                        position=position,
                    )
                ],
            )
        ],
    )
    response = wire(await c.fetch.fetch_snapshot(header(59, 1), request), 59, 1)
    assert isinstance(response, FetchSnapshotResponse)
    return response


# ------------------------------------------------------------------- offsets


@pytest.mark.parametrize("version", [12, 13, 17])
async def test_fetch_serves_committed_entries_by_metadata_offset(version: int) -> None:
    c = Committer()
    c.topics(3)  # offsets 0-1, 2-3, 4-5
    data = partition(await fetch(c, fetch_request(0), version))
    assert data.error_code == 0
    assert data.high_watermark == 6 and data.log_start_offset == 0
    assert data.current_leader.leader_id == 1 and data.current_leader.leader_epoch == 3
    got = batches(data)
    assert [base for base, _ in got] == [0, 2, 4]
    assert [r.name for _, records in got for r in records if isinstance(r, m.TopicRecord)] == [
        "t0",
        "t1",
        "t2",
    ]
    later = partition(await fetch(c, fetch_request(4), version))
    assert [base for base, _ in batches(later)] == [4]


async def test_fetch_stops_at_max_bytes_but_always_returns_one_entry() -> None:
    c = Committer()
    c.topics(5)
    one = partition(await fetch(c, fetch_request(0, max_bytes=1)))
    assert [base for base, _ in batches(one)] == [0]
    size = len(bytes(one.records or b""))
    two = partition(await fetch(c, fetch_request(0, max_bytes=2 * size)))
    assert [base for base, _ in batches(two)] == [0, 2]


async def test_fetch_at_the_end_without_wait_is_empty() -> None:
    c = Committer()
    c.topics(2)
    data = partition(await fetch(c, fetch_request(4)))
    assert data.error_code == 0 and not data.records and data.high_watermark == 4
    assert data.snapshot_id.end_offset == -1


# ----------------------------------------------------------------- long poll


async def test_a_parked_fetch_is_answered_by_the_next_commit() -> None:
    c = Committer()
    c.topics(1)
    started = time.monotonic()
    parked = asyncio.create_task(fetch(c, fetch_request(2, max_wait_ms=5000)))
    await c.parked()
    assert not parked.done()
    c.topics(1, prefix="late")
    data = partition(await asyncio.wait_for(parked, 1.0))
    assert time.monotonic() - started < 1.0
    assert [base for base, _ in batches(data)] == [2]


async def test_a_parked_fetch_ends_empty_after_max_wait() -> None:
    c = Committer()
    started = time.monotonic()
    data = partition(await fetch(c, fetch_request(0, max_wait_ms=100)))
    assert 0.09 <= time.monotonic() - started < 1.0
    assert data.error_code == 0 and not data.records


async def test_a_parked_fetch_is_sent_away_when_leadership_is_lost() -> None:
    c = Committer()
    parked = asyncio.create_task(fetch(c, fetch_request(0, max_wait_ms=10_000)))
    await c.parked()
    c.active = False
    c.fetch.on_leader_change()
    response = await asyncio.wait_for(parked, 1.0)
    assert response.error_code == ErrorCode.NOT_CONTROLLER


# ------------------------------------------------------------------ snapshots


async def test_an_offset_below_the_window_gets_a_snapshot_of_the_current_image() -> None:
    c = Committer(CommittedEntries(max_entries=2))
    c.topics(5)  # the window keeps offsets 6-9
    c.commit(m.ProducerIdsRecord(broker_id=1, broker_epoch=0, next_producer_id=1000))
    data = partition(await fetch(c, fetch_request(0)))
    assert data.log_start_offset == 8 and data.high_watermark == 11
    assert not data.records
    assert (data.snapshot_id.end_offset, data.snapshot_id.epoch) == (11, 3)
    # Downloaded in chunks.
    chunks = bytearray()
    while True:
        part = (await fetch_snapshot(c, 11, 3, position=len(chunks), max_bytes=50)).topics[0]
        p = part.partitions[0]
        assert p.error_code == 0 and p.position == len(chunks)
        chunks += p.unaligned_records
        if len(chunks) >= p.size:
            break
    rebuilt = image_from_records(decode_snapshot(chunks), 10)
    assert vars(rebuilt) == vars(c.image)
    # Fetching resumes at the snapshot's end offset.
    c.topics(1, prefix="after")
    assert [base for base, _ in batches(partition(await fetch(c, fetch_request(11))))] == [11]


async def test_offsets_inside_an_entry_or_past_the_end_get_a_snapshot() -> None:
    c = Committer()
    c.topics(2)
    for offset in (1, 3, 5, -1):
        data = partition(await fetch(c, fetch_request(offset)))
        assert data.snapshot_id.end_offset == 4, offset


async def test_one_snapshot_serves_brokers_while_the_window_continues_it() -> None:
    c = Committer(CommittedEntries(max_entries=3))
    c.topics(4)
    first = partition(await fetch(c, fetch_request(0))).snapshot_id
    c.topics(1, prefix="more")
    again = partition(await fetch(c, fetch_request(0))).snapshot_id
    assert (again.end_offset, again.epoch) == (first.end_offset, first.epoch)
    c.topics(3, prefix="many")  # the window moved past the old snapshot
    newer = partition(await fetch(c, fetch_request(0))).snapshot_id
    assert newer.end_offset == c.next_offset


async def test_fetch_snapshot_errors() -> None:
    c = Committer(CommittedEntries(max_entries=1))
    c.topics(3)
    sid = partition(await fetch(c, fetch_request(0))).snapshot_id
    unknown = await fetch_snapshot(c, sid.end_offset + 1, sid.epoch)
    assert unknown.topics[0].partitions[0].error_code == ErrorCode.SNAPSHOT_NOT_FOUND
    wrong_epoch = await fetch_snapshot(c, sid.end_offset, sid.epoch + 1)
    assert wrong_epoch.topics[0].partitions[0].error_code == ErrorCode.SNAPSHOT_NOT_FOUND
    beyond = await fetch_snapshot(c, sid.end_offset, sid.epoch, position=10**6)
    assert beyond.topics[0].partitions[0].error_code == ErrorCode.POSITION_OUT_OF_RANGE
    c.active = False
    moved = await fetch_snapshot(c, sid.end_offset, sid.epoch)
    assert moved.error_code == ErrorCode.NOT_CONTROLLER
    assert moved.topics[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


async def test_the_window_starts_over_when_the_image_jumps() -> None:
    """A controller that loads a Raft snapshot moves its image without feeding entries: the
    window must not serve entries that no longer end where the image stands."""
    c = Committer()
    c.topics(2)
    c.image.last_offset = 99
    data = partition(await fetch(c, fetch_request(2)))
    assert data.snapshot_id.end_offset == 100
    assert data.log_start_offset == 100 and data.high_watermark == 100


# ------------------------------------------------------------------ refusals


async def test_a_controller_that_is_not_active_sends_the_broker_on() -> None:
    c = Committer(active=False)
    c.topics(1)
    response = await fetch(c, fetch_request(0))
    assert response.error_code == ErrorCode.NOT_CONTROLLER
    data = partition(response)
    assert data.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert data.current_leader.leader_id == 2 and data.current_leader.leader_epoch == 3
    assert not data.records


async def test_other_clusters_and_partitions_are_refused() -> None:
    c = Committer()
    other = fetch_request(0)
    other.cluster_id = "another"
    assert (await fetch(c, other)).error_code == ErrorCode.INCONSISTENT_CLUSTER_ID
    wrong = fetch_request(0)
    wrong.topics[0].partitions[0].partition = 1
    assert partition(await fetch(c, wrong)).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    by_id = fetch_request(0)
    by_id.topics[0].topic_id = uuid.uuid4()
    assert partition(await fetch(c, by_id)).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    two = fetch_request(0)
    two.topics.append(two.topics[0])
    assert (await fetch(c, two)).error_code == ErrorCode.INVALID_REQUEST


def test_the_window_is_bounded_in_entries_and_bytes() -> None:
    entries = CommittedEntries(max_entries=3, max_bytes=10**9)
    batch = encode_entry([m.NoOpRecord()])
    for offset in range(10):
        entries.append(offset, batch, 1)
    assert (entries.start_offset, entries.end_offset) == (7, 10)
    assert entries.serves(7) and entries.serves(10) and not entries.serves(6)
    small = CommittedEntries(max_entries=100, max_bytes=len(batch) * 2)
    for offset in range(10):
        small.append(offset, batch, 1)
    assert small.start_offset == 8
    small.append(42, batch, 1)  # not contiguous: starts over
    assert (small.start_offset, small.end_offset) == (42, 43)

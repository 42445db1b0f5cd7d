"""A durable local log of metadata records (single node, until the Raft quorum replaces it).

It is a partition log of its own, `__cluster_metadata-0` in the first log dir, as in Kafka's
KRaft layout: each append is one record batch whose records are framed metadata records
(`net.protocol.encode_metadata_record`), fsynced before the append returns, so a change is
applied to the image only once it is durable. A batch is atomic: it is wholly there or, after
a crash, wholly truncated away by recovery.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence

from kraft.log.batch import iter_headers
from kraft.log.config import LogConfig
from kraft.log.partition_log import PartitionLog
from kraft.log.records import Record, build_batch, decode_records
from kraft.metadata.publisher import MetadataPublisher
from kraft.net.protocol import Message, decode_metadata_record, encode_metadata_record

METADATA_TOPIC = "__cluster_metadata"
# Kafka's Uuid.METADATA_TOPIC_ID: the id Fetch v13+ names the metadata partition by.
METADATA_TOPIC_ID = uuid.UUID(int=1)


def encode_entry(records: Sequence[Message]) -> bytes:
    """One atomic batch of metadata records: a RecordBatch v2 of framed records (the form of
    both the local log and the Raft quorum's entries)."""
    return build_batch(
        [Record(i, 0, None, encode_metadata_record(r)) for i, r in enumerate(records)],
        base_timestamp=0,
    )


def decode_entry(entry: bytes | memoryview) -> list[Message]:
    return [decode_metadata_record(r.value) for r in decode_records(entry) if r.value is not None]


class LocalRecordLog:
    """The MetadataLog of a single node: append = durable write, then publish."""

    def __init__(self, directory: str, publisher: MetadataPublisher) -> None:
        self.publisher = publisher
        path = os.path.join(directory, f"{METADATA_TOPIC}-0")
        exists = os.path.isdir(path)
        config = LogConfig(segment_bytes=64 << 20, retention_ms=-1, retention_bytes=-1)
        clean = exists and os.path.exists(os.path.join(path, ".clean"))
        self.log = PartitionLog(path, config, clean_shutdown=clean)
        if clean:
            os.unlink(os.path.join(path, ".clean"))
        self.epoch = 0

    @property
    def end_offset(self) -> int:
        return self.log.log_end_offset

    async def append(self, records: Sequence[Message]) -> int:
        """Durably append `records` as one batch, publish them; the last one's offset."""
        last = self.write(records)
        self.publisher.publish(last - len(records) + 1, records)
        return last

    def write(self, records: Sequence[Message]) -> int:
        """Durably append `records` as one batch; returns the offset of the last one."""
        result = self.log.append_as_leader(encode_entry(records), self.epoch)
        self.log.flush()
        self.log.set_high_watermark(self.log.log_end_offset)
        return result.last_offset

    def replay_into_publisher(self) -> None:
        """At start-up: publish everything already committed."""
        batch: list[Message] = []
        first = 0
        for offset, record in self.replay():
            if not batch:
                first = offset
            batch.append(record)
        if batch:
            self.publisher.publish(first, batch)

    def replay(self, start: int = 0) -> Iterator[tuple[int, Message]]:
        offset = max(start, self.log.log_start_offset)
        while offset < self.log.log_end_offset:
            result = self.log.read(offset, 1 << 20)
            if not result.records:
                return
            for pos, header in iter_headers(result.records):
                for i, record in enumerate(decode_entry(result.records[pos : pos + header.size])):
                    if header.base_offset + i >= offset:
                        yield header.base_offset + i, record
            offset = result.next_offset

    def close(self) -> None:
        self.log.close()
        with open(os.path.join(self.log.directory, ".clean"), "wb"):
            pass

"""The MetadataLog of a cluster: metadata record batches as entries of the Raft quorum.

One Raft entry is one atomic batch of metadata records, in the same form as the local log:
a RecordBatch v2 whose record values are framed metadata records. Every voter publishes each
committed entry, in order, to its image; metadata offsets count records from 0 across the
whole log (Raft indexes have gaps: each leader's first no-op entry), which is what brokers
report in heartbeats and what `append` returns.

The quorum compacts its log with snapshots of the image (`snapshot` / `load_snapshot`)::

    magic        4s    b"KMQS"
    version      u16   1
    next_offset  i64   the metadata offset after the image's last record
    records      bytes the image as metadata records (kraft.metadata.snapshot.encode_snapshot)

Loading one replaces the image in place (every holder of it sees the new state) and tells the
listeners once, as a loaded broker snapshot does.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence

from kraft.metadata.publisher import MetadataCommitTimeout, MetadataPublisher, NotController
from kraft.metadata.record_log import decode_entry, encode_entry
from kraft.metadata.snapshot import (
    decode_snapshot,
    encode_snapshot,
    image_from_records,
    image_to_records,
    replace_image,
)
from kraft.net.protocol import Message
from kraft.quorum import CommitTimeout, EntryDiscarded, NotLeader, Quorum

logger = logging.getLogger(__name__)

_SNAPSHOT_HEAD = struct.Struct(">4sHq")
_SNAPSHOT_MAGIC = b"KMQS"
_SNAPSHOT_VERSION = 1


def encode_quorum_snapshot(next_offset: int, records: Sequence[Message]) -> bytes:
    head = _SNAPSHOT_HEAD.pack(_SNAPSHOT_MAGIC, _SNAPSHOT_VERSION, next_offset)
    return head + encode_snapshot(records)


def decode_quorum_snapshot(data: bytes) -> tuple[int, list[Message]]:
    """(next offset, records) of a quorum snapshot; ValueError if it is not one."""
    if len(data) < _SNAPSHOT_HEAD.size:
        raise ValueError(f"metadata snapshot of {len(data)} bytes")
    magic, version, next_offset = _SNAPSHOT_HEAD.unpack_from(data)
    if magic != _SNAPSHOT_MAGIC or version != _SNAPSHOT_VERSION or next_offset < 0:
        raise ValueError(f"not a metadata snapshot ({magic!r} v{version}, offset {next_offset})")
    return next_offset, decode_snapshot(memoryview(data)[_SNAPSHOT_HEAD.size :])


class QuorumMetadataLog:
    def __init__(self, publisher: MetadataPublisher, commit_timeout_ms: int = 5000) -> None:
        self.publisher = publisher
        self.commit_timeout_ms = commit_timeout_ms
        self.quorum: Quorum | None = None
        self.next_offset = 0
        # Raft index of the last entry (or snapshot) the image holds.
        self.applied_index = 0
        # The term this node leads in, once its image holds every earlier entry: commands
        # decided in that term may only be committed in that term.
        self.leader_term: int | None = None

    def on_commit(self, index: int, entry: bytes) -> None:
        self.applied_index = index
        records = decode_entry(entry)
        if not records:
            return
        first = self.next_offset
        self.next_offset += len(records)
        self.publisher.publish(first, records)

    def snapshot(self) -> tuple[int, bytes]:
        """The quorum's snapshot provider: (Raft index, the image as a snapshot)."""
        records = image_to_records(self.publisher.image)
        return self.applied_index, encode_quorum_snapshot(self.next_offset, records)

    def load_snapshot(self, index: int, data: bytes) -> None:
        """The quorum's on_snapshot: the image becomes the snapshot's."""
        next_offset, records = decode_quorum_snapshot(data)
        replace_image(self.publisher.image, image_from_records(records, next_offset - 1))
        self.next_offset = next_offset
        self.applied_index = index
        logger.info(
            "%sloaded metadata snapshot at raft index %d: %d records, next offset %d",
            self.publisher.tag,
            index,
            len(records),
            next_offset,
        )
        # No records to apply: the publication tells the listeners the image changed.
        self.publisher.publish(next_offset, [])

    def on_leader_change(self, leader_id: int | None, term: int, node_id: int) -> None:
        self.leader_term = term if leader_id == node_id else None

    @property
    def last_offset(self) -> int:
        return self.next_offset - 1

    async def append(self, records: Sequence[Message]) -> int:
        if self.quorum is None or self.leader_term is None:
            raise NotController(self.quorum.leader_id if self.quorum else None)
        try:
            await self.quorum.append(
                encode_entry(records), self.commit_timeout_ms, expected_term=self.leader_term
            )
        except NotLeader as e:
            raise NotController(e.leader_id) from None
        except (CommitTimeout, EntryDiscarded) as e:
            raise MetadataCommitTimeout(str(e)) from None
        return self.next_offset - 1

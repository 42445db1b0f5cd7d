"""The MetadataLog of a cluster: metadata record batches as entries of the Raft quorum.

One Raft entry is one atomic batch of metadata records, in the same form as the local log:
a RecordBatch v2 whose record values are framed metadata records. Every voter publishes each
committed entry, in order, to its image; metadata offsets count records from 0 across the
whole log (Raft indexes have gaps: each leader's first no-op entry), which is what brokers
report in heartbeats and what `append` returns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kraft.metadata.publisher import MetadataCommitTimeout, MetadataPublisher, NotController
from kraft.metadata.record_log import decode_entry, encode_entry
from kraft.quorum import CommitTimeout, EntryDiscarded, NotLeader, Quorum
from net.protocol import Message

logger = logging.getLogger(__name__)


class QuorumMetadataLog:
    def __init__(self, publisher: MetadataPublisher, commit_timeout_ms: int = 5000) -> None:
        self.publisher = publisher
        self.commit_timeout_ms = commit_timeout_ms
        self.quorum: Quorum | None = None
        self.next_offset = 0
        # The term this node leads in, once its image holds every earlier entry: commands
        # decided in that term may only be committed in that term.
        self.leader_term: int | None = None

    def on_commit(self, index: int, entry: bytes) -> None:
        records = decode_entry(entry)
        if not records:
            return
        first = self.next_offset
        self.next_offset += len(records)
        self.publisher.publish(first, records)

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

"""Where committed metadata records meet the image, and the seam to the metadata log.

Every node applies committed records, in log order, through one `MetadataPublisher`: the image
changes, then the listeners (the broker reconciling its partitions, ...) hear about it once per
committed batch. A `MetadataLog` is what the controller appends to: the local durable log of a
single node, or the Raft quorum of a cluster; `append` returns only after the records were
committed *and* published on this node, so the next command sees them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from kraft.metadata.image import MetadataImage
from kraft.net.protocol import Message

logger = logging.getLogger(__name__)


class NotController(Exception):
    """This node is not the active controller (the quorum leader)."""

    def __init__(self, leader_id: int | None) -> None:
        super().__init__(f"not the active controller (leader: {leader_id})")
        self.leader_id = leader_id


class MetadataCommitTimeout(Exception):
    """A metadata change was not known to be committed in time (no quorum?)."""


class MetadataLog(Protocol):
    async def append(self, records: Sequence[Message]) -> int:
        """Commit `records` as one atomic batch; return the offset of the last one once it is
        committed and published here. Raises NotController when this node may not write."""
        ...


class MetadataPublisher:
    def __init__(self, image: MetadataImage, tag: str = "") -> None:
        self.image = image
        self.tag = tag
        self.listeners: list[Callable[[], None]] = []

    def publish(self, first_offset: int, records: Sequence[Message]) -> None:
        """Apply one committed batch whose first record is at `first_offset`."""
        for i, record in enumerate(records):
            self.image.apply(record, first_offset + i)
        for listener in self.listeners:
            try:
                listener()
            except Exception:
                # Committed is committed: a listener's failure must not undo or block the
                # publication, nor fail the request that made the change.
                logger.exception("%smetadata listener failed", self.tag)

"""Producer ids for idempotent producers (Kafka's RPCProducerIdManager): handed out one by one
from blocks the active controller allocates (AllocateProducerIds; a ProducerIdsRecord there)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kraft.controller.client import ControllerClient
from kraft.net.broker.forwarding import FORWARD_TIMEOUT_S
from kraft.net.protocol import AllocateProducerIdsRequest, AllocateProducerIdsResponse


class ProducerIdBlock:
    """The block being handed out: ids from `next_id` up to `end` (exclusive)."""

    def __init__(self) -> None:
        self.next_id = 0
        self.end = 0


class ProducerIdManager:
    def __init__(
        self,
        broker_id: int,
        broker_epoch: Callable[[], int],
        client: Callable[[], ControllerClient | None],
    ) -> None:
        self.broker_id = broker_id
        self.broker_epoch = broker_epoch
        self._client = client
        self.block = ProducerIdBlock()
        self._lock = asyncio.Lock()

    async def next_producer_id(self) -> int:
        async with self._lock:
            if self.block.next_id >= self.block.end:
                start, length = await self._allocate()
                self.block.next_id, self.block.end = start, start + length
            pid = self.block.next_id
            self.block.next_id += 1
            return pid

    async def _allocate(self) -> tuple[int, int]:
        client = self._client()
        assert client is not None
        response = await client.send(
            AllocateProducerIdsRequest(broker_id=self.broker_id, broker_epoch=self.broker_epoch()),
            timeout_s=FORWARD_TIMEOUT_S,
        )
        assert isinstance(response, AllocateProducerIdsResponse)
        if response.error_code:
            raise RuntimeError(f"producer id allocation failed: error {response.error_code}")
        return response.producer_id_start, response.producer_id_len

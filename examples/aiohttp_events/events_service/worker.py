"""The worker: consumes events in a consumer group and hands each to a handler.

Delivery is at least once: offsets are committed after the handler returns, so an event whose
commit was lost (the worker crashed, the group coordinator moved) is handled again. Handlers
must therefore be idempotent; events carry a unique `id` for that.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from events_service.settings import Settings

log = logging.getLogger(__name__)

Event = dict[str, Any]
Handler = Callable[[Event], Awaitable[None]]


class EventWorker:
    def __init__(self, settings: Settings, handler: Handler) -> None:
        self.settings = settings
        self.handler = handler
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Consume and handle events until `stop()`."""
        consumer = AIOKafkaConsumer(
            self.settings.topic,
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        await self.handler(json.loads(record.value))
                if batches:
                    await self._commit(consumer)
        finally:
            await consumer.stop()

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await consumer.commit()
        except KafkaError as e:
            # The group is rebalancing or its coordinator moved: the events since the last
            # commit will be delivered again, and the handler is idempotent.
            log.warning("offset commit failed, events may be handled again: %r", e)

    def stop(self) -> None:
        self._stopping.set()


async def log_event(event: Event) -> None:
    log.info("event %s: %s %s", event["id"], event["type"], event["data"])


async def main() -> None:
    logging.basicConfig(level=logging.INFO)
    worker = EventWorker(Settings.from_env(), log_event)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())

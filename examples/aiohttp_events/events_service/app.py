"""The HTTP API: `POST /events` publishes an event and answers once Kafka has it.

An event is acknowledged to the caller (201) only after every in-sync replica has it
(acks=all, idempotent producer): an answered event survives the loss of its partition's leader.
When Kafka does not acknowledge it in time, the caller gets 503 and may retry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from events_service.settings import Settings

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)


async def kafka_producer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=int(settings.publish_timeout_s * 1000),
    )
    await producer.start()
    app[PRODUCER] = producer
    yield
    await producer.stop()


async def publish_event(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise web.HTTPBadRequest(text='an event is a JSON object with a string "type"')
    event: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "type": body["type"],
        "data": body.get("data", {}),
        "time": time.time(),
    }
    settings = request.app[SETTINGS]
    try:
        metadata = await asyncio.wait_for(
            request.app[PRODUCER].send_and_wait(
                settings.topic, json.dumps(event).encode(), key=event["id"].encode()
            ),
            settings.publish_timeout_s,
        )
    except (KafkaError, TimeoutError) as e:
        log.warning("event %s not published: %r", event["id"], e)
        return web.json_response({"error": "event not published, retry"}, status=503)
    return web.json_response(
        {"id": event["id"], "partition": metadata.partition, "offset": metadata.offset},
        status=201,
    )


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app.cleanup_ctx.append(kafka_producer)
    app.add_routes([web.post("/events", publish_event), web.get("/health", health)])
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    settings = Settings.from_env()
    web.run_app(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()

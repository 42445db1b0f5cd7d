"""An order service with a Kafka broker of its own: kraft runs in the service's event loop.

    python examples/embedded_service/embedded_service.py [--port 8080] [--data-dir DIR]

`POST /orders/{customer}` with a JSON body `{"amount": 12.5}` publishes the order to the
`orders` topic (keyed by customer, acks=all) and answers with its partition and offset. A
consumer worker in the same process reads `orders` as the consumer group `totals` and keeps
each customer's running total, which `GET /totals/{customer}` returns. `GET /kafka` says where
the embedded broker listens, so other programs (a `kafka-console-consumer`, `kraft consume`)
can use it too.

The broker, the producer and the worker start and stop with the app (aiohttp's
`cleanup_ctx`): no other process, nothing left running after shutdown. Without `--data-dir`
the broker's data is temporary; with it, orders survive a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import kraft.embedded
from kraft.embedded import EmbeddedNode

TOPIC = "orders"
GROUP = "totals"

NODE = web.AppKey("node", EmbeddedNode)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
TOTALS = web.AppKey("totals", dict[str, float])
PROCESSED = web.AppKey("processed", asyncio.Condition)

logger = logging.getLogger("embedded_service")


def create_app(data_dir: str | None = None) -> web.Application:
    app = web.Application()
    app[TOTALS] = defaultdict(float)
    app[PROCESSED] = asyncio.Condition()
    app.cleanup_ctx.append(_kafka(data_dir))
    app.cleanup_ctx.append(_totals_worker)
    app.router.add_post("/orders/{customer}", post_order)
    app.router.add_get("/totals/{customer}", get_total)
    app.router.add_get("/kafka", get_kafka)
    return app


def _kafka(data_dir: str | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def kafka(app: web.Application) -> AsyncIterator[None]:
        config: dict[str, str | int] = {"num.partitions": 3}
        if data_dir:
            config["log.dirs"] = data_dir  # kept: the orders survive a restart
        async with kraft.embedded.node(config) as node:
            if node.api.topic(TOPIC) is None:  # a kept data dir already has it
                await node.create_topic(TOPIC, partitions=3)
            producer = AIOKafkaProducer(
                bootstrap_servers=node.bootstrap_servers, acks="all", enable_idempotence=True
            )
            await producer.start()
            app[NODE], app[PRODUCER] = node, producer
            try:
                yield
            finally:
                await producer.stop()

    return kafka


async def _totals_worker(app: web.Application) -> AsyncIterator[None]:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=app[NODE].bootstrap_servers,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()

    async def run() -> None:
        async for record in consumer:
            order = json.loads(record.value or b"{}")
            customer = (record.key or b"").decode()
            async with app[PROCESSED]:
                app[TOTALS][customer] += float(order["amount"])
                app[PROCESSED].notify_all()
            # At-least-once: committed after the total includes it.
            await consumer.commit()

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


async def post_order(request: web.Request) -> web.Response:
    body = await request.json()
    amount = body.get("amount") if isinstance(body, dict) else None
    if not isinstance(amount, int | float):
        raise web.HTTPBadRequest(text='expected a JSON body {"amount": <number>}')
    sent = await request.app[PRODUCER].send_and_wait(
        TOPIC,
        json.dumps({"amount": amount}).encode(),
        key=request.match_info["customer"].encode(),
    )
    return web.json_response({"partition": sent.partition, "offset": sent.offset}, status=201)


async def get_total(request: web.Request) -> web.Response:
    customer = request.match_info["customer"]
    return web.json_response({"customer": customer, "total": request.app[TOTALS][customer]})


async def get_kafka(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return web.json_response(
        {"bootstrap_servers": node.bootstrap_servers, "cluster_id": node.cluster_id}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", help="keep the broker's data here (default: temporary)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    web.run_app(create_app(args.data_dir), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

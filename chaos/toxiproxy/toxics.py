"""Toxics: Toxiproxy's fault types, their JSON form, and what each does to a link's bytes.

A toxic belongs to a proxy and acts on one direction of every connection through it:
`upstream` is client → server, `downstream` (the default) server → client. Each connection
rolls `toxicity` (a probability, default 1.0) for each toxic when the toxic starts on its link,
and again when the toxic is updated; a toxic that loses the roll passes data through untouched.

JSON form, as Toxiproxy writes it (`attributes` holds every attribute of the type, defaults 0):

    {"name": "latency_downstream", "type": "latency", "stream": "downstream",
     "toxicity": 1.0, "attributes": {"latency": 100, "jitter": 10}}

The types and their attributes (integers, never negative):

- `latency` (`latency`, `jitter`, ms): each chunk leaves `latency ± jitter` after it arrived;
  chunks are pipelined, order is kept.
- `bandwidth` (`rate`, KB/s, 1 KB = 1000 bytes; 0 = unlimited): data leaves at most at `rate`.
- `slow_close` (`delay`, ms): the close of the stream is delayed; data passes.
- `timeout` (`timeout`, ms): nothing passes. With `timeout` > 0 the connection closes after it;
  with 0 the data is held (unread, so the sender feels TCP backpressure) until the toxic is
  removed, then delivered — a network partition that heals. Toxiproxy itself drops that data
  and closes the connection on removal; holding it is what a real partition does to TCP.
- `reset_peer` (`timeout`, ms): when data (or the close) first reaches the toxic, both sockets
  are reset (TCP RST) after `timeout`.
- `slicer` (`average_size`, `size_variation` bytes, `delay` µs): each chunk is cut into pieces
  of `average_size ± size_variation` bytes (at least 1; 0 = no slicing), `delay` apart.
- `limit_data` (`bytes`): after `bytes` have passed in this direction, the connection closes.

Behaviours are coroutines over a `Stage` (the toxic's place in one link, `kraft.chaos.toxiproxy.
link`). A stage's task is cancelled when its toxic is updated (it restarts) or removed (its
unsent data moves on to the next step), so each behaviour changes stage state only after its
last `await`: what it took from its inbox stays at the head of `stage.held` until passed on.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from random import Random
from typing import Any, Protocol

from kraft.chaos.toxiproxy.errors import (
    bad_request_body,
    invalid_stream,
    invalid_toxic_type,
)

STREAMS = ("upstream", "downstream")
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
}


@dataclass(slots=True)
class Chunk:
    """Bytes read from one side of a connection, stamped with the loop time they arrived."""

    data: bytes
    arrived: float


# None stands for the end of the stream (the source closed).
Item = Chunk | None


@dataclass
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }

    def attr(self, name: str) -> int:
        return self.attributes.get(name, 0)

    def update(self, body: object) -> None:
        """Apply a toxic update: given attributes replace theirs, `toxicity` if present.

        Validates everything before changing anything, so a refused update leaves the toxic
        as it was. Other fields (name, type, stream) are ignored, as by Toxiproxy.
        """
        if not isinstance(body, dict):
            raise bad_request_body("expected a JSON object")
        attributes = _parse_attributes(self.type, body.get("attributes"))
        toxicity = self.toxicity
        if "toxicity" in body:
            toxicity = _parse_toxicity(body["toxicity"])
        self.attributes.update(attributes)
        self.toxicity = toxicity


def parse_toxic(body: object) -> Toxic:
    """A new toxic from a create request, checked in Toxiproxy's order: the body, the stream,
    the type, then (after the caller's duplicate-name check) the attributes."""
    if not isinstance(body, dict):
        raise bad_request_body("expected a JSON object")
    stream = body.get("stream", "downstream")
    if not isinstance(stream, str):
        raise bad_request_body("stream must be a string")
    stream = stream.lower()
    if stream not in STREAMS:
        raise invalid_stream()
    toxic_type = body.get("type", "")
    if not isinstance(toxic_type, str):
        raise bad_request_body("type must be a string")
    name = body.get("name") or f"{toxic_type}_{stream}"
    if not isinstance(name, str):
        raise bad_request_body("name must be a string")
    if toxic_type not in ATTRIBUTES:
        raise invalid_toxic_type()
    toxicity = _parse_toxicity(body.get("toxicity", 1.0))
    defaults = dict.fromkeys(ATTRIBUTES[toxic_type], 0)
    attributes = defaults | _parse_attributes(toxic_type, body.get("attributes"))
    return Toxic(name, toxic_type, stream, toxicity, attributes)


def _parse_toxicity(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request_body("toxicity must be a number")
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise bad_request_body("toxicity must be between 0 and 1")
    return float(value)


def _parse_attributes(toxic_type: str, value: object) -> dict[str, int]:
    """The known attributes of `toxic_type` in `value`; unknown keys are ignored, as by
    Toxiproxy (its JSON decoder drops them)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request_body("attributes must be a JSON object")
    parsed = {}
    for key in ATTRIBUTES[toxic_type]:
        if key not in value:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int):
            raise bad_request_body(f"attribute {key} of a {toxic_type} toxic must be an integer")
        if number < 0:
            raise bad_request_body(f"attribute {key} of a {toxic_type} toxic must not be negative")
        parsed[key] = number
    return parsed


class Stage(Protocol):
    """What a behaviour sees of its place in a link (implemented by `link.ToxicStage`)."""

    toxic: Toxic
    rng: Random
    held: deque[Item]
    # Per-connection state that survives a restart (limit_data's byte count).
    transmitted: int

    async def take(self) -> Item:
        """The head of `held`, first taking an item from the inbox if `held` is empty."""

    async def emit(self, item: Item) -> None:
        """Pass `item` to the next step of the link (waiting for room there)."""

    def consumed(self) -> None:
        """The head of `held` has been passed on in full."""

    def close_connection(self, reset: bool = False) -> None:
        """Close both sockets of the connection (with TCP RST when `reset`)."""


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _forward(stage: Stage, item: Item) -> bool:
    """Pass `item` on unchanged; False once the end of the stream has been passed."""
    await stage.emit(item)
    stage.consumed()
    return item is not None


async def passthrough(stage: Stage) -> None:
    while await _forward(stage, await stage.take()):
        pass


async def latency(stage: Stage) -> None:
    while True:
        item = await stage.take()
        if item is None:
            await _forward(stage, item)
            return
        jitter = stage.toxic.attr("jitter")
        delay_ms = stage.toxic.attr("latency") + (
            stage.rng.uniform(-jitter, jitter) if jitter else 0.0
        )
        wait = item.arrived + delay_ms / 1000 - _now()
        if wait > 0:
            await asyncio.sleep(wait)
        # Re-stamped on leaving, so a second latency toxic adds its own delay.
        await stage.emit(Chunk(item.data, _now()))
        stage.consumed()


async def bandwidth(stage: Stage) -> None:
    next_free = _now()
    while True:
        item = await stage.take()
        rate = stage.toxic.attr("rate")  # bytes per millisecond
        if item is None or rate == 0:
            if not await _forward(stage, item):
                return
            continue
        # At most 100 ms worth of data at a time, so a slow rate trickles rather than bursts.
        piece_size = max(1, rate * 100)
        piece, rest = item.data[:piece_size], item.data[piece_size:]
        next_free = max(next_free, _now()) + len(piece) / (rate * 1000)
        wait = next_free - _now()
        if wait > 0:
            await asyncio.sleep(wait)
        await stage.emit(Chunk(piece, item.arrived))
        if rest:
            stage.held[0] = Chunk(rest, item.arrived)
        else:
            stage.consumed()


async def slow_close(stage: Stage) -> None:
    while True:
        item = await stage.take()
        if item is None:
            await asyncio.sleep(stage.toxic.attr("delay") / 1000)
        if not await _forward(stage, item):
            return


async def timeout(stage: Stage) -> None:
    # Nothing is taken from the inbox: held data stays there (bounded, so the reader stops
    # reading and TCP pushes back on the sender) and moves on when the toxic is removed.
    timeout_ms = stage.toxic.attr("timeout")
    if timeout_ms == 0:
        await asyncio.get_running_loop().create_future()
    await asyncio.sleep(timeout_ms / 1000)
    stage.close_connection()


async def reset_peer(stage: Stage) -> None:
    await stage.take()
    await asyncio.sleep(stage.toxic.attr("timeout") / 1000)
    stage.close_connection(reset=True)


async def slicer(stage: Stage) -> None:
    while True:
        item = await stage.take()
        average = stage.toxic.attr("average_size")
        if item is None or average == 0:
            if not await _forward(stage, item):
                return
            continue
        variation = stage.toxic.attr("size_variation")
        size = max(1, average + (stage.rng.randint(-variation, variation) if variation else 0))
        piece, rest = item.data[:size], item.data[size:]
        await stage.emit(Chunk(piece, item.arrived))
        if rest:
            stage.held[0] = Chunk(rest, item.arrived)
        else:
            stage.consumed()
        delay_us = stage.toxic.attr("delay")
        if delay_us:
            await asyncio.sleep(delay_us / 1_000_000)


async def limit_data(stage: Stage) -> None:
    while stage.transmitted < stage.toxic.attr("bytes"):
        item = await stage.take()
        if item is None:
            await _forward(stage, item)
            return
        allowed = stage.toxic.attr("bytes") - stage.transmitted
        piece, rest = item.data[:allowed], item.data[allowed:]
        await stage.emit(Chunk(piece, item.arrived))
        stage.transmitted += len(piece)
        if rest:
            stage.held[0] = Chunk(rest, item.arrived)
        else:
            stage.consumed()
    # The limit is reached: this direction ends here, which closes the connection.
    await stage.emit(None)


BEHAVIOURS: dict[str, Callable[[Stage], Awaitable[None]]] = {
    "latency": latency,
    "bandwidth": bandwidth,
    "slow_close": slow_close,
    "timeout": timeout,
    "reset_peer": reset_peer,
    "slicer": slicer,
    "limit_data": limit_data,
}
assert BEHAVIOURS.keys() == ATTRIBUTES.keys()


def behaviour(toxic_type: str) -> Callable[[Stage], Awaitable[None]]:
    return BEHAVIOURS[toxic_type]

"""The service's settings, from the environment (twelve-factor style)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str
    topic: str = "events"
    group_id: str = "events-worker"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # How long the API waits for Kafka to acknowledge an event before answering 503.
    publish_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            bootstrap_servers=env.get("EVENTS_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            topic=env.get("EVENTS_TOPIC", cls.topic),
            group_id=env.get("EVENTS_GROUP_ID", cls.group_id),
            http_host=env.get("EVENTS_HTTP_HOST", cls.http_host),
            http_port=int(env.get("EVENTS_HTTP_PORT", str(cls.http_port))),
            publish_timeout_s=float(
                env.get("EVENTS_PUBLISH_TIMEOUT_S", str(cls.publish_timeout_s))
            ),
        )

"""Watches a cluster during a run through each node's admin API (never proxied): who each node
believes leads each partition in which leader epoch, and who leads the metadata quorum in which
term. The checker's split-brain rules read these `leader` / `controller` observations.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from kraft.chaos.history import History

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 0.5
HTTP_TIMEOUT_S = 1.0


def get_json(url: str, timeout: float = HTTP_TIMEOUT_S) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def partition_leaders(admin_url: str, topic: str) -> dict[int, tuple[int, int]]:
    """Partition → (leader, leader epoch) as the node at `admin_url` sees it."""
    described = get_json(f"{admin_url}/v1/topics/{topic}")
    return {p["partition"]: (p["leader"], p["leader_epoch"]) for p in described["partitions"]}


class Observer:
    """Samples every node that `reachable(node_id)` allows (a paused node would only time out)."""

    def __init__(
        self,
        history: History,
        admin_urls: Mapping[int, str],
        topics: list[str],
        reachable: Callable[[int], bool],
        interval: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self.history = history
        self.admin_urls = dict(admin_urls)
        self.topics = topics
        self.reachable = reachable
        self.interval = interval
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-observer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> None:
        for node_id, url in self.admin_urls.items():
            if not self.reachable(node_id):
                continue
            try:
                self._sample_node(node_id, url)
            except (OSError, ValueError, KeyError, urllib.error.URLError) as e:
                log.debug("observer: node %d: %s", node_id, e)

    def _sample_node(self, node_id: int, url: str) -> None:
        try:
            quorum = get_json(f"{url}/v1/quorum")
        except urllib.error.HTTPError:
            quorum = None  # a broker-only node is no quorum member
        if quorum is not None and quorum.get("leader_id") is not None:
            self.samples += 1
            self.history.info(
                "observer",
                "controller",
                value=str(quorum["leader_id"]),
                node=node_id,
                epoch=quorum["term"],
            )
        for topic in self.topics:
            for partition, (leader, epoch) in partition_leaders(url, topic).items():
                if leader < 0:
                    continue
                self.samples += 1
                self.history.info(
                    "observer",
                    "leader",
                    value=str(leader),
                    topic=topic,
                    partition=partition,
                    node=node_id,
                    epoch=epoch,
                )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

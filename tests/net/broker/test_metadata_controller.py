"""The controller id Metadata and DescribeCluster name: a broker the same answer lists."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kraft.net.broker.handlers.metadata import controller_id_for_clients


def ctx(node_id: int) -> Any:
    return SimpleNamespace(node_id=node_id)


def test_this_broker_while_it_is_listed() -> None:
    assert controller_id_for_clients(ctx(2), [(1, "h", 1, None), (2, "h", 2, None)]) == 2


def test_another_listed_broker_while_this_one_is_not() -> None:
    # A fenced broker (not listed) naming itself left clients waiting for a controller.
    assert controller_id_for_clients(ctx(3), [(1, "h", 1, None), (2, "h", 2, None)]) == 1


def test_none_without_a_listed_broker() -> None:
    assert controller_id_for_clients(ctx(1), []) == -1

"""The runner's cluster start: a node whose port a proxy took (EADDRINUSE) is retried on new
ports; any other launch failure is the run's failure at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kraft.chaos import runner
from kraft.launcher import LaunchError


class FakeSite:
    def __init__(self, root: Path, error: str | None) -> None:
        self.root, self.error, self.stopped = root, error, False

    def start(self) -> None:
        if self.error:
            raise LaunchError(self.error)

    def stop(self) -> None:
        self.stopped = True


def factory(errors: list[str | None], made: list[FakeSite]) -> Any:
    def make(root: Path) -> FakeSite:
        made.append(FakeSite(root, errors[len(made)]))
        return made[-1]

    return make


def test_a_taken_port_is_retried_on_a_new_cluster(tmp_path: Path) -> None:
    made: list[FakeSite] = []
    taken = "kraft: [Errno 98] error while attempting to bind: address already in use"
    site = runner._started(factory([taken, None], made), tmp_path)
    assert site is made[1]
    assert made[0].stopped and not made[1].stopped
    assert made[0].root != made[1].root


def test_other_launch_failures_are_not_retried(tmp_path: Path) -> None:
    made: list[FakeSite] = []
    with pytest.raises(LaunchError, match="not ready"):
        runner._started(factory(["node 1 not ready after 60 s", None], made), tmp_path)
    assert len(made) == 1 and made[0].stopped


def test_the_retries_are_bounded(tmp_path: Path) -> None:
    made: list[FakeSite] = []
    taken = "address already in use"
    with pytest.raises(LaunchError):
        runner._started(factory([taken] * runner.START_ATTEMPTS, made), tmp_path)
    assert len(made) == runner.START_ATTEMPTS

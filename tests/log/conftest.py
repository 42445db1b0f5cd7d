from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from kraft.log.config import LogConfig
from kraft.log.partition_log import PartitionLog


class FakeClock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_log(tmp_path: os.PathLike[str], clock: FakeClock) -> Callable[..., PartitionLog]:
    def make(config: LogConfig | None = None, name: str = "t-0", **kw: object) -> PartitionLog:
        return PartitionLog(
            os.path.join(str(tmp_path), name),
            config or LogConfig(),
            clock=clock,
            **kw,  # type: ignore[arg-type]
        )

    return make

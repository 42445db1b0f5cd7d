"""kraft: a Kafka-compatible, ZooKeeper-free streaming cluster."""

from __future__ import annotations

import importlib
from types import ModuleType


def __getattr__(name: str) -> ModuleType:
    # `import kraft` stays cheap: `kraft.embedded` (which loads a whole node) is imported on
    # first use.
    if name == "embedded":
        return importlib.import_module("kraft.embedded")
    raise AttributeError(f"module 'kraft' has no attribute {name!r}")

"""kraft: a Kafka-compatible, ZooKeeper-free streaming cluster.

`kraft.Cluster` (a cluster of node processes for tests and programs, `kraft.embedded`) and the
subpackages are imported on first use: `import kraft` itself loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kraft.embedded.cluster import Cluster

__all__ = ["Cluster"]

# Attribute → the module it lives in (None: the attribute is that submodule itself).
_LAZY = {"Cluster": "kraft.embedded.cluster", "embedded": None, "testing": None}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'kraft' has no attribute {name!r}")
    module_name = _LAZY[name]
    if module_name is None:
        return importlib.import_module(f"kraft.{name}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value

"""kraft embedded in Python programs and tests.

- `Cluster` (`kraft.embedded.cluster`): a real cluster of node processes, as a context manager;
- `node` (`kraft.embedded.node`): one node on the caller's running event loop.

Names are imported on first use, so `import kraft.embedded` loads no node code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kraft.embedded.cluster import Cluster, ClusterNode
    from kraft.embedded.settings import ClusterConfigError, ClusterError, ClusterStartError

__all__ = ["Cluster", "ClusterConfigError", "ClusterError", "ClusterNode", "ClusterStartError"]

_LAZY = {
    "Cluster": "kraft.embedded.cluster",
    "ClusterNode": "kraft.embedded.cluster",
    "ClusterError": "kraft.embedded.settings",
    "ClusterConfigError": "kraft.embedded.settings",
    "ClusterStartError": "kraft.embedded.settings",
    # The in-loop node (the module is `inloop`, so `kraft.embedded.node` is always the function).
    "node": "kraft.embedded.inloop",
    "EmbeddedNode": "kraft.embedded.inloop",
    "TopicCreationError": "kraft.embedded.inloop",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kraft.embedded' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

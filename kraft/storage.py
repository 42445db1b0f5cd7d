"""Log dir formatting, as Kafka's `kafka-storage.sh` does it: `meta.properties` in every dir.

Every data dir of a node (`log.dirs`, and `metadata.log.dir` when apart) holds a
`meta.properties` (Java properties, written by temp file + fsync + rename)::

    version=1                       KRaft's version of the file
    cluster.id=<22-char base64url>  the cluster the dir belongs to
    node.id=<int>                   the node the dir belongs to
    directory.id=<22-char base64url> this dir's own id (Kafka 3.7+, KIP-858)

`kraft storage format -t ID -c CONFIG` writes them (`random_uuid` makes an ID); a node starts
only on dirs formatted for its cluster and node id (`ensure_formatted`). Unformatted dirs next
to formatted ones are formatted at start with the same ids (a dir added to `log.dirs`), as
Kafka does; a node with no formatted dir refuses to start, unless its starter formats for it:
`kraft up`, the launcher and `kraft.Cluster` (which put `cluster.id` in each node's config) and
the embedded node and `kraft serve` without `--config` (`auto_format`).
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass

from kraft.config import NodeConfig, parse_properties

META_PROPERTIES = "meta.properties"
META_VERSION = "1"
# Kafka reserves the uuids below 100 (ZERO, the metadata topic's id, the directory ids
# UNASSIGNED, LOST, MIGRATING...).
_RESERVED_BELOW = 100


class StorageError(RuntimeError):
    """A dir is not formatted, or formatted for another cluster or node."""


def random_uuid() -> str:
    """A Kafka-style random uuid: 16 bytes, base64url without padding (22 characters), never
    reserved and never starting with '-' (it would read as an option)."""
    while True:
        value = uuid.uuid4()
        text = base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")
        if value.int >= _RESERVED_BELOW and not text.startswith("-"):
            return text


def check_uuid(text: str) -> str:
    """`text` if it is a Kafka uuid (22 base64url characters for 16 bytes), else ValueError."""
    if len(text) != 22:
        raise ValueError(f"{text!r} is not a valid uuid: 22 base64url characters are needed")
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (ValueError, TypeError) as e:
        raise ValueError(f"{text!r} is not a valid uuid: {e}") from None
    if len(raw) != 16 or base64.urlsafe_b64encode(raw).decode().rstrip("=") != text:
        raise ValueError(f"{text!r} is not a valid uuid")
    return text


@dataclass(frozen=True, slots=True)
class MetaProperties:
    cluster_id: str
    node_id: int
    directory_id: str
    version: str = META_VERSION

    def body(self) -> str:
        return (
            "#\n# written by kraft storage\n"
            f"node.id={self.node_id}\n"
            f"directory.id={self.directory_id}\n"
            f"version={self.version}\n"
            f"cluster.id={self.cluster_id}\n"
        )


def read_meta(directory: str) -> dict[str, str] | None:
    """The `meta.properties` of `directory` as key → value, or None when there is none."""
    try:
        with open(os.path.join(directory, META_PROPERTIES), encoding="utf-8") as f:
            return parse_properties(f.read())
    except FileNotFoundError:
        return None


def write_meta(directory: str, meta: MetaProperties) -> None:
    from kraft.log.checkpoint import write_atomically

    os.makedirs(directory, exist_ok=True)
    write_atomically(os.path.join(directory, META_PROPERTIES), meta.body().encode())


def format_dirs(config: NodeConfig, cluster_id: str, ignore_formatted: bool = False) -> list[str]:
    """Write `meta.properties` for `cluster_id` in every data dir of `config`; the dirs
    formatted. A dir already formatted is an error naming it, or with `ignore_formatted` left
    as it is."""
    check_uuid(cluster_id)
    pending = []
    for directory in config.all_log_dirs:
        if read_meta(directory) is None:
            pending.append(directory)
        elif not ignore_formatted:
            raise StorageError(
                f"log directory {directory} is already formatted; use --ignore-formatted to "
                "leave it as it is and format the others"
            )
    for directory in pending:
        write_meta(directory, MetaProperties(cluster_id, config.node_id, random_uuid()))
    return pending


def ensure_formatted(config: NodeConfig, auto_format: bool = False) -> str:
    """The cluster id of this node's dirs, after checking that every formatted dir belongs to
    this node and cluster (and to `cluster.id` when the config gives it). Unformatted dirs are
    formatted with the same ids when another dir is formatted, when the config gives
    `cluster.id`, or with `auto_format` (a new random cluster id); else StorageError tells the
    user to run `kraft storage format`. A dir without a directory.id gets one."""
    found: dict[str, dict[str, str]] = {}
    for directory in config.all_log_dirs:
        meta = read_meta(directory)
        if meta is not None:
            found[directory] = meta
    cluster_id = config.cluster_id
    source = "cluster.id in the config"
    for directory, meta in found.items():
        path = os.path.join(directory, META_PROPERTIES)
        stored_node = meta.get("node.id", "")
        if stored_node != str(config.node_id):
            raise StorageError(
                f"{path} is formatted for node {stored_node or '(none)'}, but this node's "
                f"node.id is {config.node_id}: if the data moved, configure node.id="
                f"{stored_node}; for a new node, use an unformatted dir"
            )
        stored_cluster = meta.get("cluster.id", "")
        if not stored_cluster:
            raise StorageError(f"{path} has no cluster.id")
        if cluster_id and stored_cluster != cluster_id:
            raise StorageError(
                f"{path} is formatted for cluster {stored_cluster}, but this node belongs to "
                f"cluster {cluster_id} ({source}); a dir of another cluster"
            )
        if not cluster_id:
            cluster_id, source = stored_cluster, path
    if not cluster_id:
        if not auto_format:
            dirs = ", ".join(config.all_log_dirs)
            raise StorageError(
                f"no meta.properties in {dirs}: the log dirs are not formatted; run "
                "`kraft storage format -t $(kraft storage random-uuid) -c CONFIG` first"
            )
        cluster_id = random_uuid()
    for directory in config.all_log_dirs:
        meta = found.get(directory)
        if meta is None:
            write_meta(directory, MetaProperties(cluster_id, config.node_id, random_uuid()))
        elif not meta.get("directory.id"):
            # Written before directory ids (as Kafka 3.7 adds them to older dirs).
            write_meta(
                directory,
                MetaProperties(
                    cluster_id, config.node_id, random_uuid(), meta.get("version", META_VERSION)
                ),
            )
    return cluster_id


def describe(config: NodeConfig) -> tuple[list[str], list[str]]:
    """`kraft storage info`: lines describing each data dir, and the problems found."""
    lines: list[str] = []
    problems: list[str] = []
    clusters: dict[str, str] = {}
    for directory in config.all_log_dirs:
        if not os.path.isdir(directory):
            problems.append(f"{directory} does not exist")
            continue
        meta = read_meta(directory)
        if meta is None:
            problems.append(f"{directory} is not formatted")
            continue
        shown = ", ".join(f"{k}={v}" for k, v in sorted(meta.items()))
        lines.append(f"{directory}: {{{shown}}}")
        if meta.get("node.id") != str(config.node_id):
            problems.append(
                f"{directory} is formatted for node {meta.get('node.id')}, not node.id="
                f"{config.node_id}"
            )
        clusters[directory] = meta.get("cluster.id", "")
    if len(set(clusters.values())) > 1:
        problems.append(
            "the dirs belong to different clusters: "
            + ", ".join(f"{d}: {c}" for d, c in clusters.items())
        )
    if config.cluster_id and any(c != config.cluster_id for c in clusters.values()):
        problems.append(f"cluster.id in the config is {config.cluster_id}")
    return lines, problems

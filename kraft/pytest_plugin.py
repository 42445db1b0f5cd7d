"""pytest plugin: real kraft clusters as fixtures (registered by the `pytest11` entry point
`kraft`, so installing kraft is enough; `-p no:kraft` turns it off).

Fixtures:

- ``kraft_cluster``: a started `kraft.Cluster`, shared by every test of the session (of each
  xdist worker); ``--kraft-scope`` / ``kraft_scope`` narrows that to package, module, class or
  function. Its size and config come from ``--kraft-nodes`` / ``kraft_nodes`` (default 1),
  ``--kraft-brokers`` / ``kraft_brokers`` (broker-only nodes, default 0) and
  ``--kraft-config KEY=VALUE`` (repeatable) / ``kraft_config`` (lines of ``KEY=VALUE``).
- ``kraft_bootstrap_servers``: that cluster's bootstrap servers, for any Kafka client.
- ``kraft_topic_factory``: ``kraft_topic_factory(partitions=3, config={...})`` creates a topic
  with a fresh name (derived from the test's name) and returns the name, once every partition
  has a leader.
- ``kraft_topic``: one such topic per test; ``@pytest.mark.kraft_topic(partitions=...,
  replication_factor=..., config={...})`` sets how it is made.

- ``kraft_chaos``: a started `kraft.Cluster(chaos=True)` of the test's own (sized as the
  shared one, or by the test's ``kraft`` marker): every link runs through a Toxiproxy proxy, so
  the test can ``kraft_chaos.cut_clients()``, ``.partition([1], [2, 3])``, ``.latency(200)``
  (each returns a handle: ``with`` or ``.heal()``). Teardown heals every fault and stops the
  cluster, also when the test failed.

``@pytest.mark.kraft(nodes=3, brokers=0, config={...}, chaos=False)`` gives a test a cluster of
its own (unset values and config keys come from the session's settings), started before it and
stopped after it; its test id gets a ``[kraft]`` suffix, because the plugin overrides
``kraft_cluster`` for that test by parametrizing it. ``chaos=True`` makes that cluster a chaos
one (as ``kraft_chaos``).

When a test that used a cluster fails, each node's log tail (``--kraft-log-lines`` /
``kraft_log_lines``, default 40; 0: none) is attached to its report as the section
"kraft node logs".
Every cluster is stopped at the end of the session, Ctrl-C included.

Importing this module costs nothing but pytest: kraft's cluster code is imported when a
fixture first needs it, so test suites that never ask for a cluster pay nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, cast

import pytest

if TYPE_CHECKING:
    from kraft.embedded.cluster import Cluster

Scope = Literal["session", "package", "module", "class", "function"]
ConfigValue = str | int | bool

SCOPES: tuple[Scope, ...] = ("session", "package", "module", "class", "function")
LOG_SECTION = "kraft node logs"
CLUSTER_MARKER_KEYS = frozenset({"nodes", "brokers", "config", "chaos"})
TOPIC_MARKER_KEYS = frozenset({"partitions", "replication_factor", "config"})
# Fixtures through which a test uses a cluster: a failing one gets the nodes' logs.
FIXTURES = frozenset(
    {"kraft_cluster", "kraft_bootstrap_servers", "kraft_topic_factory", "kraft_chaos"}
)
# Kafka topic names: [a-zA-Z0-9._-], at most 249 characters.
_NOT_IN_TOPIC_NAME = re.compile(r"[^a-zA-Z0-9._-]+")
_TOPIC_PREFIX_MAX = 100
START_ATTEMPTS = 2
_PORT_TAKEN = "address already in use"


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """What a cluster is made of; hashable and compared by value (it keys the shared
    clusters, and pytest compares a parametrized fixture's parameters)."""

    nodes: int = 1
    brokers: int = 0
    config: tuple[tuple[str, str], ...] = ()
    start_timeout: float = 30.0
    chaos: bool = False

    def with_marker(self, kwargs: Mapping[str, Any], where: str) -> ClusterSettings:
        """These settings overridden by a `kraft` marker's keyword arguments."""
        unknown = set(kwargs) - CLUSTER_MARKER_KEYS
        if unknown:
            raise pytest.UsageError(
                f"{where}: @pytest.mark.kraft takes only {sorted(CLUSTER_MARKER_KEYS)}, "
                f"not {sorted(unknown)}"
            )
        config = dict(self.config)
        config.update(_config_strings(kwargs.get("config") or {}, where))
        chaos = kwargs.get("chaos", self.chaos)
        if not isinstance(chaos, bool):
            raise pytest.UsageError(f"{where}: chaos must be True or False, not {chaos!r}")
        return replace(
            self,
            nodes=_count(kwargs.get("nodes", self.nodes), "nodes", 1, where),
            brokers=_count(kwargs.get("brokers", self.brokers), "brokers", 0, where),
            config=tuple(sorted(config.items())),
            chaos=chaos,
        )


def _count(value: object, name: str, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise pytest.UsageError(f"{where}: {name} must be an integer >= {minimum}, not {value!r}")
    return value


def _config_strings(config: object, where: str) -> dict[str, str]:
    """A marker's or option's config as Kafka-style strings (booleans as true/false)."""
    if not isinstance(config, Mapping):
        raise pytest.UsageError(f"{where}: config must be a mapping, not {config!r}")
    out = {}
    for key, value in config.items():
        if not isinstance(key, str) or not isinstance(value, str | int | bool):
            raise pytest.UsageError(
                f"{where}: config {key!r}={value!r} is not a str key with a str, int or bool value"
            )
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _key_values(lines: list[str], where: str) -> dict[str, str]:
    out = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"{where}: expected KEY=VALUE, got {line!r}")
        out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------- options and settings


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kraft", "kraft clusters (kraft.pytest_plugin)")
    group.addoption(
        "--kraft-nodes",
        type=int,
        metavar="N",
        help="combined broker+controller nodes of the shared cluster (ini kraft_nodes, default 1)",
    )
    group.addoption(
        "--kraft-brokers",
        type=int,
        metavar="N",
        help="broker-only nodes of the shared cluster (ini kraft_brokers, default 0)",
    )
    group.addoption(
        "--kraft-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a node config key for every cluster (repeatable; after ini kraft_config)",
    )
    group.addoption(
        "--kraft-scope",
        choices=SCOPES,
        help="how widely kraft_cluster is shared (ini kraft_scope, default session)",
    )
    group.addoption(
        "--kraft-log-lines",
        type=int,
        metavar="N",
        help="log lines per node attached to a failing test's report, 0 for none "
        "(ini kraft_log_lines, default 40)",
    )
    group.addoption(
        "--kraft-start-timeout",
        type=float,
        metavar="S",
        help="seconds a cluster may take to start (ini kraft_start_timeout, default 30)",
    )
    parser.addini("kraft_nodes", "combined nodes of the shared kraft cluster", default="1")
    parser.addini("kraft_brokers", "broker-only nodes of the shared kraft cluster", default="0")
    parser.addini(
        "kraft_config",
        "KEY=VALUE node config lines for every kraft cluster",
        type="linelist",
        default=[],
    )
    parser.addini("kraft_scope", "scope of the kraft_cluster fixture", default="session")
    parser.addini(
        "kraft_log_lines", "log lines per node attached to a failing test's report", default="40"
    )
    parser.addini("kraft_start_timeout", "seconds a kraft cluster may take to start", default="30")


@dataclass(frozen=True, slots=True)
class PluginSettings:
    cluster: ClusterSettings
    scope: Scope
    log_lines: int


def _option_or_ini(config: pytest.Config, name: str) -> str:
    value = config.getoption(name)
    return str(value) if value is not None else str(config.getini(name))


def read_settings(config: pytest.Config) -> PluginSettings:
    """The command line's settings over the ini file's; bad values are a usage error."""
    try:
        nodes = int(_option_or_ini(config, "kraft_nodes"))
        brokers = int(_option_or_ini(config, "kraft_brokers"))
        log_lines = int(_option_or_ini(config, "kraft_log_lines"))
        start_timeout = float(_option_or_ini(config, "kraft_start_timeout"))
    except ValueError as e:
        raise pytest.UsageError(f"kraft plugin: {e}") from None
    scope = _option_or_ini(config, "kraft_scope")
    if scope not in SCOPES:
        raise pytest.UsageError(f"kraft plugin: kraft_scope must be one of {SCOPES}, not {scope!r}")
    keys = _key_values(list(config.getini("kraft_config")), "ini kraft_config")
    keys.update(_key_values(config.getoption("kraft_config"), "--kraft-config"))
    cluster = ClusterSettings(start_timeout=start_timeout).with_marker(
        {"nodes": nodes, "brokers": brokers, "config": keys}, "kraft plugin settings"
    )
    return PluginSettings(cluster, cast(Scope, scope), max(0, log_lines))


# ---------------------------------------------------------------- the clusters of a run


class Clusters:
    """Every cluster this pytest process started, so each is stopped: the shared ones when the
    tests sharing them are done, a marked test's own by its fixture, and whatever still runs
    at the end of the session (or of the run, if the session never finished)."""

    def __init__(self) -> None:
        self.running: list[Cluster] = []
        self.shared: dict[tuple[ClusterSettings, str], Cluster] = {}

    def start(self, settings: ClusterSettings) -> Cluster:
        from kraft.embedded.cluster import (  # here, not at import: keeps pytest cheap
            Cluster,
            ClusterStartError,
        )

        attempt = 1
        while True:
            cluster = Cluster(
                nodes=settings.nodes,
                brokers=settings.brokers,
                config=dict(settings.config),
                start_timeout=settings.start_timeout,
                chaos=settings.chaos,
            )
            # Listed before it starts: a Ctrl-C during start leaves nothing unlisted running.
            self.running.append(cluster)
            try:
                return cluster.start()
            except ClusterStartError as e:
                self.stop(cluster)
                # Free ports are picked, released, then bound by the nodes: another process
                # (an xdist worker starting its cluster, any client's outgoing connection) may
                # take one in between. New ports are then worth one more try.
                if attempt == START_ATTEMPTS or _PORT_TAKEN not in str(e).lower():
                    raise
                attempt += 1
            except BaseException:
                self.stop(cluster)
                raise

    def get_shared(
        self, settings: ClusterSettings, owner: pytest.Item | pytest.Collector
    ) -> Cluster:
        """The cluster shared by the tests under `owner` (the session, a package, module or
        class, or one test), started on first use and stopped when `owner` is torn down."""
        key = (settings, owner.nodeid)
        if key not in self.shared:
            cluster = self.start(settings)
            self.shared[key] = cluster
            owner.addfinalizer(lambda: self.stop(cluster))
        return self.shared[key]

    def stop(self, cluster: Cluster) -> None:
        if cluster in self.running:
            self.running.remove(cluster)
        for key, shared in list(self.shared.items()):
            if shared is cluster:
                del self.shared[key]
        cluster.stop()

    def stop_all(self) -> None:
        """Stop every cluster, the last started first; the first error is raised after all
        were tried."""
        errors: list[Exception] = []
        while self.running:
            try:
                self.stop(self.running[-1])
            except Exception as e:  # noqa: BLE001 - re-raised below, after the others stopped
                errors.append(e)
        if errors:
            raise errors[0]

    def used_by(self, item: pytest.Item) -> list[Cluster]:
        """The running clusters a test used: those among its fixture values, else (it got one
        through a fixture of its own) every running one."""
        values = getattr(item, "funcargs", None) or {}
        used = [c for c in self.running if any(v is c for v in values.values())]
        if used or not FIXTURES & set(getattr(item, "fixturenames", ())):
            return used
        return list(self.running)


_CLUSTERS = pytest.StashKey[Clusters]()
_SETTINGS = pytest.StashKey[PluginSettings]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kraft(nodes=1, brokers=0, config={}, chaos=False): give the test a kraft cluster of "
        "its own (the kraft_cluster fixture and those built on it; kraft_chaos's size)",
    )
    config.addinivalue_line(
        "markers",
        "kraft_topic(partitions=1, replication_factor=None, config={}): how the kraft_topic "
        "fixture makes the test's topic",
    )
    config.stash[_SETTINGS] = read_settings(config)
    clusters = Clusters()
    config.stash[_CLUSTERS] = clusters
    # The last resort (a run that never finished its session); a no-op after sessionfinish.
    config.add_cleanup(clusters.stop_all)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `kraft` gets `kraft_cluster` parametrized with its own settings at
    function scope: pytest then builds that test its own cluster and never hands it the
    shared one."""
    marker = metafunc.definition.get_closest_marker("kraft")
    if marker is None or "kraft_cluster" not in metafunc.fixturenames:
        return
    where = metafunc.definition.nodeid
    if marker.args:
        raise pytest.Collector.CollectError(
            f"{where}: @pytest.mark.kraft takes keyword arguments only"
        )
    base = metafunc.config.stash[_SETTINGS].cluster
    try:
        own = base.with_marker(marker.kwargs, where)
    except pytest.UsageError as e:
        # A collection error of this test's module, printed as the message alone.
        raise pytest.Collector.CollectError(str(e)) from None
    metafunc.parametrize("kraft_cluster", [own], indirect=True, scope="function", ids=["kraft"])


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    clusters = session.config.stash.get(_CLUSTERS, None)
    if clusters is not None:
        clusters.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    clusters = item.config.stash.get(_CLUSTERS, None)
    lines = item.config.stash[_SETTINGS].log_lines
    if report.failed and lines > 0 and clusters is not None and clusters.running:
        for cluster in clusters.used_by(item):
            report.sections.append(
                (f"{LOG_SECTION} ({cluster.bootstrap_servers})", cluster.logs(lines))
            )
    return report


# ---------------------------------------------------------------- fixtures


def _cluster_scope(fixture_name: str, config: pytest.Config) -> Scope:
    return config.stash[_SETTINGS].scope


@pytest.fixture(scope=_cluster_scope)
def kraft_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A started kraft cluster: the shared one, or the test's own under `@pytest.mark.kraft`."""
    clusters = request.config.stash[_CLUSTERS]
    own: ClusterSettings | None = getattr(request, "param", None)
    if own is None:
        # Kept by `clusters` and stopped with the scope's node, not by this fixture's cache: a
        # marked test's parameter makes pytest finish this fixture, and the shared cluster
        # outlives that.
        yield clusters.get_shared(request.config.stash[_SETTINGS].cluster, request.node)
        return
    cluster = clusters.start(own)
    try:
        yield cluster
    finally:
        clusters.stop(cluster)


@pytest.fixture
def kraft_chaos(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A started chaos cluster of this test's own (`kraft.Cluster(chaos=True)`): sized by the
    test's `kraft` marker, else as the shared cluster. Teardown heals every fault and stops
    it, whatever the test did."""
    clusters = request.config.stash[_CLUSTERS]
    settings = request.config.stash[_SETTINGS].cluster
    marker = request.node.get_closest_marker("kraft")
    if marker is not None:
        settings = settings.with_marker(marker.kwargs, request.node.nodeid)
    cluster = clusters.start(replace(settings, chaos=True))
    try:
        yield cluster
    finally:
        # Cluster.stop heals before it stops the nodes and removes the proxies after.
        clusters.stop(cluster)


@pytest.fixture(scope=_cluster_scope)
def kraft_bootstrap_servers(kraft_cluster: Cluster) -> str:
    """The cluster's bootstrap servers, "127.0.0.1:port,...", for any Kafka client."""
    return kraft_cluster.bootstrap_servers


class TopicFactory:
    """Creates topics with fresh names on one cluster; each call returns the new name."""

    def __init__(self, cluster: Cluster, prefix: str) -> None:
        self.cluster = cluster
        self.prefix = _NOT_IN_TOPIC_NAME.sub("-", prefix).strip("-.")[:_TOPIC_PREFIX_MAX]
        self.created: list[str] = []

    def __call__(
        self,
        partitions: int = 1,
        *,
        replication_factor: int | None = None,
        config: Mapping[str, ConfigValue] | None = None,
        name: str | None = None,
    ) -> str:
        """A new topic, once every partition has a leader; `replication_factor` None is the
        cluster's default (min(3, brokers)); `name` replaces the generated one."""
        topic = name or f"{self.prefix or 'topic'}-{uuid.uuid4().hex[:10]}"
        self.cluster.create_topic(
            topic,
            partitions=partitions,
            replication_factor=replication_factor,
            config=_config_strings(config or {}, f"topic {topic}"),
        )
        self.created.append(topic)
        return topic


@pytest.fixture
def kraft_topic_factory(kraft_cluster: Cluster, request: pytest.FixtureRequest) -> TopicFactory:
    """``kraft_topic_factory(partitions=1, *, replication_factor=None, config=None)`` → a
    new topic's name."""
    return TopicFactory(kraft_cluster, request.node.name)


@pytest.fixture
def kraft_topic(kraft_topic_factory: TopicFactory, request: pytest.FixtureRequest) -> str:
    """A fresh topic for this test (set by `@pytest.mark.kraft_topic(...)`); its name."""
    marker: pytest.Mark | None = request.node.get_closest_marker("kraft_topic")
    if marker is None:
        return kraft_topic_factory()
    unknown = set(marker.kwargs) - TOPIC_MARKER_KEYS
    if unknown or marker.args:
        raise pytest.UsageError(
            f"{request.node.nodeid}: @pytest.mark.kraft_topic takes only the keyword arguments "
            f"{sorted(TOPIC_MARKER_KEYS)}, not {[*marker.args, *sorted(unknown)]}"
        )
    kwargs: dict[str, Any] = dict(marker.kwargs)
    return kraft_topic_factory(**kwargs)


__all__ = [
    "ClusterSettings",
    "Clusters",
    "TopicFactory",
    "kraft_bootstrap_servers",
    "kraft_chaos",
    "kraft_cluster",
    "kraft_topic",
    "kraft_topic_factory",
]

"""TLS contexts from Kafka's `ssl.*` keys, for SSL listeners and the node's own connections.

Keys, each also settable per listener as `listener.name.<listener>.ssl.*` (the listener's name
in lower case, as Kafka writes it; the per-listener key wins)::

    ssl.keystore.type            JKS (default), PKCS12 or PEM
    ssl.keystore.location        the keystore file (PEM: private key and certificate chain)
    ssl.keystore.password        JKS and PKCS12 only
    ssl.key.password             the private key's password (JKS: defaults to the store's;
                                 PEM: the encrypted key's)
    ssl.keystore.certificate.chain / ssl.keystore.key
                                 PEM inline, instead of a location
    ssl.truststore.type / .location / .password, ssl.truststore.certificates (PEM inline)
    ssl.client.auth              none (default) | requested | required
    ssl.enabled.protocols        default TLSv1.2,TLSv1.3
    ssl.protocol                 checked; the enabled protocols decide what is spoken
    ssl.cipher.suites            IANA (Java) or OpenSSL names; TLS 1.3 suites cannot be
                                 narrowed by Python's ssl module and stay enabled
    ssl.endpoint.identification.algorithm
                                 https (default): a client checks the server's host name;
                                 empty: no check

Without a truststore the system's certificate authorities are trusted, as Kafka trusts the
JVM's. Anything that cannot be honoured (a missing or unreadable store, a wrong password, an
unknown value) stops start-up with a `ConfigError` naming the key.

A listener's keystore and truststore files are watched (`CertificateReloader`): when their
content changes, new connections get a context built from the new files (as Kafka reloads a
keystore altered in place); a changed file that does not load leaves the current context in
use. The node's own outbound contexts are not reloaded.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kraft.config import ConfigError, NodeConfig
from kraft.security.stores import has_keystore, load_keystore, load_truststore

if TYPE_CHECKING:
    from kraft.quorum.transport import LinkTls

logger = logging.getLogger(__name__)

HONOURED = frozenset(
    {
        "ssl.keystore.type",
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.key.password",
        "ssl.keystore.certificate.chain",
        "ssl.keystore.key",
        "ssl.truststore.type",
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.truststore.certificates",
        "ssl.client.auth",
        "ssl.enabled.protocols",
        "ssl.protocol",
        "ssl.cipher.suites",
        "ssl.endpoint.identification.algorithm",
    }
)
# Java's machinery with no counterpart in OpenSSL: their defaults change nothing.
_JAVA_ONLY = {
    "ssl.keymanager.algorithm": "SunX509",
    "ssl.trustmanager.algorithm": "PKIX",
    "ssl.secure.random.implementation": "",
    "ssl.provider": "",
    "ssl.principal.mapping.rules": "DEFAULT",
    "ssl.engine.factory.class": "",
}
_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_SSL_PROTOCOLS = frozenset({"TLS", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "SSL", "SSLv3"})
_CLIENT_AUTH = {
    "none": ssl.CERT_NONE,
    "requested": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_TLS13_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)


@dataclass(frozen=True, slots=True)
class SslSettings:
    """The `ssl.*` keys in effect on one listener: its `listener.name.<l>.ssl.*` over the
    node's `ssl.*`."""

    listener: str
    values: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default).strip()

    def source(self, key: str) -> str:
        """The config key a value came from, for messages."""
        return self.sources.get(key, key)


def ssl_settings(props: Mapping[str, str], listener: str) -> SslSettings:
    prefix = f"listener.name.{listener.lower()}."
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key, value in props.items():
        if key.startswith("ssl."):
            values.setdefault(key, value)
            sources.setdefault(key, key)
    for key, value in props.items():
        if key.lower().startswith(prefix) and key[len(prefix) :].startswith("ssl."):
            values[key[len(prefix) :]] = value
            sources[key[len(prefix) :]] = key
    return SslSettings(listener, values, sources)


def listener_protocol(config: NodeConfig, listener: str) -> str:
    """A listener's security protocol: its `listener.security.protocol.map` entry (the node's
    effective map, Kafka's default included), else its name when that is a protocol, else
    PLAINTEXT."""
    known = config.listener_security_protocol_map.get(listener)
    if known is not None:
        return known
    mapping = config.extra.get("listener.security.protocol.map", "")
    for item in mapping.split(","):
        name, sep, protocol = item.partition(":")
        if sep and name.strip().upper() == listener.upper():
            return protocol.strip().upper()
    if listener.upper() in ("SSL", "SASL_SSL", "SASL_PLAINTEXT"):
        return listener.upper()
    return "PLAINTEXT"


def check_keys(props: Mapping[str, str]) -> None:
    """Warns about Java-only keys at their defaults; refuses those that ask for more."""
    for key, value in props.items():
        name = key
        match = re.match(r"^listener\.name\.[^.]+\.(ssl\..+)$", key)
        if match is not None:
            name = match.group(1)
        if not name.startswith("ssl.") or name in HONOURED:
            continue
        if name in ("ssl.allow.dn.changes", "ssl.allow.san.changes"):
            logger.warning(
                "config key %s has no effect: a reloaded certificate is not compared with the "
                "one it replaces",
                key,
            )
            continue
        if name in _JAVA_ONLY:
            if value.strip() in ("", _JAVA_ONLY[name]):
                logger.warning("config key %s has no effect: TLS is OpenSSL's here", key)
                continue
            raise ConfigError(f"{key}={value}: not supported (TLS is OpenSSL's here)")
        raise ConfigError(f"unknown TLS config key {key}")


# ------------------------------------------------------------------------------- contexts


def server_context(settings: SslSettings) -> ssl.SSLContext:
    """A listener's context: its keystore is required; `ssl.client.auth` asks for clients'
    certificates, checked against the truststore."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(ctx, settings)
    if not has_keystore(settings):
        raise ConfigError(
            f"{settings.source('ssl.keystore.location')}: required for listener "
            f"{settings.listener} (its security protocol is SSL)"
        )
    load_keystore(ctx, settings)
    auth = settings.get("ssl.client.auth", "none").lower()
    if auth not in _CLIENT_AUTH:
        raise ConfigError(
            f"invalid value {auth!r} for {settings.source('ssl.client.auth')}: "
            "must be none, requested or required"
        )
    ctx.verify_mode = _CLIENT_AUTH[auth]
    if auth != "none":
        load_truststore(ctx, settings)
    return ctx


def client_context(settings: SslSettings) -> ssl.SSLContext:
    """The context this node dials a listener with: the server is verified against the
    truststore, its host name checked unless `ssl.endpoint.identification.algorithm` is
    empty, and the keystore (when given) answers a server asking for a certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _common(ctx, settings)
    algorithm = settings.get("ssl.endpoint.identification.algorithm", "https").lower()
    if algorithm not in ("https", ""):
        raise ConfigError(
            f"invalid value {algorithm!r} for "
            f"{settings.source('ssl.endpoint.identification.algorithm')}: must be https or empty"
        )
    ctx.check_hostname = algorithm == "https"
    ctx.verify_mode = ssl.CERT_REQUIRED
    load_truststore(ctx, settings)
    if has_keystore(settings):
        load_keystore(ctx, settings)
    return ctx


def _common(ctx: ssl.SSLContext, settings: SslSettings) -> None:
    protocol = settings.get("ssl.protocol", "TLSv1.3")
    if protocol not in _SSL_PROTOCOLS:
        raise ConfigError(f"invalid value {protocol!r} for {settings.source('ssl.protocol')}")
    enabled = [
        p.strip() for p in settings.get("ssl.enabled.protocols", "TLSv1.2,TLSv1.3").split(",")
    ]
    enabled = [p for p in enabled if p]
    unknown = [p for p in enabled if p not in _VERSIONS]
    if unknown or not enabled:
        raise ConfigError(
            f"invalid value {','.join(enabled)!r} for {settings.source('ssl.enabled.protocols')}"
            f": {', '.join(unknown) or 'empty'} (known: {', '.join(_VERSIONS)})"
        )
    versions = sorted(_VERSIONS[p] for p in enabled)
    try:
        ctx.minimum_version = versions[0]
        ctx.maximum_version = versions[-1]
    except ValueError as e:
        raise ConfigError(f"{settings.source('ssl.enabled.protocols')}: {e}") from None
    suites = [s.strip() for s in settings.get("ssl.cipher.suites").split(",") if s.strip()]
    if suites:
        _set_cipher_suites(ctx, suites, settings.source("ssl.cipher.suites"))


def _set_cipher_suites(ctx: ssl.SSLContext, suites: list[str], key: str) -> None:
    names = []
    for suite in suites:
        if suite in _TLS13_SUITES:
            continue  # OpenSSL's TLS 1.3 suites; Python's ssl cannot narrow them
        name = openssl_cipher_name(suite)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(name)
        except ssl.SSLError:
            raise ConfigError(f"{key}: unknown cipher suite {suite}") from None
        names.append(name)
    if names:
        ctx.set_ciphers(":".join(names))
    elif ctx.minimum_version < ssl.TLSVersion.TLSv1_3:
        # Only TLS 1.3 suites named: TLS 1.2 would have none.
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3


def openssl_cipher_name(suite: str) -> str:
    """OpenSSL's name for a TLS 1.2 suite given by its IANA (Java) name, e.g.
    TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 → ECDHE-RSA-AES256-GCM-SHA384; OpenSSL names pass."""
    if not suite.startswith(("TLS_", "SSL_")) or "_WITH_" not in suite:
        return suite
    exchange, _, cipher = suite[4:].partition("_WITH_")
    kx = "" if exchange == "RSA" else exchange.replace("_", "-") + "-"
    cipher = re.sub(r"^AES_(\d+)", r"AES\1", cipher)
    cipher = cipher.replace("CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305")
    cipher = cipher.replace("_CBC_", "_").replace("_", "-")
    if cipher.endswith("-CBC-SHA"):
        cipher = cipher.removesuffix("-CBC-SHA") + "-SHA"
    return kx + cipher


# ------------------------------------------------------------------------------- a node


@dataclass(frozen=True, slots=True)
class NodeTls:
    """A node's contexts: `servers` for its SSL listeners, `clients` for dialling a listener
    (by name) of another node: the inter-broker and controller listeners."""

    servers: Mapping[str, ssl.SSLContext] = field(default_factory=dict)
    clients: Mapping[str, ssl.SSLContext] = field(default_factory=dict)

    def client_for(self, listener: str) -> ssl.SSLContext | None:
        return self.clients.get(listener)

    def raft_links(self, controller_listeners: Sequence[str]) -> LinkTls | None:
        """The Raft links' TLS: the controller listener's, when its protocol is SSL."""
        # Imported here: a single node never loads the quorum (pysyncobj).
        from kraft.quorum.transport import LinkTls

        for listener in controller_listeners:
            server, client = self.servers.get(listener), self.clients.get(listener)
            if server is not None and client is not None:
                return LinkTls(server, client)
        return None


def node_tls(config: NodeConfig) -> NodeTls:
    """Every context the node needs, built at start-up (a bad store stops it here)."""
    props = config.extra
    check_keys(props)
    servers: dict[str, ssl.SSLContext] = {}
    clients: dict[str, ssl.SSLContext] = {}
    for endpoint in config.listeners:
        if listener_protocol(config, endpoint.listener) != "SSL":
            continue
        settings = ssl_settings(props, endpoint.listener)
        servers[endpoint.listener] = server_context(settings)
    dialled = {config.inter_broker_listener_name, *config.controller_listener_names}
    for listener in sorted(dialled):
        if listener_protocol(config, listener) == "SSL":
            clients[listener] = client_context(ssl_settings(props, listener))
    if not servers and not clients:
        unused = sorted(k for k in props if k.startswith("ssl."))
        if unused:
            logger.warning(
                "config keys %s have no effect: no listener's security protocol is SSL",
                ", ".join(unused),
            )
    return NodeTls(servers, clients)


class CertificateReloader:
    """Watches the keystore and truststore files of a node's SSL listeners; `changed()` gives
    a new server context for each listener whose files' content changed since the last call.
    A change that does not load is logged once and the listener keeps its current context."""

    def __init__(self, config: NodeConfig, tag: str = "") -> None:
        self.tag = tag
        self._watched: dict[str, tuple[SslSettings, tuple[str, ...]]] = {}
        self._digests: dict[str, bytes] = {}
        for endpoint in config.listeners:
            if listener_protocol(config, endpoint.listener) != "SSL":
                continue
            settings = ssl_settings(config.extra, endpoint.listener)
            paths = tuple(
                p
                for p in (
                    settings.get("ssl.keystore.location"),
                    settings.get("ssl.truststore.location"),
                )
                if p
            )
            if paths:
                self._watched[endpoint.listener] = (settings, paths)
                self._digests[endpoint.listener] = _digest(paths)

    @property
    def watching(self) -> bool:
        return bool(self._watched)

    def changed(self) -> dict[str, ssl.SSLContext]:
        out: dict[str, ssl.SSLContext] = {}
        for listener, (settings, paths) in self._watched.items():
            digest = _digest(paths)
            if digest == self._digests[listener]:
                continue
            self._digests[listener] = digest
            try:
                out[listener] = server_context(settings)
            except ConfigError as e:
                logger.error(
                    "%slistener %s keeps its current certificate: the changed store does not "
                    "load: %s",
                    self.tag,
                    listener,
                    e,
                )
                continue
            logger.info("%slistener %s: certificate reloaded from %s", self.tag, listener, paths)
        return out


def _digest(paths: tuple[str, ...]) -> bytes:
    h = hashlib.sha256()
    for path in paths:
        try:
            with open(path, "rb") as f:
                h.update(f.read())
        except OSError as e:
            h.update(f"unreadable: {e.errno}".encode())
        h.update(b"\0")
    return h.digest()

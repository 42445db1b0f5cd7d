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
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kraft.config import ConfigError, NodeConfig

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
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.S)


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
    """A listener's security protocol: its `listener.security.protocol.map` entry, else its
    name when that is a protocol, else PLAINTEXT."""
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
    if not _has_keystore(settings):
        raise ConfigError(
            f"{settings.source('ssl.keystore.location')}: required for listener "
            f"{settings.listener} (its security protocol is SSL)"
        )
    _load_keystore(ctx, settings)
    auth = settings.get("ssl.client.auth", "none").lower()
    if auth not in _CLIENT_AUTH:
        raise ConfigError(
            f"invalid value {auth!r} for {settings.source('ssl.client.auth')}: "
            "must be none, requested or required"
        )
    ctx.verify_mode = _CLIENT_AUTH[auth]
    if auth != "none":
        _load_truststore(ctx, settings)
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
    _load_truststore(ctx, settings)
    if _has_keystore(settings):
        _load_keystore(ctx, settings)
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


# ------------------------------------------------------------------------------- stores


def inline_pem(value: str) -> bytes:
    """A PEM value as a properties file carries it: lines joined by `\\` continuations (which
    drop the newlines) or written as `\\n`; rewrapped so OpenSSL and cryptography read it."""
    text = value.replace("\\n", "\n")
    out = []
    for label, body in _PEM_BLOCK.findall(text):
        b64 = re.sub(r"\s+", "", body)
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        out.append("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]))
    return ("\n".join(out) + "\n").encode()


def _has_keystore(settings: SslSettings) -> bool:
    return bool(settings.get("ssl.keystore.location") or settings.get("ssl.keystore.key"))


def _store_type(settings: SslSettings, key: str) -> str:
    inline = "ssl.keystore.key" if key == "ssl.keystore.type" else "ssl.truststore.certificates"
    default = "PEM" if settings.get(inline) else "JKS"
    kind = settings.get(key, default).upper()
    if kind not in ("JKS", "PKCS12", "PEM"):
        raise ConfigError(f"invalid value {kind!r} for {settings.source(key)}: JKS, PKCS12 or PEM")
    return kind


def _read(settings: SslSettings, key: str) -> bytes:
    path = settings.get(key)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{settings.source(key)}: cannot read {path}: {e.strerror}") from None


def _load_keystore(ctx: ssl.SSLContext, settings: SslSettings) -> None:
    """The private key and its certificate chain into `ctx`."""
    kind = _store_type(settings, "ssl.keystore.type")
    location = "ssl.keystore.location"
    if kind == "PEM":
        if settings.get("ssl.keystore.password"):
            raise ConfigError(
                f"{settings.source('ssl.keystore.password')}: not used with PEM keystores "
                f"(the key's password is {settings.source('ssl.key.password')})"
            )
        if settings.get("ssl.keystore.key"):
            if settings.get(location):
                raise ConfigError(
                    f"{settings.source('ssl.keystore.key')} and {settings.source(location)} "
                    "exclude each other"
                )
            chain = inline_pem(settings.get("ssl.keystore.certificate.chain"))
            if not _PEM_CERT.search(chain):
                raise ConfigError(
                    f"{settings.source('ssl.keystore.certificate.chain')}: no PEM certificate "
                    f"(required with {settings.source('ssl.keystore.key')})"
                )
            key_pem = inline_pem(settings.get("ssl.keystore.key"))
            key_source = settings.source("ssl.keystore.key")
        else:
            key_pem = _read(settings, location)
            chain = b"\n".join(_PEM_CERT.findall(key_pem))
            key_source = settings.source(location)
        key = _pem_private_key(key_pem, settings.get("ssl.key.password"), key_source, settings)
        certs_pem = chain
    elif kind == "JKS":
        key, certs_pem = _jks_key(settings)
    else:
        key, certs_pem = _pkcs12_key(settings)
    _load_chain(ctx, key, certs_pem, settings.source(location))


def _pem_private_key(data: bytes, password: str, source: str, settings: SslSettings) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    match = re.search(
        rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", data, re.S
    )
    if match is None:
        raise ConfigError(f"{source}: no PEM private key")
    try:
        return load_pem_private_key(match.group(0), password.encode() or None)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"{settings.source('ssl.key.password')}: wrong password for the private key in "
            f"{source} ({e})"
        ) from None


def _jks_key(settings: SslSettings) -> tuple[Any, bytes]:
    import jks
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    location = settings.source("ssl.keystore.location")
    data = _read(settings, "ssl.keystore.location")
    store = _jks_store(data, settings, "ssl.keystore.password")
    if not store.private_keys:
        raise ConfigError(f"{location}: the keystore holds no private key")
    alias, entry = sorted(store.private_keys.items())[0]
    if not entry.is_decrypted():
        try:
            entry.decrypt(settings.get("ssl.key.password") or settings.get("ssl.keystore.password"))
        except jks.util.DecryptionFailureException:
            raise ConfigError(
                f"{settings.source('ssl.key.password')}: wrong password for key {alias!r} "
                f"in {settings.get('ssl.keystore.location')}"
            ) from None
    key = load_der_private_key(entry.pkey_pkcs8, None)
    certs = b"".join(ssl.DER_cert_to_PEM_cert(der).encode() for _, der in entry.cert_chain)
    return key, certs


def _jks_store(data: bytes, settings: SslSettings, password_key: str) -> Any:
    import jks

    location_key = password_key.replace(".password", ".location")
    try:
        return jks.KeyStore.loads(data, settings.get(password_key), try_decrypt_keys=True)
    except jks.util.KeystoreSignatureException:
        raise ConfigError(
            f"{settings.source(password_key)}: wrong password for {settings.get(location_key)}"
        ) from None
    except (jks.util.KeystoreException, ValueError) as e:
        raise ConfigError(
            f"{settings.source(location_key)}: {settings.get(location_key)} is not a JKS "
            f"keystore ({e or type(e).__name__})"
        ) from None


def _pkcs12_key(settings: SslSettings) -> tuple[Any, bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    data = _read(settings, "ssl.keystore.location")
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(
            data, settings.get("ssl.keystore.password").encode() or None
        )
    except ValueError:
        raise ConfigError(
            f"{settings.source('ssl.keystore.password')}: wrong password for "
            f"{settings.get('ssl.keystore.location')} (or not a PKCS12 keystore)"
        ) from None
    if key is None or cert is None:
        raise ConfigError(f"{settings.source('ssl.keystore.location')}: no private key")
    certs = [cert, *extra]
    return key, b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _load_chain(ctx: ssl.SSLContext, key: Any, certs_pem: bytes, source: str) -> None:
    """`load_cert_chain` reads files only: the key goes to a private temporary file,
    encrypted with a one-time password, removed once loaded."""
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        Encoding,
        PrivateFormat,
    )

    once = secrets.token_urlsafe(24)
    key_pem = key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(once.encode())
    )
    with tempfile.TemporaryDirectory(prefix="kraft-tls-") as tmp:
        path = os.path.join(tmp, "chain.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(certs_pem + b"\n" + key_pem)
        try:
            ctx.load_cert_chain(path, password=once)
        except ssl.SSLError as e:
            raise ConfigError(f"{source}: the key does not match its certificate: {e}") from None


def _load_truststore(ctx: ssl.SSLContext, settings: SslSettings) -> None:
    """The truststore's certificates, or the system's authorities without one."""
    location = settings.get("ssl.truststore.location")
    inline = settings.get("ssl.truststore.certificates")
    if not location and not inline:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return
    kind = _store_type(settings, "ssl.truststore.type")
    if kind == "PEM":
        data = inline_pem(inline) if inline else _read(settings, "ssl.truststore.location")
        pems = _PEM_CERT.findall(data)
    elif kind == "JKS":
        data = _read(settings, "ssl.truststore.location")
        store = _jks_store(data, settings, "ssl.truststore.password")
        ders = [e.cert for e in store.certs.values()]
        pems = [ssl.DER_cert_to_PEM_cert(der).encode() for der in ders]
    else:
        pems = _pkcs12_certs(settings)
    source = settings.source("ssl.truststore.certificates" if inline else "ssl.truststore.location")
    if not pems:
        raise ConfigError(f"{source}: the truststore holds no certificate")
    try:
        ctx.load_verify_locations(cadata=b"\n".join(pems).decode())
    except ssl.SSLError as e:
        raise ConfigError(f"{source}: unreadable certificate: {e}") from None


def _pkcs12_certs(settings: SslSettings) -> list[bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    data = _read(settings, "ssl.truststore.location")
    try:
        loaded = pkcs12.load_pkcs12(data, settings.get("ssl.truststore.password").encode() or None)
    except ValueError:
        raise ConfigError(
            f"{settings.source('ssl.truststore.password')}: wrong password for "
            f"{settings.get('ssl.truststore.location')} (or not a PKCS12 truststore)"
        ) from None
    certs = [c.certificate for c in loaded.additional_certs]
    if loaded.cert is not None:
        certs.insert(0, loaded.cert.certificate)
    return [c.public_bytes(Encoding.PEM) for c in certs]


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

"""Keystores and truststores of Kafka's three types, read for `kraft.security.tls`.

JKS through pyjks (the private key entry's PKCS8 key and chain; trusted certificate entries),
PKCS12 through cryptography, PEM from a file (Kafka's PEM keystore: a private key, encrypted
with `ssl.key.password` or not, and its certificate chain) or inline in the config. Python's
`ssl` loads a certificate chain from files only: the key is handed over through a private
temporary file, encrypted with a one-time password and removed once loaded. Every failure is
a `ConfigError` naming the key to fix.
"""

from __future__ import annotations

import os
import re
import secrets
import ssl
import tempfile
from typing import TYPE_CHECKING, Any

from kraft.config import ConfigError

if TYPE_CHECKING:
    from kraft.security.tls import SslSettings

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.S)


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


def has_keystore(settings: SslSettings) -> bool:
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


def load_keystore(ctx: ssl.SSLContext, settings: SslSettings) -> None:
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


def load_truststore(ctx: ssl.SSLContext, settings: SslSettings) -> None:
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

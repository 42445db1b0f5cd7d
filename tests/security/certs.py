"""Certificates and keystores for the TLS tests, made with trustme (a CA and its leaves),
pyjks (JKS) and cryptography (PKCS12), written under a test's own temporary directory."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import jks
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
    pkcs12,
)

PASSWORD = "kraft-secret"


@dataclass(frozen=True)
class Pki:
    """A CA and the directory its stores are written to."""

    ca: trustme.CA
    root: Path

    def leaf(self, common_name: str, *, expired: bool = False) -> trustme.LeafCert:
        """A certificate for 127.0.0.1 and localhost (the address every test node binds)."""
        if expired:
            past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
            return self.ca.issue_cert(
                "127.0.0.1",
                "localhost",
                common_name=common_name,
                not_before=past - datetime.timedelta(days=1),
                not_after=past,
            )
        return self.ca.issue_cert("127.0.0.1", "localhost", common_name=common_name)

    def ca_pem(self) -> Path:
        path = self.root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        return path

    # ----------------------------------------------------------------- keystores

    def keystore(self, leaf: trustme.LeafCert, kind: str, name: str) -> dict[str, str]:
        """`ssl.keystore.*` keys for `leaf` in a store of `kind` (JKS, PKCS12, PEM or
        PEM-inline)."""
        key = load_pem_private_key(leaf.private_key_pem.bytes(), None)
        certs = [x509.load_pem_x509_certificate(b.bytes()) for b in leaf.cert_chain_pems]
        path = self.root / f"{name}.{kind.lower()}"
        if kind == "JKS":
            der_key = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
            entry = jks.PrivateKeyEntry.new(
                name, [c.public_bytes(Encoding.DER) for c in certs], der_key
            )
            jks.KeyStore.new("jks", [entry]).save(str(path), PASSWORD)
        elif kind == "PKCS12":
            data = pkcs12.serialize_key_and_certificates(
                name.encode(),
                key,  # type: ignore[arg-type]
                certs[0],
                certs[1:] or None,
                BestAvailableEncryption(PASSWORD.encode()),
            )
            path.write_bytes(data)
        elif kind == "PEM":
            # Kafka's PEM keystore file: an encrypted PKCS8 key and the chain.
            key_pem = key.private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(PASSWORD.encode())
            )
            path.write_bytes(key_pem + b"".join(c.public_bytes(Encoding.PEM) for c in certs))
            return {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(path),
                "ssl.key.password": PASSWORD,
            }
        elif kind == "PEM-inline":
            return {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.key": leaf.private_key_pem.bytes().decode(),
                "ssl.keystore.certificate.chain": "".join(
                    b.bytes().decode() for b in leaf.cert_chain_pems
                ),
            }
        else:
            raise ValueError(kind)
        return {
            "ssl.keystore.type": kind,
            "ssl.keystore.location": str(path),
            "ssl.keystore.password": PASSWORD,
            "ssl.key.password": PASSWORD,
        }

    def truststore(self, kind: str) -> dict[str, str]:
        """`ssl.truststore.*` keys trusting the CA, in a store of `kind`."""
        ca = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        path = self.root / f"truststore.{kind.lower()}"
        if kind == "JKS":
            entry = jks.TrustedCertEntry.new("ca", ca.public_bytes(Encoding.DER))
            jks.KeyStore.new("jks", [entry]).save(str(path), PASSWORD)
        elif kind == "PKCS12":
            data = pkcs12.serialize_key_and_certificates(
                None, None, None, [ca], BestAvailableEncryption(PASSWORD.encode())
            )
            path.write_bytes(data)
        elif kind == "PEM":
            self.ca.cert_pem.write_to_path(str(path))
            return {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(path)}
        elif kind == "PEM-inline":
            return {
                "ssl.truststore.type": "PEM",
                "ssl.truststore.certificates": self.ca.cert_pem.bytes().decode(),
            }
        else:
            raise ValueError(kind)
        return {
            "ssl.truststore.type": kind,
            "ssl.truststore.location": str(path),
            "ssl.truststore.password": PASSWORD,
        }

    def client_files(self, leaf: trustme.LeafCert | None) -> dict[str, str]:
        """Paths a Python client takes: ca, and with a leaf its certificate and key."""
        out = {"ca": str(self.ca_pem())}
        if leaf is not None:
            cert = self.root / "client-cert.pem"
            key = self.root / "client-key.pem"
            cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
            leaf.private_key_pem.write_to_path(str(key))
            out |= {"cert": str(cert), "key": str(key)}
        return out


def make_pki(root: Path) -> Pki:
    root.mkdir(parents=True, exist_ok=True)
    return Pki(trustme.CA(), root)


def pem_property(key: str, pem: str) -> str:
    """`key=<pem>` as Kafka's docs write inline PEM in server.properties: one logical line,
    continued with `\\` at the end of each physical line."""
    lines = [line for line in pem.strip().splitlines() if line.strip()]
    return f"{key}=" + " \\\n".join(lines) + "\n"

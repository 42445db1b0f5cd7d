"""SASL settings of a node's listeners, checked when the config is built: which listeners are
SASL, their mechanisms (`sasl.enabled.mechanisms`, per listener or global), PLAIN users and
inter-broker credentials from `listener.name.<l>.<mechanism>.sasl.jaas.config`, and
`connections.max.reauth.ms`. No network code: `kraft.config` reads it, the SASL gate
(`kraft.security.sasl`) serves what it describes."""

from __future__ import annotations

from dataclasses import dataclass, field

from kraft.config import ConfigError, NodeConfig
from kraft.security.jaas import JaasError, parse_login_module
from kraft.security.scram import MECHANISMS as SCRAM_MECHANISMS

PLAIN = "PLAIN"
SUPPORTED_MECHANISMS = (PLAIN, *SCRAM_MECHANISMS)
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
LOGIN_MODULES = {
    PLAIN: "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
# Kafka's default sasl.enabled.mechanisms; kraft has no Kerberos, so it must be set.
KAFKA_DEFAULT_MECHANISMS = "GSSAPI"


@dataclass(frozen=True, slots=True)
class ListenerSasl:
    """A SASL listener's settings."""

    listener: str
    mechanisms: tuple[str, ...]
    plain_users: dict[str, str] = field(default_factory=dict)
    # The credentials this node presents when it dials this listener (inter-broker).
    client_username: str | None = None
    client_password: str | None = None
    # connections.max.reauth.ms; 0: sessions do not expire.
    reauth_ms: int = 0


# ---------------------------------------------------------------------------- config


def listener_protocols(config: NodeConfig) -> dict[str, str]:
    """Each listener's security protocol (the node's effective map, Kafka's default included)."""
    return {e.listener: config.security_protocol(e.listener) for e in config.listeners}


def _listener_key(config: NodeConfig, listener: str, key: str) -> str | None:
    """`listener.name.<l>.<key>` (listener name in any case, as Kafka lower-cases it), else
    the unprefixed key."""
    prefix = f"listener.name.{listener.lower()}."
    for name, value in config.extra.items():
        if name.lower() == prefix + key:
            return value
    return None


def sasl_listeners(config: NodeConfig) -> dict[str, ListenerSasl]:
    """The settings of each SASL listener; ConfigError naming the key that cannot be served."""
    out = {}
    reauth_raw = config.extra.get("connections.max.reauth.ms", "0").strip() or "0"
    for listener, protocol in listener_protocols(config).items():
        if protocol not in SASL_PROTOCOLS:
            continue
        key = "sasl.enabled.mechanisms"
        raw = _listener_key(config, listener, key)
        if raw is not None:
            key = f"listener.name.{listener.lower()}.{key}"
        else:
            raw = config.extra.get(key, KAFKA_DEFAULT_MECHANISMS)
        mechanisms = tuple(m.strip().upper() for m in raw.split(",") if m.strip())
        unsupported = [m for m in mechanisms if m not in SUPPORTED_MECHANISMS]
        if unsupported or not mechanisms:
            raise ConfigError(
                f"{key}: {', '.join(unsupported) or 'none'} cannot be served on listener "
                f"{listener} (kraft serves {', '.join(SUPPORTED_MECHANISMS)})"
            )
        plain_users: dict[str, str] = {}
        username = password = None
        for mechanism in mechanisms:
            jaas_key = f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"
            jaas = _listener_key(config, listener, f"{mechanism.lower()}.sasl.jaas.config")
            if jaas is None:
                if mechanism == PLAIN:
                    raise ConfigError(f"{jaas_key} is required for PLAIN on listener {listener}")
                continue
            try:
                module = parse_login_module(jaas)
            except JaasError as e:
                raise ConfigError(f"invalid value for {jaas_key}: {e}") from None
            if module.class_name != LOGIN_MODULES[mechanism]:
                raise ConfigError(
                    f"{jaas_key}: login module {module.class_name} is not "
                    f"{LOGIN_MODULES[mechanism]}"
                )
            if mechanism == PLAIN:
                plain_users = {
                    k.removeprefix("user_"): v
                    for k, v in module.options.items()
                    if k.startswith("user_")
                }
            username = module.options.get("username", username)
            password = module.options.get("password", password)
        try:
            reauth_ms = int(reauth_raw)
            if reauth_ms < 0:
                raise ValueError("negative")
        except ValueError:
            raise ConfigError(
                f"invalid value {reauth_raw!r} for connections.max.reauth.ms"
            ) from None
        out[listener] = ListenerSasl(
            listener, mechanisms, plain_users, username, password, reauth_ms
        )
    return out


def check_sasl(config: NodeConfig) -> None:
    """ConfigError for SASL settings kraft cannot serve: each SASL listener's mechanisms and
    JAAS configs, and SASL where this node would have to dial it (inter-broker, controller):
    its own connections do not authenticate yet."""
    listeners = sasl_listeners(config)
    protocols = listener_protocols(config)
    for key in sorted(config.extra):
        listener, sep, rest = key.removeprefix("listener.name.").partition(".")
        if not key.startswith("listener.name.") or not sep or ".sasl." not in f".{rest}":
            continue
        if listener.upper() not in listeners:
            protocol = protocols.get(listener.upper())
            raise ConfigError(
                f"{key}: listener {listener.upper()} is not a SASL listener "
                f"({'its protocol is ' + protocol if protocol else 'no such listener'}), "
                "and its connections would not authenticate"
            )
    dialled = {config.inter_broker_listener_name} if config.is_broker else set()
    dialled |= set(config.controller_listener_names)
    for name in sorted(dialled & listeners.keys()):
        raise ConfigError(
            f"listener {name} is SASL, and this node's own connections to it (inter-broker "
            "or controller) do not authenticate with SASL yet: give it PLAINTEXT"
        )

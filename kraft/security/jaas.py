"""Kafka's `sasl.jaas.config` values (JAAS login module syntax, as Kafka's JaasConfig reads
them): `<LoginModule class> <flag> key=value ... ;` where a value is a bare word or a quoted
string (double or single quotes, backslash escapes a character). A listener's config names
exactly one login module, as Kafka requires."""

from __future__ import annotations

from dataclasses import dataclass, field

FLAGS = ("required", "requisite", "sufficient", "optional")


class JaasError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class LoginModule:
    class_name: str
    flag: str
    options: dict[str, str] = field(default_factory=dict)


def _tokens(text: str) -> list[tuple[str, bool]]:
    """(token, quoted) pairs; `=` and `;` are tokens of their own."""
    out: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "=;":
            out.append((c, False))
            i += 1
        elif c in "\"'":
            quote, i, chars = c, i + 1, []
            while True:
                if i >= n:
                    raise JaasError("unterminated quoted value")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                elif c == quote:
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            out.append(("".join(chars), True))
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in "=;\"'":
                i += 1
            out.append((text[start:i], False))
    return out


def parse_jaas_config(text: str) -> list[LoginModule]:
    """Every login module of a JAAS config value; JaasError says what is wrong."""
    tokens = _tokens(text)
    modules: list[LoginModule] = []
    i = 0

    def take(what: str) -> tuple[str, bool]:
        nonlocal i
        if i >= len(tokens):
            raise JaasError(f"expected {what} at the end of the value")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        class_name, quoted = take("a login module class")
        if quoted or class_name in ("=", ";"):
            raise JaasError(f"expected a login module class, found {class_name!r}")
        flag, _ = take("a control flag")
        if flag.lower() not in FLAGS:
            raise JaasError(f"invalid control flag {flag!r} (one of {', '.join(FLAGS)})")
        options: dict[str, str] = {}
        while True:
            key, quoted = take("an option or ';'")
            if key == ";" and not quoted:
                break
            if quoted or key == "=":
                raise JaasError(f"expected an option name, found {key!r}")
            eq, eq_quoted = take("'='")
            if eq != "=" or eq_quoted:
                raise JaasError(f"expected '=' after {key}, found {eq!r}")
            value, value_quoted = take(f"a value for {key}")
            if not value_quoted and value in ("=", ";"):
                raise JaasError(f"expected a value for {key}, found {value!r}")
            options[key] = value
        modules.append(LoginModule(class_name, flag.lower(), options))
    if not modules:
        raise JaasError("no login module")
    return modules


def parse_login_module(text: str) -> LoginModule:
    """The one login module a listener's `sasl.jaas.config` must name."""
    modules = parse_jaas_config(text)
    if len(modules) != 1:
        raise JaasError(f"expected one login module, found {len(modules)}")
    return modules[0]

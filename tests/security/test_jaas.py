"""Kafka's sasl.jaas.config syntax (JAAS login modules), as PlainLoginModule configs have it."""

from __future__ import annotations

import pytest

from kraft.security.jaas import JaasError, parse_jaas_config, parse_login_module

PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


def test_kafka_docs_plain_config() -> None:
    module = parse_login_module(
        f'{PLAIN} required \\\n    username="admin" \\\n    password="admin-secret" \\\n'
        '    user_admin="admin-secret" \\\n    user_alice="alice-secret";'.replace("\\\n", "\n")
    )
    assert module.class_name == PLAIN
    assert module.flag == "required"
    assert module.options == {
        "username": "admin",
        "password": "admin-secret",
        "user_admin": "admin-secret",
        "user_alice": "alice-secret",
    }


def test_quoting_and_escapes() -> None:
    module = parse_login_module(
        f'{PLAIN} REQUIRED a=bare b=\'single "q"\' c="semi;colon = eq" d="esc\\"aped\\\\" e="";'
    )
    assert module.flag == "required"
    assert module.options == {
        "a": "bare",
        "b": 'single "q"',
        "c": "semi;colon = eq",
        "d": 'esc"aped\\',
        "e": "",
    }


def test_several_modules() -> None:
    modules = parse_jaas_config(f"{PLAIN} required a=1; x.Other optional;")
    assert [m.class_name for m in modules] == [PLAIN, "x.Other"]
    with pytest.raises(JaasError, match="one login module"):
        parse_login_module(f"{PLAIN} required a=1; x.Other optional;")


@pytest.mark.parametrize(
    "text, error",
    [
        ("", "no login module"),
        (f"{PLAIN} required a=1", "';'"),
        (f"{PLAIN} mandatory a=1;", "control flag"),
        (f'{PLAIN} required a="open;', "unterminated"),
        (f"{PLAIN} required a 1;", "'='"),
        (f"{PLAIN} required a=;", "value"),
        (f"{PLAIN} required =1;", "option name"),
        ('"quoted.Class" required;', "login module class"),
    ],
)
def test_malformed(text: str, error: str) -> None:
    with pytest.raises(JaasError, match=error):
        parse_jaas_config(text)

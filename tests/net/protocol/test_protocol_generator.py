"""The generated module is current, deterministic, and the generator's helpers behave."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kraft.net.protocol import generator, schema

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFS = generator.default_defs_dir()
needs_defs = pytest.mark.skipif(
    not (DEFS / "message").is_dir(),
    reason=f"Kafka protocol definitions not found at {DEFS} (set KRAFT_PROTOCOL_DEFS)",
)


@needs_defs
def test_generated_module_is_current() -> None:
    assert generator.main(["--check"]) == 0, "run: python -m kraft.net.protocol.generator"


@needs_defs
def test_check_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kraft.net.protocol.generator", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@needs_defs
def test_generation_is_deterministic() -> None:
    assert generator.generate(DEFS) == generator.generate(DEFS) == generator.OUTPUT.read_text()


@needs_defs
def test_check_reports_stale_output(tmp_path: Path) -> None:
    stale = tmp_path / "_generated.py"
    stale.write_text("# stale\n")
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert generator.main(["--output", str(stale)]) == 0
    assert generator.main(["--check", "--output", str(stale)]) == 0


def test_missing_definitions_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(generator.DEFS_ENV, str(tmp_path / "nowhere"))
    assert generator.default_defs_dir() == tmp_path / "nowhere"
    assert generator.main(["--check"]) == 2


def test_strip_comments_keeps_slashes_inside_strings() -> None:
    text = '// header\n{ "about": "see http://x // y", // trailing\n  "a": 1 }\n'
    assert generator.strip_comments(text).split() == [
        "{",
        '"about":',
        '"see',
        "http://x",
        "//",
        'y",',
        '"a":',
        "1",
        "}",
    ]


@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [("0+", 0, None), ("3-5", 3, 5), ("7", 7, 7)],
)
def test_parse_versions(text: str, lo: int, hi: int | None) -> None:
    assert generator.parse_versions(text) == generator.Versions(lo, hi)


def test_parse_versions_none_and_garbage() -> None:
    assert generator.parse_versions("none") is None
    with pytest.raises(generator.DefinitionError):
        generator.parse_versions("5-3")
    with pytest.raises(generator.DefinitionError):
        generator.parse_versions("x")


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("TransactionalId", "transactional_id"),
        ("ThrottleTimeMs", "throttle_time_ms"),
        ("KRaftVersion", "kraft_version"),
        ("isKRaftController", "is_kraft_controller"),
        ("ZkMigrationReady", "zk_migration_ready"),
        ("IsrNodes", "isr_nodes"),
    ],
)
def test_snake_case(name: str, snake: str) -> None:
    assert generator.snake_case(name) == snake


def test_generator_primitive_types_match_the_schema() -> None:
    # The generator keeps its own copy so that it never imports the package it regenerates.
    assert generator.PRIMITIVE_TYPES == set(schema.PRIMITIVE_TYPES)

"""The node process's allocator settings reach glibc (run in a child: they are process-wide)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


def _call(args: str) -> str:
    code = f"from kraft.allocator import keep_freed_memory; print(keep_freed_memory({args}))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def test_glibc_takes_the_thresholds() -> None:
    assert _call("") == "True"

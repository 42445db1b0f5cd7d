"""`kraft chaos list|run|campaign` arguments, in-process (no run starts): the list names every
scenario, and bad input is a usage error (exit code 2) before any cluster is started."""

from __future__ import annotations

import pytest

from kraft.chaos.scenarios import SCENARIOS
from kraft.cli import main


def test_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(SCENARIOS)
    assert {"isolate-leader", "split", "one-way", "bridge", "kill-all"} <= set(listed)


@pytest.mark.parametrize(
    "argv",
    [
        ["chaos", "run", "--scenario", "no-such", "--seed", "1", "--duration", "5"],
        ["chaos", "run", "--scenario", "none", "--duration", "0"],
        ["chaos", "campaign", "--runs", "3", "--scenarios", "none", "no-such"],
        ["chaos", "campaign", "--runs", "0"],
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "kraft:" in capsys.readouterr().err

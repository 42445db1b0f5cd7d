"""The Raft links over TLS (the controller listener's contexts): three voters in one process
elect and commit over mTLS; a voter whose certificate the others do not trust stays out."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from kraft.quorum import Quorum
from kraft.quorum.transport import LinkTls
from kraft.security.tls import client_context, server_context, ssl_settings
from tests.wait import wait_until_async

from .certs import Pki, make_pki

SECRET = b"raft tls test secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def link_tls(pki: Pki, trusted: Pki, name: str) -> LinkTls:
    """A voter's contexts: its certificate from `pki`, trusting `trusted`'s CA, mTLS."""
    props = {
        **pki.keystore(pki.leaf(name), "PEM", name),
        **trusted.truststore("PEM"),
        "ssl.client.auth": "required",
    }
    settings = ssl_settings(props, "CONTROLLER")
    return LinkTls(server_context(settings), client_context(settings))


class Voter:
    def __init__(self, node_id: int, voters: dict[int, tuple[str, int]], root: Path, tls: Any):
        self.commits: list[bytes] = []
        self.quorum = Quorum(
            node_id,
            voters,
            str(root / f"node-{node_id}"),
            SECRET,
            on_commit=lambda index, entry: self.commits.append(entry),
            tls=tls,
        )


async def test_voters_elect_and_commit_over_mtls_and_an_untrusted_one_stays_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kraft.quorum.transport")
    pki = make_pki(tmp_path / "pki")
    stranger = make_pki(tmp_path / "stranger")
    voters = {i: ("127.0.0.1", free_port()) for i in (1, 2, 3)}
    members = {
        1: Voter(1, voters, tmp_path, link_tls(pki, pki, "v1")),
        2: Voter(2, voters, tmp_path, link_tls(pki, pki, "v2")),
        # Its own certificate is from another CA (it trusts the cluster's).
        3: Voter(3, voters, tmp_path, link_tls(stranger, pki, "v3")),
    }
    started: list[Voter] = []
    try:
        for member in members.values():
            await member.quorum.start()
            started.append(member)
        await wait_until_async(
            lambda: any(members[i].quorum.is_leader for i in (1, 2)), "a leader among 1 and 2", 15
        )
        leader = next(members[i] for i in (1, 2) if members[i].quorum.is_leader)
        for i in range(20):
            await leader.quorum.append(b"entry-%d" % i)
        expected = [b"entry-%d" % i for i in range(20)]
        await wait_until_async(
            lambda: members[1].commits == members[2].commits == expected, "both commit", 10
        )
        assert members[3].commits == []
        assert not members[3].quorum.is_leader
        assert "closing raft link" in caplog.text and "TLS" in caplog.text
    finally:
        for member in started:
            await member.quorum.stop()

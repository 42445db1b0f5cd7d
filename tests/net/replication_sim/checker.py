"""The checker: the invariants asserted after every event, and at the end."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kraft.log.batch import CRC_START, parse_header
from kraft.log.partition_log import PartitionLog
from kraft.net.broker.partition import Partition
from tests.net.replication_sim.model import (
    BROKERS,
    INDEX,
    TOPIC,
)

if TYPE_CHECKING:
    from tests.net.replication_sim.brokers import SimBroker
    from tests.net.replication_sim.world import Sim


def batches(log: PartitionLog, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """(base offset, last offset, bytes) of the whole batches of `log` in [start, end)."""
    out: list[tuple[int, int, bytes]] = []
    offset = max(start, log.log_start_offset)
    while offset < end:
        got = log.read(offset, 1 << 20, end)
        view = got.records
        if not len(view):
            break
        pos = 0
        while pos < len(view):
            header = parse_header(view, pos)
            out.append(
                (header.base_offset, header.last_offset, bytes(view[pos : pos + header.size]))
            )
            pos += header.size
        offset = got.next_offset
    return out


@dataclass(slots=True)
class Verified:
    life: int
    offset: int  # every batch below this was checked against the committed ones
    log_end_offset: int


@dataclass(slots=True)
class Committed:
    last_offset: int
    data: bytes
    step: int


@dataclass(slots=True)
class Checker:
    sim: Sim
    committed: dict[int, Committed] = field(default_factory=dict)  # base offset → batch
    owner: dict[int, int] = field(default_factory=dict)  # offset → base of its batch
    leader_hw: dict[tuple[int, int, int], int] = field(default_factory=dict)
    verified: dict[int, Verified] = field(default_factory=dict)
    # (base offset, broker, the batch as the producer sent it)
    acked: list[tuple[int, int, bytes]] = field(default_factory=list)
    acks_checked: int = 0
    max_hw: int = 0
    final_digest: str = ""

    def forget(self, broker_id: int) -> None:
        self.verified.pop(broker_id, None)

    def acknowledged(self, broker_id: int, base_offset: int, records: bytes) -> None:
        self.acked.append((base_offset, broker_id, records))

    def check(self) -> None:
        sim = self.sim
        # Leaders first: their logs below the high watermark define the committed batches.
        live = [(b, b.partition) for b in sim.brokers.values() if b.alive]
        hosted = [(b, p) for b, p in live if p is not None]
        for broker, p in sorted(hosted, key=lambda bp: not bp[1].is_leader):
            hw = p.high_watermark
            if p.is_leader:
                key = (broker.id, broker.life, p.leader_epoch)
                before = self.leader_hw.get(key, -1)
                if hw < before:
                    raise sim.failure(
                        f"broker {broker.id}, leader at epoch {p.leader_epoch}, moved its high "
                        f"watermark back from {before} to {hw}"
                    )
                self.leader_hw[key] = hw
                self.max_hw = max(self.max_hw, hw)
            self._verify(broker, p, leader=p.is_leader)
        while self.acks_checked < len(self.acked):
            base, broker_id, sent = self.acked[self.acks_checked]
            self.acks_checked += 1
            known = self.committed.get(base)
            if known is None:
                raise sim.failure(
                    f"broker {broker_id} acknowledged the batch at {base}, which no leader's "
                    "high watermark covers"
                )
            if not same_batch(known.data, sent):
                raise sim.failure(
                    f"broker {broker_id} acknowledged a batch at {base}, but another batch is "
                    "committed there"
                )

    def _verify(self, broker: SimBroker, p: Partition, leader: bool) -> None:
        log = p.log
        leo = log.log_end_offset
        state = self.verified.get(broker.id)
        if state is None or state.life != broker.life:
            state = Verified(broker.life, log.log_start_offset, leo)
            self.verified[broker.id] = state
        if leo < state.log_end_offset:
            state.offset = min(state.offset, leo)  # truncated: what is left was checked
        state.offset = max(state.offset, log.log_start_offset)
        state.log_end_offset = leo
        hw = log.high_watermark
        if state.offset >= hw:
            return
        for base, last, data in batches(log, state.offset, hw):
            known = self.committed.get(base)
            if known is None:
                if not leader:
                    raise self.sim.failure(
                        f"broker {broker.id} holds a batch at {base}-{last} below its high "
                        f"watermark {hw} that no leader committed"
                    )
                for offset in range(base, last + 1):
                    other = self.owner.get(offset)
                    if other is not None:
                        raise self.sim.failure(
                            f"leader {broker.id} commits a batch at {base}-{last} over the "
                            f"committed batch at {other}"
                        )
                    self.owner[offset] = base
                self.committed[base] = Committed(last, data, self.sim.step)
            elif known.data != data or known.last_offset != last:
                raise self.sim.failure(
                    f"offset {base} holds two different batches: committed at step "
                    f"{known.step} ({known.last_offset - base + 1} records, "
                    f"{_describe(known.data)}) and now on broker {broker.id} "
                    f"({'leader' if leader else 'follower'}, hw {hw}: "
                    f"{last - base + 1} records, {_describe(data)})"
                )
            state.offset = last + 1

    # ---------------------------------------------------------------- end

    def converged(self) -> str | None:
        """None once the cluster is whole again, else what is still missing."""
        sim = self.sim
        state = sim.controller.image.partition(TOPIC, INDEX)
        if state is None:
            return "the topic was never created"
        if sorted(state.isr) != sorted(BROKERS):
            return f"the controller's ISR is {state.isr}"
        if state.leader not in sim.brokers:
            return "no leader"
        for b in sim.brokers.values():
            reg = sim.controller.image.brokers.get(b.id)
            if reg is None or reg.fenced:
                return f"broker {b.id} is fenced"
        leader = sim.brokers[state.leader].partition
        if leader is None or not leader.is_leader or leader.leader_epoch != state.leader_epoch:
            return f"broker {state.leader} does not lead epoch {state.leader_epoch} yet"
        if sorted(leader.isr) != sorted(BROKERS):
            return f"the leader's ISR is {leader.isr}"
        leo = leader.log.log_end_offset
        if leader.high_watermark != leo:
            return f"the leader's high watermark {leader.high_watermark} is below its end {leo}"
        for b in sim.brokers.values():
            p = b.partition
            if p is None or p.log.log_end_offset != leo:
                return f"broker {b.id} has not caught up to {leo}"
        return None

    def final_check(self) -> None:
        sim = self.sim
        state = sim.controller.image.partition(TOPIC, INDEX)
        assert state is not None
        leader = sim.brokers[state.leader].partition
        assert leader is not None
        hw = leader.high_watermark
        reference = batches(leader.log, leader.log.log_start_offset, hw)
        self.final_digest = hashlib.sha256(b"".join(data for _, _, data in reference)).hexdigest()
        by_base = {base: data for base, _, data in reference}
        for base, known in self.committed.items():
            if by_base.get(base) != known.data:
                raise sim.failure(f"the committed batch at {base} is not in the final log")
        for b in sim.brokers.values():
            p = b.partition
            assert p is not None
            mine = batches(p.log, p.log.log_start_offset, p.log.log_end_offset)
            if mine != reference:
                first = next(
                    (x[0] for x, y in zip(mine, reference, strict=False) if x != y),
                    min(len(mine), len(reference)),
                )
                raise sim.failure(
                    f"after healing broker {b.id}'s log differs from the leader's "
                    f"(broker {state.leader}) at or after offset {first}"
                )
        for base, broker_id, sent in self.acked:
            if not same_batch(by_base.get(base, b""), sent):
                raise sim.failure(f"the batch acknowledged by broker {broker_id} at {base} is lost")


def same_batch(stored: bytes, sent: bytes) -> bool:
    """Whether `stored` is the producer's batch `sent`: the leader rewrites only the base
    offset and partitionLeaderEpoch, which precede the CRC."""
    return len(stored) == len(sent) and stored[CRC_START - 4 :] == sent[CRC_START - 4 :]


def _describe(data: bytes) -> str:
    header = parse_header(data)
    return f"epoch {header.partition_leader_epoch}, crc {header.crc:#x}"

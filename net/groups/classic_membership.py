"""The classic group protocol: JoinGroup, SyncGroup, Heartbeat and LeaveGroup.

`ClassicGroupMembership` is that half of the classic `GroupCoordinator` (a mixin; the
coordinator provides the groups, their ownership and loading, and the group record's write):

- JoinGroup: new members (KIP-394's MEMBER_ID_REQUIRED round trip for dynamic members),
  rejoining members, static members taking over their previous incarnation (KIP-345), the
  group.max.size rule, group.initial.rebalance.delay.ms for the first rebalance of an empty
  group, and completing the join when every member rejoined or the rebalance timeout passed;
- SyncGroup: the leader's assignment stored as the group's record, then handed to every
  member (the answers wait for the write);
- Heartbeat and the session timeout; LeaveGroup.

State changes in memory as requests arrive (as in Kafka); what must survive a coordinator
change is written through `_store_group`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from kraft.net.groups.records import OFFSETS_TOPIC
from kraft.net.groups.state import (
    ClassicGroup,
    GroupState,
    JoinCallback,
    JoinRequest,
    JoinResult,
    LeavingMember,
    Member,
    SyncCallback,
    SyncRequest,
    SyncResult,
)
from kraft.net.protocol import ErrorCode

if TYPE_CHECKING:
    from kraft.net.groups.common import Clock, GroupConfig
    from kraft.net.groups.timer import Timer

logger = logging.getLogger(__name__)


class ClassicGroupMembership:
    """JoinGroup, SyncGroup, Heartbeat and LeaveGroup of classic groups: the member protocol
    half of `GroupCoordinator`, which provides the state and hooks below."""

    config: GroupConfig
    clock: Clock
    timer: Timer
    new_id: Callable[[], str]
    tag: str
    groups: dict[str, ClassicGroup]

    def check_group(self, group_id: str, require_id: bool = True) -> int:
        raise NotImplementedError

    def partition_of(self, group_id: str) -> int:
        raise NotImplementedError

    def _maybe_forget(self, group: ClassicGroup) -> None:
        raise NotImplementedError

    def _store_group(
        self, group: ClassicGroup, assignment: dict[str, bytes], done: Callable[[int], None]
    ) -> None:
        raise NotImplementedError

    # ================================================================== JoinGroup

    def join_group(self, req: JoinRequest, respond: JoinCallback) -> None:
        error = self.check_group(req.group_id)
        if not error and not (
            self.config.min_session_timeout_ms
            <= req.session_timeout_ms
            <= self.config.max_session_timeout_ms
        ):
            error = ErrorCode.INVALID_SESSION_TIMEOUT
        if error:
            respond(JoinResult(error, req.member_id))
            return
        unknown = req.member_id == ""
        group = self.groups.get(req.group_id)
        if group is None:
            if not unknown:
                respond(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, req.member_id))
                return
            group = self.groups[req.group_id] = ClassicGroup(
                req.group_id, self.partition_of(req.group_id), self.clock()
            )
        if group.state is GroupState.DEAD:
            # Being deleted or unloaded: the client looks the coordinator up again.
            respond(JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, req.member_id))
            return
        names = [name for name, _ in req.protocols]
        if not group.supports_protocols(req.protocol_type, names):
            respond(JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id))
            self._maybe_forget(group)
            return
        if not self._accept_joining_member(group, req.member_id):
            member = group.members.get(req.member_id)
            if member is not None:
                self._remove_member_and_update_group(group, member, "group is full")
            respond(JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, ""))
            self._maybe_forget(group)
            return
        if unknown:
            self._join_new_member(group, req, respond)
        else:
            self._join_current_member(group, req, respond)
        if group.state is GroupState.PREPARING_REBALANCE:
            self._try_complete_join(group)

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        """Kafka's group.max.size rule: known members always; new ones while the group (or,
        during a rebalance, the number of members already rejoined) is below the limit."""
        state = group.state
        if state in (GroupState.EMPTY, GroupState.DEAD):
            return True
        member = group.members.get(member_id)
        if state is GroupState.PREPARING_REBALANCE:
            return (
                member is not None and member.awaiting_join is not None
            ) or group.awaiting_join_count < self.config.max_size
        return member is not None or len(group.members) < self.config.max_size

    def _join_new_member(
        self, group: ClassicGroup, req: JoinRequest, respond: JoinCallback
    ) -> None:
        if req.group_instance_id is not None:
            new_id = f"{req.group_instance_id}-{self.new_id()}"
            old_id = group.static_members.get(req.group_instance_id)
            if old_id is None:
                self._add_member_and_rebalance(group, req, new_id, respond)
            else:
                logger.info(
                    "%sgroup %s: static member %s rejoins; member %s replaces %s",
                    self.tag,
                    group.group_id,
                    req.group_instance_id,
                    new_id,
                    old_id,
                )
                self._update_static_member_and_rebalance(group, old_id, new_id, req, respond)
            return
        member_id = f"{req.client_id}-{self.new_id()}"
        if req.require_known_member_id:
            # KIP-394: hand out the id and make the client join again with it, so a client
            # that never gets this response leaves no member behind.
            group.pending_members.add(member_id)
            self._schedule_heartbeat(group, member_id, req.session_timeout_ms)
            respond(JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id))
            return
        self._add_member_and_rebalance(group, req, member_id, respond)

    def _join_current_member(
        self, group: ClassicGroup, req: JoinRequest, respond: JoinCallback
    ) -> None:
        member_id = req.member_id
        if member_id in group.pending_members:
            self._add_member_and_rebalance(group, req, member_id, respond)
            return
        if group.is_static_member_fenced(req.group_instance_id, member_id):
            respond(JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id))
            return
        member = group.members.get(member_id)
        if member is None or (
            req.group_instance_id is not None and req.group_instance_id not in group.static_members
        ):
            respond(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
            return
        state = group.state
        if state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(
                group, member, req, respond, f"member {member_id} joins during the rebalance"
            )
        elif state is GroupState.COMPLETING_REBALANCE:
            if member.matches(req.protocols):
                # The same metadata again (it missed the first response): this generation.
                respond(self._join_result(group, member, with_members=group.leader_id == member_id))
            else:
                self._update_member_and_rebalance(
                    group, member, req, respond, f"member {member_id} changed its metadata"
                )
        elif state is GroupState.STABLE:
            if group.leader_id == member_id:
                # The leader rejoins to force a rebalance (e.g. topic metadata changed).
                self._update_member_and_rebalance(
                    group, member, req, respond, f"leader {member_id} rejoins"
                )
            elif not member.matches(req.protocols):
                self._update_member_and_rebalance(
                    group, member, req, respond, f"member {member_id} changed its metadata"
                )
            else:
                respond(self._join_result(group, member, with_members=False))
        else:
            respond(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _join_result(
        self, group: ClassicGroup, member: Member, with_members: bool, leader: str | None = None
    ) -> JoinResult:
        return JoinResult(
            ErrorCode.NONE,
            member.member_id,
            group.generation_id,
            group.protocol_type,
            group.protocol_name,
            (leader if leader is not None else group.leader_id) or "",
            group.current_member_metadata() if with_members else [],
        )

    def _add_member_and_rebalance(
        self, group: ClassicGroup, req: JoinRequest, member_id: str, respond: JoinCallback
    ) -> None:
        member = Member(
            member_id,
            req.group_instance_id,
            req.client_id,
            req.client_host,
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            req.protocol_type,
            list(req.protocols),
            is_new=True,
            supports_skip_assignment=req.supports_skip_assignment,
        )
        if group.state is GroupState.PREPARING_REBALANCE and group.generation_id == 0:
            group.new_member_added = True
        group.add(member, respond)
        # A new member cannot heartbeat while its JoinGroup waits; if its client gave up and
        # rejoined under another id, this removes the leftover.
        self._schedule_heartbeat(group, member_id, self.config.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance(group, f"member {member_id} joins")

    def _update_member_and_rebalance(
        self,
        group: ClassicGroup,
        member: Member,
        req: JoinRequest,
        respond: JoinCallback,
        reason: str,
    ) -> None:
        # A JoinGroup the client gave up on is answered before the new one replaces it.
        member.invoke_join(JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        member.protocols = list(req.protocols)
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.session_timeout_ms = req.session_timeout_ms
        member.supports_skip_assignment = req.supports_skip_assignment
        member.awaiting_join = respond
        self._maybe_prepare_rebalance(group, reason)

    def _update_static_member_and_rebalance(
        self,
        group: ClassicGroup,
        old_id: str,
        new_id: str,
        req: JoinRequest,
        respond: JoinCallback,
    ) -> None:
        assert req.group_instance_id is not None
        instance_id = req.group_instance_id
        previous_leader = group.leader_id
        self.timer.cancel(("heartbeat", group.group_id, old_id))
        member = group.replace_static_member(instance_id, old_id, new_id)
        self._schedule_heartbeat(group, new_id, req.session_timeout_ms)
        old = (member.protocols, member.rebalance_timeout_ms, member.session_timeout_ms)
        member.protocols = list(req.protocols)
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.session_timeout_ms = req.session_timeout_ms
        member.supports_skip_assignment = req.supports_skip_assignment
        member.awaiting_join = respond
        state = group.state
        if state is GroupState.STABLE:
            if group.protocol_name != group.select_protocol():
                self._maybe_prepare_rebalance(
                    group, f"static member {instance_id} rejoins with other protocols"
                )
                return
            # Same protocols: no rebalance. Store the new member id, then give the member
            # this generation. Below JoinGroup v9 it is told the old leader id, so a
            # rejoining leader does not assign (a stable group would not relay it).
            assignment = {m.member_id: m.assignment for m in group.members.values()}
            generation = group.generation_id

            def stored(error: int) -> None:
                if group.state is GroupState.DEAD or group.members.get(new_id) is not member:
                    return
                if error:
                    member.awaiting_join = None
                    group.replace_static_member(instance_id, new_id, old_id)
                    member.protocols, member.rebalance_timeout_ms, member.session_timeout_ms = old
                    self.timer.cancel(("heartbeat", group.group_id, new_id))
                    self._schedule_heartbeat(group, old_id, member.session_timeout_ms)
                    respond(JoinResult(error, ""))
                    return
                if generation != group.generation_id:
                    return  # a rebalance started meanwhile: the join completes with it
                skip = member.supports_skip_assignment and group.leader_id == new_id
                result = self._join_result(
                    group,
                    member,
                    with_members=skip,
                    leader=group.leader_id if member.supports_skip_assignment else previous_leader,
                )
                result.skip_assignment = skip
                member.invoke_join(result)

            self._store_group(group, assignment, stored)
        elif state is GroupState.COMPLETING_REBALANCE:
            # The leader may already be assigning with the old member id: start over.
            self._prepare_rebalance(group, f"static member {instance_id} rejoins mid-rebalance")
        # PreparingRebalance: the join completes with the rebalance.

    # ------------------------------------------------------------- rebalancing

    def _maybe_prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            self._reset_and_propagate_assignment_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        self.timer.cancel(("sync", group.group_id))
        group.pending_sync_members.clear()
        was_empty = group.state is GroupState.EMPTY
        group.transition_to(GroupState.PREPARING_REBALANCE, self.clock())
        logger.info(
            "%sgroup %s: preparing to rebalance, generation %d (%s-%d): %s",
            self.tag,
            group.group_id,
            group.generation_id,
            OFFSETS_TOPIC,
            group.partition,
            reason,
        )
        if was_empty:
            delay = self.config.initial_rebalance_delay_ms
            group.initial_delay_active = True
            group.new_member_added = False
            group.initial_delay_remaining_ms = max(group.rebalance_timeout_ms - delay, 0)
            self._schedule_join(group, delay, initial=True)
        else:
            group.initial_delay_active = False
            self._schedule_join(group, group.rebalance_timeout_ms, initial=False)
            self._try_complete_join(group)

    def _schedule_join(self, group: ClassicGroup, delay_ms: int, initial: bool) -> None:
        def expired() -> None:
            if self.groups.get(group.group_id) is not group:
                return
            if group.state is not GroupState.PREPARING_REBALANCE:
                return
            if initial and group.new_member_added and group.initial_delay_remaining_ms > 0:
                # Members keep arriving: wait another delay, within the rebalance timeout.
                group.new_member_added = False
                delay = min(
                    self.config.initial_rebalance_delay_ms, group.initial_delay_remaining_ms
                )
                group.initial_delay_remaining_ms = max(group.initial_delay_remaining_ms - delay, 0)
                self._schedule_join(group, delay, initial=True)
                return
            group.initial_delay_active = False
            self._complete_join(group)

        self.timer.schedule(("join", group.group_id), delay_ms, expired)

    def _try_complete_join(self, group: ClassicGroup) -> None:
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and not group.initial_delay_active
            and group.has_all_members_joined()
        ):
            self._complete_join(group)

    def _complete_join(self, group: ClassicGroup) -> None:
        """The join phase ends (everyone rejoined, or the rebalance timeout): dynamic members
        that did not rejoin are removed, the next generation starts."""
        self.timer.cancel(("join", group.group_id))
        if group.state is not GroupState.PREPARING_REBALANCE:
            return
        for member in group.not_yet_rejoined():
            if member.group_instance_id is None:
                logger.info(
                    "%sgroup %s: member %s did not rejoin in time; removed",
                    self.tag,
                    group.group_id,
                    member.member_id,
                )
                self.timer.cancel(("heartbeat", group.group_id, member.member_id))
                member.invoke_sync(SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
                group.remove(member.member_id)
        for pending in list(group.pending_members):
            self.timer.cancel(("heartbeat", group.group_id, pending))
        group.pending_members.clear()
        if group.members and not group.maybe_elect_new_joined_leader():
            # Only static members that have not rejoined are left: wait for them (or for
            # their session timeouts) one more rebalance timeout.
            logger.warning(
                "%sgroup %s: no member rejoined; waiting another rebalance timeout",
                self.tag,
                group.group_id,
            )
            self._schedule_join(group, group.rebalance_timeout_ms, initial=False)
            return
        group.init_next_generation(self.clock())
        if group.state is GroupState.EMPTY:
            logger.info(
                "%sgroup %s: empty at generation %d", self.tag, group.group_id, group.generation_id
            )
            self._store_group(group, {}, lambda error: None)
            return
        logger.info(
            "%sgroup %s: generation %d with %d members, protocol %s, leader %s",
            self.tag,
            group.group_id,
            group.generation_id,
            len(group.members),
            group.protocol_name,
            group.leader_id,
        )
        for member in list(group.members.values()):
            member.invoke_join(
                self._join_result(group, member, with_members=group.leader_id == member.member_id)
            )
            self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms)
            member.is_new = False
        # Members that do not send SyncGroup within the rebalance timeout are removed.
        group.pending_sync_members = set(group.members)
        generation = group.generation_id
        self.timer.schedule(
            ("sync", group.group_id),
            group.rebalance_timeout_ms,
            lambda: self._sync_expired(group, generation),
        )

    def _sync_expired(self, group: ClassicGroup, generation: int) -> None:
        if self.groups.get(group.group_id) is not group or generation != group.generation_id:
            return
        if group.state not in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return
        if not group.pending_sync_members:
            return
        missing = sorted(group.pending_sync_members)
        for member_id in missing:
            self.timer.cancel(("heartbeat", group.group_id, member_id))
            group.remove(member_id)
        self._prepare_rebalance(group, f"members {missing} sent no SyncGroup in time")

    # ================================================================== SyncGroup

    def sync_group(self, req: SyncRequest, respond: SyncCallback) -> None:
        error = self.check_group(req.group_id)
        if error:
            respond(SyncResult(error))
            return
        group = self.groups.get(req.group_id)
        member = group.members.get(req.member_id) if group is not None else None
        if group is None:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif group.state is GroupState.DEAD:
            error = ErrorCode.COORDINATOR_NOT_AVAILABLE
        elif group.is_static_member_fenced(req.group_instance_id, req.member_id):
            error = ErrorCode.FENCED_INSTANCE_ID
        elif member is None:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif req.generation_id != group.generation_id:
            error = ErrorCode.ILLEGAL_GENERATION
        elif (req.protocol_type is not None and req.protocol_type != group.protocol_type) or (
            req.protocol_name is not None and req.protocol_name != group.protocol_name
        ):
            error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        elif group.state is GroupState.EMPTY:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif group.state is GroupState.PREPARING_REBALANCE:
            error = ErrorCode.REBALANCE_IN_PROGRESS
        if error or group is None or member is None:
            respond(SyncResult(error))
            return
        if group.state is GroupState.STABLE:
            group.pending_sync_members.discard(member.member_id)
            respond(
                SyncResult(
                    ErrorCode.NONE, group.protocol_type, group.protocol_name, member.assignment
                )
            )
            self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms)
            return
        # CompletingRebalance: wait for the leader's assignment.
        member.invoke_sync(SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.awaiting_sync = respond
        group.pending_sync_members.discard(member.member_id)
        if not group.pending_sync_members:
            self.timer.cancel(("sync", group.group_id))
        if group.leader_id != member.member_id:
            return
        assignment = {m: req.assignments.get(m, b"") for m in group.members}
        missing = [m for m in group.members if m not in req.assignments]
        if missing:
            logger.warning(
                "%sgroup %s: the leader's assignment leaves out %s; they get none",
                self.tag,
                group.group_id,
                missing,
            )
        generation = group.generation_id

        def stored(error: int) -> None:
            # Another member may have joined (or the group been unloaded) meanwhile.
            if group.state is not GroupState.COMPLETING_REBALANCE:
                return
            if generation != group.generation_id:
                return
            if error:
                self._reset_and_propagate_assignment_error(group, error)
                self._maybe_prepare_rebalance(group, "storing the group assignment failed")
                return
            for m in group.members.values():
                m.assignment = assignment.get(m.member_id, b"")
            self._propagate_assignment(group, ErrorCode.NONE)
            group.transition_to(GroupState.STABLE, self.clock())
            logger.info(
                "%sgroup %s: stable at generation %d",
                self.tag,
                group.group_id,
                group.generation_id,
            )

        self._store_group(group, assignment, stored)

    def _propagate_assignment(self, group: ClassicGroup, error: int) -> None:
        for m in group.members.values():
            m.invoke_sync(
                SyncResult(
                    error,
                    group.protocol_type,
                    group.protocol_name,
                    m.assignment if not error else b"",
                )
            )
            # A member's session may have run out while its SyncGroup waited (expiry skips
            # members with pending requests): start it afresh.
            self._schedule_heartbeat(group, m.member_id, m.session_timeout_ms)

    def _reset_and_propagate_assignment_error(self, group: ClassicGroup, error: int) -> None:
        for m in group.members.values():
            m.assignment = b""
        self._propagate_assignment(group, error)

    # ================================================================== Heartbeat

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> int:
        error = self.check_group(group_id)
        if error:
            return error
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if group.is_static_member_fenced(group_instance_id, member_id):
            return ErrorCode.FENCED_INSTANCE_ID
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.state is GroupState.EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._schedule_heartbeat(group, member_id, member.session_timeout_ms)
        if group.state is GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def _schedule_heartbeat(self, group: ClassicGroup, member_id: str, timeout_ms: int) -> None:
        self.timer.schedule(
            ("heartbeat", group.group_id, member_id),
            timeout_ms,
            lambda: self._heartbeat_expired(group, member_id),
        )

    def _heartbeat_expired(self, group: ClassicGroup, member_id: str) -> None:
        if self.groups.get(group.group_id) is not group:
            return
        if member_id in group.pending_members:
            logger.info(
                "%sgroup %s: pending member %s never joined; removed",
                self.tag,
                group.group_id,
                member_id,
            )
            group.pending_members.discard(member_id)
            self._try_complete_join(group)
            self._maybe_forget(group)
            return
        member = group.members.get(member_id)
        if member is None:
            return
        if not member.is_new and (
            member.awaiting_join is not None or member.awaiting_sync is not None
        ):
            return  # a request of the member is pending: it is alive
        logger.info(
            "%sgroup %s: member %s %s; removed",
            self.tag,
            group.group_id,
            member_id,
            "never completed its join" if member.is_new else "missed its session timeout",
        )
        self._remove_member_and_update_group(
            group, member, f"member {member_id} expired (session timeout)"
        )

    # ================================================================= LeaveGroup

    def leave_group(
        self, group_id: str, leaving: list[LeavingMember]
    ) -> tuple[int, list[tuple[LeavingMember, int]]]:
        """(group error, per-member error)."""
        error = self.check_group(group_id)
        if error:
            return error, []
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, [(m, ErrorCode.UNKNOWN_MEMBER_ID) for m in leaving]
        if group.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        out: list[tuple[LeavingMember, int]] = []
        for leaver in leaving:
            reason = f"member {leaver.member_id or leaver.group_instance_id} left"
            if leaver.reason:
                reason += f" ({leaver.reason})"
            if leaver.member_id == "":
                # Administrative removal of a static member by its instance id alone.
                current = (
                    group.static_members.get(leaver.group_instance_id)
                    if leaver.group_instance_id is not None
                    else None
                )
                if current is None:
                    out.append((leaver, ErrorCode.UNKNOWN_MEMBER_ID))
                else:
                    self._remove_member_and_update_group(group, group.members[current], reason)
                    out.append((leaver, ErrorCode.NONE))
            elif leaver.member_id in group.pending_members:
                group.pending_members.discard(leaver.member_id)
                self.timer.cancel(("heartbeat", group.group_id, leaver.member_id))
                self._try_complete_join(group)
                out.append((leaver, ErrorCode.NONE))
            elif group.is_static_member_fenced(leaver.group_instance_id, leaver.member_id):
                out.append((leaver, ErrorCode.FENCED_INSTANCE_ID))
            elif leaver.member_id not in group.members:
                out.append((leaver, ErrorCode.UNKNOWN_MEMBER_ID))
            else:
                logger.info("%sgroup %s: %s", self.tag, group.group_id, reason)
                self._remove_member_and_update_group(group, group.members[leaver.member_id], reason)
                out.append((leaver, ErrorCode.NONE))
        self._maybe_forget(group)
        return ErrorCode.NONE, out

    def _remove_member_and_update_group(
        self, group: ClassicGroup, member: Member, reason: str
    ) -> None:
        self.timer.cancel(("heartbeat", group.group_id, member.member_id))
        # A member removed while its JoinGroup waits is told to join again from scratch.
        member.invoke_join(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, ""))
        member.invoke_sync(SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, reason)
        elif group.state is GroupState.PREPARING_REBALANCE:
            self._try_complete_join(group)

"""SCRAM credentials in the metadata quorum (KIP-554), as Kafka's ScramControlManager keeps
them: AlterUserScramCredentials becomes UserScramCredentialRecord and
RemoveUserScramCredentialRecord records (the client sends the salted password; the controller
keeps StoredKey and ServerKey, never a password), DescribeUserScramCredentials is answered from
a node's image (mechanisms and iterations only)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from kraft.controller.controller import Result
from kraft.metadata.image import MetadataImage
from kraft.net.protocol import (
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
    ErrorCode,
    Message,
)
from kraft.net.protocol import _generated as m
from kraft.security.scram import (
    MAX_ITERATIONS,
    MECHANISM_TYPES,
    MIN_ITERATIONS,
    credential_from_salted,
)

_MECHANISM_NAMES = {t: name for name, t in MECHANISM_TYPES.items()}
_AlterResult = AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult
_DescribeResult = DescribeUserScramCredentialsResponse.DescribeUserScramCredentialsResult


def alter_scram_credentials(
    request: AlterUserScramCredentialsRequest,
) -> Callable[[MetadataImage], Result[AlterUserScramCredentialsResponse]]:
    """The controller command: every user's changes are applied, or refused, together."""

    def command(image: MetadataImage) -> Result[AlterUserScramCredentialsResponse]:
        users = [d.name for d in request.deletions] + [u.name for u in request.upsertions]
        counts = Counter(users)
        failures: dict[str, tuple[int, str]] = {}
        records: dict[str, list[Message]] = {}
        for d in request.deletions:
            refusal = _refusal(d.name, d.mechanism, counts)
            if refusal is None and (d.name, d.mechanism) not in image.scram_credentials:
                refusal = (
                    ErrorCode.RESOURCE_NOT_FOUND,
                    "Attempt to delete a user credential that does not exist",
                )
            if refusal is not None:
                failures.setdefault(d.name, refusal)
                continue
            records.setdefault(d.name, []).append(
                m.RemoveUserScramCredentialRecord(name=d.name, mechanism=d.mechanism)
            )
        for u in request.upsertions:
            refusal = _refusal(u.name, u.mechanism, counts)
            if refusal is None and u.iterations < MIN_ITERATIONS:
                refusal = (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations")
            if refusal is None and u.iterations > MAX_ITERATIONS:
                refusal = (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations")
            if refusal is None and (not u.salt or not u.salted_password):
                refusal = (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Salt and salted password required")
            if refusal is not None:
                failures.setdefault(u.name, refusal)
                continue
            credential = credential_from_salted(
                _MECHANISM_NAMES[u.mechanism], u.salted_password, u.salt, u.iterations
            )
            records.setdefault(u.name, []).append(
                m.UserScramCredentialRecord(
                    name=u.name,
                    mechanism=u.mechanism,
                    salt=credential.salt,
                    stored_key=credential.stored_key,
                    server_key=credential.server_key,
                    iterations=credential.iterations,
                )
            )
        results = []
        committed: list[Message] = []
        for user in dict.fromkeys(users):
            code, message = failures.get(user, (ErrorCode.NONE, None))
            if not code:
                committed += records.get(user, [])
            results.append(_AlterResult(user=user, error_code=code, error_message=message))
        return Result(committed, AlterUserScramCredentialsResponse(results=results))

    return command


def alter_refused(
    request: AlterUserScramCredentialsRequest, code: int
) -> AlterUserScramCredentialsResponse:
    """`code` for every user of the request (not the active controller, timed out)."""
    users = [d.name for d in request.deletions] + [u.name for u in request.upsertions]
    return AlterUserScramCredentialsResponse(
        results=[_AlterResult(user=u, error_code=code) for u in dict.fromkeys(users)]
    )


def _refusal(user: str, mechanism: int, counts: Counter[str]) -> tuple[int, str] | None:
    if not user:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"
    if counts[user] > 1:
        return (
            ErrorCode.DUPLICATE_RESOURCE,
            "A user credential cannot be altered twice in the same request",
        )
    if mechanism not in _MECHANISM_NAMES:
        return ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"
    return None


def describe_scram_credentials(
    image: MetadataImage, request: DescribeUserScramCredentialsRequest
) -> DescribeUserScramCredentialsResponse:
    by_user: dict[str, list[DescribeUserScramCredentialsResponse.CredentialInfo]] = {}
    for (user, mechanism), record in sorted(image.scram_credentials.items()):
        by_user.setdefault(user, []).append(
            DescribeUserScramCredentialsResponse.CredentialInfo(
                mechanism=mechanism, iterations=record.iterations
            )
        )
    if not request.users:
        return DescribeUserScramCredentialsResponse(
            results=[_DescribeResult(user=u, credential_infos=c) for u, c in by_user.items()]
        )
    asked = Counter(u.name for u in request.users)
    results = []
    for user in dict.fromkeys(u.name for u in request.users):
        if asked[user] > 1:
            results.append(
                _DescribeResult(
                    user=user,
                    error_code=ErrorCode.DUPLICATE_RESOURCE,
                    error_message="Cannot describe SCRAM credentials for the same user twice "
                    "in a single request",
                )
            )
        elif user not in by_user:
            results.append(
                _DescribeResult(
                    user=user,
                    error_code=ErrorCode.RESOURCE_NOT_FOUND,
                    error_message="Attempt to describe nonexistent user",
                )
            )
        else:
            results.append(_DescribeResult(user=user, credential_infos=by_user[user]))
    return DescribeUserScramCredentialsResponse(results=results)

"""KIP-554 on the controller's side: AlterUserScramCredentials as records (salted password in,
StoredKey/ServerKey out), Kafka's refusals, DescribeUserScramCredentials from the image, and
the credentials surviving a snapshot of the image."""

from __future__ import annotations

import hashlib

from kraft.controller.scram_credentials import (
    alter_refused,
    alter_scram_credentials,
    describe_scram_credentials,
)
from kraft.metadata.image import MetadataImage
from kraft.metadata.snapshot import image_from_records, image_to_records
from kraft.net.protocol import (
    AlterUserScramCredentialsRequest,
    DescribeUserScramCredentialsRequest,
    ErrorCode,
)
from kraft.security.scram import make_credential

Up = AlterUserScramCredentialsRequest.ScramCredentialUpsertion
Del = AlterUserScramCredentialsRequest.ScramCredentialDeletion
SALT = b"0123456789abcdef"


def upsert(name: str, password: str, mechanism: int = 1, iterations: int = 4096) -> Up:
    h = "sha256" if mechanism == 1 else "sha512"
    salted = hashlib.pbkdf2_hmac(h, password.encode(), SALT, iterations)
    return Up(
        name=name, mechanism=mechanism, iterations=iterations, salt=SALT, salted_password=salted
    )


def alter(image: MetadataImage, request: AlterUserScramCredentialsRequest) -> dict[str, int]:
    result = alter_scram_credentials(request)(image)
    for record in result.records:
        image.apply(record)
    return {r.user: r.error_code for r in result.response.results}


def test_upsert_describe_delete() -> None:
    image = MetadataImage()
    request = AlterUserScramCredentialsRequest(
        upsertions=[upsert("alice", "a-secret"), upsert("bob", "b-secret", 2, 8192)]
    )
    assert alter(image, request) == {"alice": 0, "bob": 0}
    # What the image keeps is what a SCRAM login with the password needs, no password.
    assert image.scram_credential("SCRAM-SHA-256", "alice") == make_credential(
        "SCRAM-SHA-256", "a-secret", 4096, SALT
    )
    assert image.scram_credential("SCRAM-SHA-512", "alice") is None
    described = describe_scram_credentials(image, DescribeUserScramCredentialsRequest(users=None))
    assert [
        (r.user, [(c.mechanism, c.iterations) for c in r.credential_infos])
        for r in described.results
    ] == [("alice", [(1, 4096)]), ("bob", [(2, 8192)])]
    assert alter(image, AlterUserScramCredentialsRequest(deletions=[Del(name="bob", mechanism=2)]))
    assert image.scram_credential("SCRAM-SHA-512", "bob") is None
    asked = DescribeUserScramCredentialsRequest(
        users=[DescribeUserScramCredentialsRequest.UserName(name=n) for n in ("bob", "alice")]
    )
    results = describe_scram_credentials(image, asked).results
    assert [(r.user, r.error_code) for r in results] == [
        ("bob", ErrorCode.RESOURCE_NOT_FOUND),
        ("alice", 0),
    ]


def test_refusals_leave_the_other_users_alone() -> None:
    image = MetadataImage()
    request = AlterUserScramCredentialsRequest(
        deletions=[Del(name="ghost", mechanism=1), Del(name="twice", mechanism=1)],
        upsertions=[
            upsert("twice", "x"),
            upsert("few", "x", iterations=1000),
            upsert("many", "x", iterations=20000),
            upsert("weird", "x", mechanism=3),
            upsert("", "x"),
            upsert("ok", "x"),
        ],
    )
    assert alter(image, request) == {
        "ghost": ErrorCode.RESOURCE_NOT_FOUND,
        "twice": ErrorCode.DUPLICATE_RESOURCE,
        "few": ErrorCode.UNACCEPTABLE_CREDENTIAL,
        "many": ErrorCode.UNACCEPTABLE_CREDENTIAL,
        "weird": ErrorCode.UNSUPPORTED_SASL_MECHANISM,
        "": ErrorCode.UNACCEPTABLE_CREDENTIAL,
        "ok": 0,
    }
    assert list(image.scram_credentials) == [("ok", 1)]
    refused = alter_refused(request, ErrorCode.NOT_CONTROLLER)
    assert {r.error_code for r in refused.results} == {ErrorCode.NOT_CONTROLLER}


def test_credentials_survive_a_snapshot() -> None:
    image = MetadataImage()
    alter(image, AlterUserScramCredentialsRequest(upsertions=[upsert("alice", "a-secret")]))
    restored = image_from_records(image_to_records(image), 7)
    assert restored.scram_credential("SCRAM-SHA-256", "alice") == image.scram_credential(
        "SCRAM-SHA-256", "alice"
    )

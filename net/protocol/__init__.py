"""Kafka wire protocol codec: sans-io, generated from Kafka's JSON message definitions.

Bytes in, typed messages out, and back; no sockets, no asyncio, and no imports from the rest
of the project. Every API key and every version is supported, flexible versions included
(compact types, tagged fields), plus the KRaft metadata records and Kafka's "data" types
(ConsumerProtocolAssignment, LeaderChangeMessage, VotersRecord...).

Messages
    One slotted, keyword-only dataclass per message (``ProduceRequest``, ``FetchResponse``,
    ``PartitionRecord``...), with snake_case attributes whose defaults follow Kafka's, and
    its structs nested inside it (``ProduceRequest.TopicProduceData``). Every class also has
    ``unknown_tagged_fields`` (tag -> raw bytes, or None): tags we do not know are kept and
    written back. Types: ints, ``float``, ``bool``, ``str``, ``bytes``, ``uuid.UUID`` (the
    all-zero UUID is the default), lists, nested classes; ``None`` where Kafka allows null.
    Records fields decode to zero-copy ``memoryview`` slices of the frame (so the frame must
    not be a buffer that is later resized); any bytes-like value encodes.

Server side
    ``decode_request(frame) -> (RequestHeader, message)``: ``frame`` is the request without
    its 4-byte size prefix. Bytes after the message are ignored, as Kafka does (librdkafka
    relies on it); pass ``strict=True`` to refuse them.
    ``encode_response(message, api_version, correlation_id)`` returns the whole frame
    *with* its size prefix, as a ``bytearray`` ready for ``transport.write``.
    The response header version is derived (``response_header_version``); ApiVersions
    responses always use header v0. To refuse an unsupported ApiVersions request, catch
    ``UnsupportedVersionError`` (its ``header`` holds api key, version and correlation id)
    and send ``ApiVersionsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION, ...)`` at v0.

Client side
    ``encode_request(message, api_version, correlation_id, client_id)`` (framed, like
    ``encode_response``); ``peek_correlation_id(frame)`` to match a response to its request,
    then ``decode_response(frame, api_key, api_version) -> (ResponseHeader, message)``
    (``strict=True`` likewise refuses trailing bytes).

Framing
    ``FrameReader`` splits a byte stream into frames and enforces a maximum frame size.

Headers
    ``request_header_version(api_key, api_version)``: 2 for flexible versions, else 1, and 0
    for ControlledShutdown v0; the client_id of headers v1/v2 is always a non-compact
    nullable string. ``response_header_version``: 1 for flexible versions, else 0, and always
    0 for ApiVersions.

KRaft metadata records
    ``encode_metadata_record(record, version=None) -> bytes`` writes Kafka's framing (frame
    version 1, api key and record version as unsigned varints) before the record;
    ``decode_metadata_record(data) -> record`` (``decode_metadata_record_with_version`` also
    returns the version).

Bodies and tables
    ``encode_message(message, version)`` / ``decode_message(cls, data, version)`` for a bare
    body. ``API_KEYS``: api key -> ``ApiInfo`` (name, request and response classes, min and
    max version, flexible versions, listeners...); ``ApiKey`` enum; ``METADATA_RECORDS`` and
    ``MetadataRecordType`` likewise; ``MESSAGES``: every ``MessageSpec`` table;
    ``spec_of(cls)``. ``compile_all()`` compiles every encoder/decoder up front (they are
    otherwise compiled on first use).

Errors
    Decoding raises only ``ProtocolError`` on bad input (``UnsupportedVersionError`` for a
    known api key at a version we lack; unknown api keys are plain ``ProtocolError``).
    Encoding raises ``EncodeError`` when a value does not fit the version (None where null is
    not allowed, out-of-range ints, a non-default value in a non-ignorable field the version
    lacks). ``ErrorCode`` is Kafka's error code enum.

Primitives
    ``read_uvarint`` / ``write_uvarint``, ``read_varint`` / ``write_varint``,
    ``read_varlong`` / ``write_varlong`` (zigzag), for record-level parsing.
"""

from ._generated import *  # noqa: F403
from ._generated import __all__ as _generated_all
from .codec import (
    compile_all,
    decode_message,
    decode_metadata_record,
    decode_metadata_record_with_version,
    decode_request,
    decode_response,
    encode_message,
    encode_metadata_record,
    encode_request,
    encode_response,
    message_decoder,
    message_encoder,
    peek_correlation_id,
    read_uvarint,
    read_varint,
    read_varlong,
    request_header_version,
    response_header_version,
    spec_of,
    write_uvarint,
    write_varint,
    write_varlong,
)
from .errors import EncodeError, ErrorCode, ProtocolError, UnsupportedVersionError, error_name
from .framing import FrameAssembler, FrameReader, FrameTooLargeError
from .schema import (
    ZERO_UUID,
    ApiInfo,
    FieldSpec,
    Message,
    MessageSpec,
    MetadataRecordInfo,
    Records,
    RequestHeader,
    ResponseHeader,
    Struct,
    StructSpec,
    Versions,
)

__all__ = [
    *_generated_all,
    "ZERO_UUID",
    "ApiInfo",
    "EncodeError",
    "ErrorCode",
    "error_name",
    "FieldSpec",
    "FrameAssembler",
    "FrameReader",
    "FrameTooLargeError",
    "Message",
    "MessageSpec",
    "MetadataRecordInfo",
    "ProtocolError",
    "Records",
    "RequestHeader",
    "ResponseHeader",
    "Struct",
    "StructSpec",
    "UnsupportedVersionError",
    "Versions",
    "compile_all",
    "decode_message",
    "decode_metadata_record",
    "decode_metadata_record_with_version",
    "decode_request",
    "decode_response",
    "encode_message",
    "encode_metadata_record",
    "encode_request",
    "encode_response",
    "message_decoder",
    "message_encoder",
    "peek_correlation_id",
    "read_uvarint",
    "read_varint",
    "read_varlong",
    "request_header_version",
    "response_header_version",
    "spec_of",
    "write_uvarint",
    "write_varint",
    "write_varlong",
]

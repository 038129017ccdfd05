"""Strict msgpack: what the protocol accepts from msgpack, with every length bounded.

Decoding turns every msgpack failure into a ProtocolError and closes the gaps a lenient
decoder leaves open: duplicate map keys (two consumers could read different values), map keys
that are not strings, ext types, and unbounded lengths.

msgpack-python decodes the timestamp extension (type -1) itself, without calling
``ext_hook``; a timestamp where a time belongs would then pass the envelope and be
reported as a wrong-typed field. An ext length limit of 0 makes the unpacker refuse every
ext with data, the timestamp included, before it decodes anything; a data-less ext of any
other type still reaches ``ext_hook``, and a data-less timestamp is invalid msgpack. This
costs nothing per value, unlike checking every decoded map value and array element.
"""

from __future__ import annotations

from typing import Final, NoReturn

import msgpack

from protocol.errors import (
    BAD_MSGPACK,
    TOO_LARGE_ELEMENT,
    TOO_LARGE_PAYLOAD,
    MalformedPayload,
    PayloadTooLarge,
)


def pack(obj: object) -> bytes:
    """Pack ``obj`` deterministically: dict order is kept, floats are always float64."""
    return msgpack.packb(obj, use_bin_type=True, use_single_float=False, datetime=False)


def _pairs_to_dict(pairs: list[tuple[object, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if type(key) is not str:
            raise MalformedPayload(BAD_MSGPACK, f"map key of type {type(key).__name__}")
        result[key] = value
    if len(result) != len(pairs):
        raise MalformedPayload(BAD_MSGPACK, "duplicate map key")
    return result


def _reject_ext(code: int, data: bytes) -> NoReturn:
    raise MalformedPayload(BAD_MSGPACK, f"ext type {code} is not allowed")


# No ext type is allowed, so none may carry data (see the module docstring).
_MAX_EXT_LEN: Final = 0
_EXT_LIMIT_MESSAGE: Final = "max_ext_len"


def unpack(
    data: bytes | bytearray,
    *,
    max_str_len: int,
    max_bin_len: int,
    max_array_len: int,
    max_map_len: int,
) -> object:
    """Unpack exactly one msgpack object from ``data``; no trailing bytes are allowed."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_pairs_to_dict,
            ext_hook=_reject_ext,
            max_ext_len=_MAX_EXT_LEN,
            max_str_len=max_str_len,
            max_bin_len=max_bin_len,
            max_array_len=max_array_len,
            max_map_len=max_map_len,
        )
    except ValueError as exc:
        # msgpack reports every failure as a ValueError (incomplete input, extra data, bad
        # format, nesting too deep, invalid UTF-8); only the length caps say "exceeds max_",
        # and the ext cap is not a size limit but the ban on ext types.
        message = str(exc)
        if _EXT_LIMIT_MESSAGE in message:
            raise MalformedPayload(BAD_MSGPACK, "ext types are not allowed") from None
        if "exceeds max_" in message:
            raise PayloadTooLarge(TOO_LARGE_ELEMENT, str(exc)) from None
        raise MalformedPayload(BAD_MSGPACK, str(exc)[:200]) from None


def unpack_map(
    data: bytes | bytearray,
    *,
    max_str_len: int,
    max_bin_len: int,
    max_array_len: int,
    max_map_len: int,
) -> dict[str, object]:
    """Unpack ``data``, which must hold exactly one msgpack map with string keys."""
    obj = unpack(
        data,
        max_str_len=max_str_len,
        max_bin_len=max_bin_len,
        max_array_len=max_array_len,
        max_map_len=max_map_len,
    )
    if not isinstance(obj, dict):
        raise MalformedPayload(BAD_MSGPACK, f"top level is {type(obj).__name__}, not a map")
    return obj


def unpack_control(payload: bytes | bytearray, max_bytes: int) -> dict[str, object]:
    """Unpack a small uncompressed payload (ack, status) that must be one msgpack map."""
    if not isinstance(payload, bytes | bytearray):
        raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
    if len(payload) > max_bytes:
        raise PayloadTooLarge(TOO_LARGE_PAYLOAD, f"{len(payload)} bytes, limit {max_bytes}")
    bound = len(payload)
    return unpack_map(
        bytes(payload), max_str_len=bound, max_bin_len=bound, max_array_len=bound, max_map_len=bound
    )

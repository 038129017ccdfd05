"""Field checks shared by every decoder and encoder of the package.

Each check takes an untrusted value and the field's wire path (PROTOCOL.md), returns the
value with a precise type, or raises ``InvalidField(path)``. Encoders run the same checks
on what they are about to send, so producer and consumer agree on what is valid.

Column checks (one array per field) are the hot path: they test a whole array with a few
C-level passes (``set(map(type, ...))``, ``min``, ``max``, ``sum``) and only walk it
element by element to explain a failure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Final, NoReturn, cast

from protocol.errors import (
    TOO_LARGE_ELEMENT,
    UNKNOWN_FIELD,
    InvalidField,
    MalformedPayload,
    PayloadTooLarge,
)
from protocol.ids import is_valid_id
from protocol.limits import INT64_MAX, INT64_MIN, MAX_ID_LEN, MAX_NAME_BYTES, UINT64_MAX
from protocol.records import Scalar

Number = int | float

_NONE: Final = type(None)
_INT_ONLY: Final = frozenset({int})
_NUMBER: Final = frozenset({int, float})
_NUMBER_OR_NONE: Final = frozenset({int, float, _NONE})
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def fail(field: str, detail: str) -> NoReturn:
    raise InvalidField(field, detail)


def show(value: object) -> str:
    """A short, cheap description of an untrusted value for an error detail.

    Never the full repr: a payload's million-element array or a caller's 10,000-digit int
    would make the error itself expensive (or, for the int, raise).
    """
    if isinstance(value, str | bytes):
        text = repr(value[:40])
        return text if len(value) <= 40 else text + "..."
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, list | tuple | dict):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def fields(value: object, field: str, keys: frozenset[str]) -> dict[str, object]:
    """A map with exactly ``keys``: each key required, no other key allowed."""
    if type(value) is not dict:
        fail(field or "payload", f"expected a map, got {type(value).__name__}")
    if value.keys() != keys:
        for key in sorted(keys):
            if key not in value:
                fail(f"{field}.{key}" if field else key, "missing")
        extra = next(key for key in value if key not in keys)
        where = f"{field}: " if field else ""
        raise MalformedPayload(UNKNOWN_FIELD, f"{where}unknown key {show(extra)}")
    return value


# Single values --------------------------------------------------------------------------


def int_in(value: object, field: str, lo: int, hi: int) -> int:
    if type(value) is not int:
        fail(field, f"expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        fail(field, f"{show(value)} is outside [{lo}, {hi}]")
    return value


def uint(value: object, field: str, hi: int = UINT64_MAX) -> int:
    return int_in(value, field, 0, hi)


def opt_int_in(value: object, field: str, lo: int, hi: int) -> int | None:
    return None if value is None else int_in(value, field, lo, hi)


def number(value: object, field: str, lo: float | None = None, hi: float | None = None) -> Number:
    """An int within int64 or a finite float (NaN and infinities are never valid)."""
    kind = type(value)
    if kind is float:
        assert isinstance(value, float)
        if not math.isfinite(value):
            fail(field, f"{value} is not finite")
    elif kind is int:
        assert isinstance(value, int)
        if not INT64_MIN <= value <= INT64_MAX:
            fail(field, f"{show(value)} is outside int64")
    else:
        fail(field, f"expected a number, got {kind.__name__}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        fail(field, f"{show(value)} is outside [{lo}, {hi}]")
    return value


def opt_number(
    value: object, field: str, lo: float | None = None, hi: float | None = None
) -> Number | None:
    return None if value is None else number(value, field, lo, hi)


def boolean(value: object, field: str) -> bool:
    if type(value) is not bool:
        fail(field, f"expected a boolean, got {type(value).__name__}")
    return value


def text(value: object, field: str, max_bytes: int) -> str:
    """Any valid UTF-8 string of at most ``max_bytes`` bytes."""
    if type(value) is not str:
        fail(field, f"expected a string, got {type(value).__name__}")
    if len(value) > max_bytes or not value.isascii():
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            fail(field, "not encodable as UTF-8")
        if size > max_bytes:
            fail(field, f"{size} bytes, limit {max_bytes}")
    return value


def name(value: object, field: str, *, allow_empty: bool = False) -> str:
    """A string of at most MAX_NAME_BYTES bytes without control characters, non-empty
    unless ``allow_empty``.

    Names end up in column names, log lines and metrics labels, where control characters
    only cause harm.
    """
    result = text(value, field, MAX_NAME_BYTES)
    if not result and not allow_empty:
        fail(field, "empty")
    if _CONTROL.search(result):
        fail(field, "contains a control character")
    return result


def ident(value: object, field: str) -> str:
    """A fleet or vehicle id (protocol.ids)."""
    if not is_valid_id(value):
        fail(field, f"{show(value)} is not 1-{MAX_ID_LEN} characters of [A-Za-z0-9_-]")
    assert isinstance(value, str)
    return value


def scalar(value: object, field: str, max_text_bytes: int) -> Scalar:
    """nil, a boolean, an int64, a finite float or a string."""
    if value is None or type(value) is bool:
        return value
    if type(value) is str:
        return text(value, field, max_text_bytes)
    if type(value) is int or type(value) is float:
        return number(value, field)
    fail(field, f"expected a scalar, got {type(value).__name__}")


def scalar_map(
    value: object, field: str, max_entries: int, max_text_bytes: int
) -> dict[str, Scalar]:
    """A map of names to scalars with at most ``max_entries`` entries."""
    if type(value) is not dict:
        fail(field, f"expected a map, got {type(value).__name__}")
    if len(value) > max_entries:
        fail(field, f"{len(value)} entries, limit {max_entries}")
    result: dict[str, Scalar] = {}
    for key, item in value.items():
        result[name(key, field)] = scalar(item, field, max_text_bytes)
    return result


# Arrays ---------------------------------------------------------------------------------


def array(value: object, field: str, max_len: int) -> Sequence[object]:
    """A msgpack array (a list when decoded, a list or tuple when encoding)."""
    if type(value) is not list and type(value) is not tuple:
        fail(field, f"expected an array, got {type(value).__name__}")
    assert isinstance(value, list | tuple)
    if len(value) > max_len:
        raise PayloadTooLarge(TOO_LARGE_ELEMENT, f"{field}: {len(value)} elements, limit {max_len}")
    return value


def same_length(field: str, length: int, *columns: Sequence[object]) -> None:
    for column in columns:
        if len(column) != length:
            fail(field, f"{len(column)} elements, expected {length}")


def _explain(seq: Sequence[object], field: str, check: Callable[[object, str], object]) -> NoReturn:
    # Slow path, only to name the first bad element; the fast checks found that one exists.
    for index, item in enumerate(seq):
        try:
            check(item, field)
        except InvalidField as exc:
            raise InvalidField(field, f"element {index}: {exc.detail}") from None
    raise AssertionError(f"{field}: fast check failed but no element is bad")  # pragma: no cover


def _ints(
    value: object, field: str, lo: int, hi: int, max_len: int, *, nullable: bool
) -> Sequence[object]:
    seq = array(value, field, max_len)
    if not seq:
        return seq
    types = set(map(type, seq))
    ints = seq
    if nullable and _NONE in types:
        types.discard(_NONE)
        ints = [x for x in seq if x is not None]
    if (types and types != _INT_ONLY) or (
        ints and (min(cast(Sequence[int], ints)) < lo or max(cast(Sequence[int], ints)) > hi)
    ):
        check = opt_int_in if nullable else int_in
        _explain(seq, field, lambda item, path: check(item, path, lo, hi))
    return seq


def int_column(value: object, field: str, lo: int, hi: int, max_len: int) -> Sequence[int]:
    """Integers in [lo, hi]."""
    return cast(Sequence[int], _ints(value, field, lo, hi, max_len, nullable=False))


def opt_int_column(
    value: object, field: str, lo: int, hi: int, max_len: int
) -> Sequence[int | None]:
    """Integers in [lo, hi] or nil."""
    return cast(Sequence[int | None], _ints(value, field, lo, hi, max_len, nullable=True))


def _numbers_ok(
    nums: Sequence[Number], types: set[type], lo: float | None, hi: float | None
) -> bool:
    # Integers first: one beyond int64 would make the float sum below raise OverflowError.
    if int in types:
        ints = nums if float not in types else [x for x in nums if type(x) is int]
        if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
            return False
    # A sum of finite numbers is finite unless it overflows, and any NaN or infinity makes it
    # non-finite, so one C-level sum screens a whole column of floats.
    if float in types and not math.isfinite(sum(nums)) and not all(map(math.isfinite, nums)):
        return False
    return (lo is None or min(nums) >= lo) and (hi is None or max(nums) <= hi)


def number_column(
    value: object,
    field: str,
    max_len: int,
    *,
    lo: float | None = None,
    hi: float | None = None,
    nullable: bool = False,
) -> Sequence[Number | None]:
    """Ints within int64 and finite floats in [lo, hi], and nil where ``nullable``."""
    seq = array(value, field, max_len)
    if not seq:
        return cast(Sequence[Number | None], seq)
    check = opt_number if nullable else number
    types = set(map(type, seq))
    if not types <= (_NUMBER_OR_NONE if nullable else _NUMBER):
        _explain(seq, field, lambda item, path: check(item, path, lo, hi))
    nums = cast(Sequence[Number], [x for x in seq if x is not None] if _NONE in types else seq)
    if nums and not _numbers_ok(nums, types, lo, hi):
        _explain(seq, field, lambda item, path: check(item, path, lo, hi))
    return cast(Sequence[Number | None], seq)


def bool_column(value: object, field: str, max_len: int) -> Sequence[bool]:
    seq = array(value, field, max_len)
    if seq and set(map(type, seq)) != {bool}:
        _explain(seq, field, boolean)
    return cast(Sequence[bool], seq)


def _binary(value: object, field: str, max_bytes: int) -> bytes:
    if type(value) is not bytes:
        fail(field, f"expected binary, got {type(value).__name__}")
    if len(value) > max_bytes:
        fail(field, f"{len(value)} bytes, limit {max_bytes}")
    return value


def bytes_column(value: object, field: str, max_len: int, max_bytes: int) -> Sequence[bytes]:
    seq = array(value, field, max_len)
    if seq and (
        set(map(type, seq)) != {bytes} or max(map(len, cast(Sequence[bytes], seq))) > max_bytes
    ):
        _explain(seq, field, lambda item, path: _binary(item, path, max_bytes))
    return cast(Sequence[bytes], seq)


def name_column(value: object, field: str, max_len: int) -> Sequence[str]:
    seq = array(value, field, max_len)
    if seq:
        if set(map(type, seq)) != {str}:
            _explain(seq, field, name)
        # Columns such as bus names repeat a handful of values: check each distinct one once.
        for item in set(cast(Sequence[str], seq)):
            name(item, field)
    return cast(Sequence[str], seq)

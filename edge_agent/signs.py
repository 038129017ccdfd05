"""The camera's code tables: 0x700 sound types and TSR sign types."""

from __future__ import annotations

from typing import Final

# 0x700 sound_type: two firmware dialects of the Mobileye 5/6, and the 8 Connect's table.
# The Standard (fleet) dialect is the default: the reference recording behaves like it.
# Names are stable strings for event attributes.
SOUND_TABLES: Final[dict[str, dict[int, str]]] = {
    "standard": {
        0: "silent",
        1: "ldw_left",
        2: "ldw_right",
        3: "headway",
        4: "overspeed",
        5: "urban_fcw",
        6: "fcw_pcw",
        7: "undefined",
    },
    "awsdisplay": {
        0: "silent",
        1: "ldw_left",
        2: "ldw_right",
        3: "far_headway",
        4: "near_headway",
        5: "soft_fcw",
        6: "hard_fcw_pcw",
        7: "reserved",
    },
    # Mobileye 8 Connect (edge_agent/dbc/mobileye8.md).
    "me8": {
        0: "silent",
        1: "ldw_left",
        2: "ldw_right",
        3: "headway",
        4: "overspeed",
        5: "soft_fcw",
        6: "fcw_pcw",
        7: "peds_in_dz",
    },
}

URBAN_FCW_SOUND: Final = "urban_fcw"

_NAMED_SIGNS: Final[dict[int, str]] = {
    20: "end_of_restriction",
    50: "end_of_restriction_electronic",
    64: "end_of_all_restrictions",
    65: "end_of_all_restrictions_electronic",
    171: "motorway_begin",
    172: "motorway_end",
    173: "expressway_begin",
    174: "expressway_end",
    175: "playground_begin",
    176: "playground_end",
    200: "no_passing_start",
    201: "no_passing_end",
    220: "no_passing_start_electronic",
    221: "no_passing_end_electronic",
}


def sign_limit_kmh(raw: int) -> int | None:
    """The speed limit a TSR sign type shows, or None for a sign that is not a limit."""
    if 0 <= raw <= 13:
        return (raw + 1) * 10
    if 28 <= raw <= 41:
        return (raw - 27) * 10
    if 100 <= raw <= 114:
        return 5 + 10 * (raw - 100)
    if 115 <= raw <= 129:
        return 5 + 10 * (raw - 115)
    return None


def sign_is_electronic(raw: int) -> bool:
    """Variable message signs have their own code ranges."""
    return 28 <= raw <= 50 or 115 <= raw <= 129 or raw in (65, 220, 221)


def sign_kind(raw: int) -> str:
    if sign_limit_kmh(raw) is not None:
        return "speed_limit"
    return _NAMED_SIGNS.get(raw, "other")

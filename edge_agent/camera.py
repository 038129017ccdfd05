"""Camera models: which 0x700 layout a camera sends, and how to read it like the Standard one.

The extractor, the collection profile and health read the Standard 0x700 signal names
(``peds_fcw``, ``peds_in_dz``, ...). A model whose layout differs brings its own DBC and a
pure normaliser that derives those names from its own signals, so nothing downstream needs
to know which camera is fitted. The raw payload still travels in every camera event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.decode import MOBILEYE8_DBC, MOBILEYE_DBC, DecodedValues, bundled_dbc
from edge_agent.signs import SOUND_TABLES

# The message whose layout differs between models (0x700); normalisers apply to it only.
WARNINGS_MESSAGE: Final = "ME_Display_Warnings"

# ME8 pcw_ped_dz values (value 1 is undefined).
_PED_IN_DZ: Final = 2
_PCW: Final = 3


def same_as_standard(values: DecodedValues) -> DecodedValues:
    """The Standard layout already carries the names the extractor reads."""
    return values


def me8_as_standard(values: DecodedValues) -> DecodedValues:
    """ME8 0x700 values plus the Standard flags derived from them.

    ``pcw_ped_dz`` is one enumeration where the Standard layout has two flags. A collision
    warning (3) is the escalation of a pedestrian in the danger zone (2), so the pedestrian
    counts as in the danger zone through both: the usual 2 -> 3 -> 2 is one danger-zone
    situation and one warning, not two danger-zone events, and the flags are what a
    Standard camera reports for the same scene. The undefined value 1, or a frame too
    short to carry it, is no news for either flag (None). The Standard ``ldw_off`` (LDW
    unavailable) holds when neither side can warn.
    """
    out = dict(values)
    ped = values.get("pcw_ped_dz")
    known = ped is not None and ped != 1
    out["peds_fcw"] = int(ped == _PCW) if known else None
    out["peds_in_dz"] = int(ped in (_PED_IN_DZ, _PCW)) if known else None
    left, right = values.get("ldw_unavailable_left"), values.get("ldw_unavailable_right")
    out["ldw_off"] = None if left is None or right is None else int(bool(left and right))
    return out


@dataclass(frozen=True, slots=True)
class CameraModel:
    """One camera's CAN output: its DBCs, its sound table, its normaliser."""

    name: str
    title: str
    # Bundled DBC file names, loaded in order: a later file replaces an earlier one's ids.
    dbc_names: tuple[str, ...]
    # Key of edge_agent.signs.SOUND_TABLES: the default unless [camera] sound_table says otherwise.
    sound_table_name: str
    normalise: Callable[[DecodedValues], DecodedValues]

    def dbc_paths(self) -> list[Path]:
        return [bundled_dbc(name) for name in self.dbc_names]

    def sound_table(self) -> dict[int, str]:
        return dict(SOUND_TABLES[self.sound_table_name])


STANDARD: Final = CameraModel(
    name="standard",
    title="Mobileye 630/ME5 Standard CAN output",
    dbc_names=(MOBILEYE_DBC,),
    sound_table_name="standard",
    normalise=same_as_standard,
)
ME8: Final = CameraModel(
    name="me8",
    title="Mobileye 8 Connect",
    dbc_names=(MOBILEYE_DBC, MOBILEYE8_DBC),
    sound_table_name="me8",
    normalise=me8_as_standard,
)

CAMERA_MODELS: Final[dict[str, CameraModel]] = {m.name: m for m in (STANDARD, ME8)}
DEFAULT_CAMERA_MODEL: Final = STANDARD.name

"""Fleet and vehicle ids: 1 to 64 characters of ``[A-Za-z0-9_-]``.

The alphabet keeps ids safe as MQTT topic levels (no ``/``, ``+``, ``#``, no ``$`` start),
as file names and as metrics labels, and makes their UTF-8 length equal their length.
"""

from __future__ import annotations

import re
from typing import Final

from protocol.limits import MAX_ID_LEN

ID_PATTERN: Final = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LEN}}}")


def is_valid_id(value: object) -> bool:
    """Whether ``value`` is a valid fleet or vehicle id."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None

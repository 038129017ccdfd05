"""Files holding a secret (a password, a key) must not be readable by every user: both
services refuse to start on such a config file, with the same words."""

from __future__ import annotations

from pathlib import Path


def readable_by_all(path: Path, holds: str) -> str | None:
    """Why ``path``, which holds ``holds`` (e.g. "[mqtt] password"), must not be used as it
    is, or None when other users cannot read it. Raises OSError when it cannot be read."""
    mode = path.stat().st_mode
    if not mode & 0o004:
        return None
    return (
        f"{path}: holds {holds} but is readable by every user"
        f" (mode {mode & 0o777:04o}): chmod o-rwx {path}"
    )

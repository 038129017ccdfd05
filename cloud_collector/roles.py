"""Who may call the HTTP API: the roles a bearer token carries (``auth.ACCESS`` says which
role may use which route; ``docs/access.md`` what each sees), and the tokens themselves."""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum
from typing import Final

TOKEN_PREFIX: Final = "tac_"  # recognisable in a leaked config or log line


class Role(StrEnum):
    OPERATOR = "operator"  # a fleet operator, scoped to the token's fleets
    CITY = "city"  # a city's traffic backend: aggregates, pseudonymous events
    ADMIN = "admin"  # everything, token management and the audit log


ROLE_NAMES = tuple(r.value for r in Role)


def parse_role(text: str) -> Role:
    """``text`` as a role; ValueError naming the known roles otherwise."""
    try:
        return Role(text)
    except ValueError:
        raise ValueError(f"unknown role {text!r}: one of {', '.join(ROLE_NAMES)}") from None


def mint_token() -> str:
    """A new opaque token: 256 random bits behind a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 (hex) of a token: right for high-entropy secrets, which need no salt or
    slow hash (nobody can enumerate 256 random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()

"""Who may call the HTTP API: the roles a bearer token carries (``auth.ACCESS`` says which
role may use which route; ``docs/access.md`` what each sees)."""

from __future__ import annotations

from enum import StrEnum


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

"""Secrets the collector holds (passwords, keys), kept out of what it prints.

``masked_url`` shows a database URL without its password; ``Redactor`` replaces every
known secret in each formatted log line (message, arguments and traceback alike), so
a library that repeats a connection string or a password in an exception still prints
none; ``config_secrets`` lists a configuration's secrets for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

MASK: Final = "**********"
# Query parameters of a database URL that carry a secret (libpq's names).
SECRET_PARAMS: Final = frozenset({"password", "sslpassword", "passfile"})


def url_password(url: str) -> str | None:
    """The password a database URL carries (in its user part or as ``?password=``)."""
    try:
        parts = urlsplit(url)
        if parts.password:
            return unquote(parts.password)
    except ValueError:
        return None
    for key, value in parse_qsl(parts.query):
        if key in SECRET_PARAMS and value:
            return value
    return None


def masked_url(url: str) -> str:
    """``url`` with its password (user part or query parameter) replaced by the mask."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}:{MASK}@{host}"
        query = "&".join(
            f"{key}={MASK if key in SECRET_PARAMS else quote(value)}"
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return f"<a URL that cannot be parsed, {len(url)} characters>"


def _variants(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret)}


class _RedactingFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter, secrets: frozenset[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record), self.secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` (and its URL-quoted forms) masked."""
    for secret in sorted({v for s in secrets if s for v in _variants(s)}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class Redactor:
    """The secrets of one process, masked in its log output and error lines."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Very short values would mask ordinary text; a real secret is longer.
        self.secrets = frozenset(s for s in secrets if len(s) >= 4)

    def __call__(self, text: str) -> str:
        return redact(text, self.secrets)

    def install(self, logger: logging.Logger | None = None) -> None:
        """Mask the secrets in everything ``logger``'s handlers (root: all) format."""
        for handler in (logger or logging.getLogger()).handlers:
            inner = handler.formatter or logging.Formatter()
            if isinstance(inner, _RedactingFormatter):
                inner = inner.inner
            handler.setFormatter(_RedactingFormatter(inner, self.secrets))

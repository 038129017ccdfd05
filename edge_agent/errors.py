"""The edge agent's exception tree.

Errors that are the user's to fix (a config key, a recording, a DBC) carry a one-line
message naming the file, key or line. Problems on the bus are not exceptions at all:
they are counted.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the edge agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration file is missing, unreadable or has a wrong key or value."""


class DbcError(AgentError):
    """A DBC file cannot be read or compiled."""


class RecordingError(AgentError):
    """A CAN recording cannot be opened or read."""


class SourceError(AgentError):
    """A live CAN interface cannot be opened or fails while reading."""


class GnssError(AgentError):
    """gpsd cannot be reached or answers with something that is not its protocol."""


class OutboxError(AgentError):
    """The SQLite outbox cannot be read or written (disk full, I/O error, closed outbox)."""

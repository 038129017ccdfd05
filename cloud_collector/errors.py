"""Exception tree of the cloud collector.

Every error the collector raises on purpose derives from :class:`CollectorError`, so the
ingest service, the HTTP API and the CLI can catch one base class at their boundary and
map the subclasses to their own reactions (retry, quarantine, HTTP status, exit code).
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base class of every error the collector raises deliberately."""


class ConfigError(CollectorError):
    """The configuration (file, environment, command line) is missing or invalid."""


class ListenError(CollectorError):
    """The HTTP API cannot listen on its configured address (in use, not local, denied)."""


class ServiceError(CollectorError):
    """A part of the running service stopped on its own; the process must exit non-zero."""


class StoreError(CollectorError):
    """The road-condition store failed: bad URL, unreachable database, failed migration."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached right now; the caller may retry later."""


class QueryTimeoutError(StoreError):
    """A query of the API ran longer than ``[http] query_timeout_s`` and was cancelled."""


class MigrationError(StoreError):
    """A schema migration could not be applied or the schema is newer than this code."""


class QueryError(CollectorError):
    """A query parameter is invalid (bad cursor, inverted bbox, negative limit)."""


class IngestError(CollectorError):
    """A received message cannot be ingested (it should be quarantined, not retried)."""


class DeliveryError(CollectorError):
    """The message transport failed (connect, subscribe, receive, acknowledge, publish);
    the session is dropped and re-established, and the broker redelivers what was not
    acknowledged."""

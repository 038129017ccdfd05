"""Logging set-up for both services, done once at the entry point: JSON lines on stderr,
which journald keeps.

Modules log through stdlib loggers (or structlog's); both render through one chain. Context
bound with :func:`bind` (the vehicle in the agent, a batch while the collector stores it)
rides on every line logged in that task until it is unbound, so a line never has to repeat
who it is about.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.contextvars import bind_contextvars as bind
from structlog.contextvars import bound_contextvars as bound
from structlog.contextvars import unbind_contextvars as unbind

__all__ = ["LEVELS", "bind", "bound", "configure_logging", "unbind"]

LEVELS = ("debug", "info", "warning", "error", "critical")


def configure_logging(level: str = "INFO", stream: TextIO = sys.stderr) -> None:
    """Route stdlib loggers and structlog through one JSON renderer on ``stream``."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

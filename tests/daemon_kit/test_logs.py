"""One logging set-up for both services: JSON lines, stdlib and structlog loggers alike,
with the bound context on every line."""

from __future__ import annotations

import io
import json
import logging

import structlog

from daemon_kit.logs import bind, bound, configure_logging, unbind


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_stdlib_and_structlog_lines_carry_the_bound_context() -> None:
    stream = io.StringIO()
    configure_logging("info", stream)
    bind(vehicle="seoul/taxi-7")
    try:
        logging.getLogger("edge_agent.uplink").warning("uplink: %s", "refused")
        with bound(epoch=3, seq=41):
            structlog.get_logger("cloud_collector.ingest").info("batch stored")
        logging.getLogger("edge_agent.uplink").debug("not at info level")
    finally:
        unbind("vehicle")
    first, second = _lines(stream)
    assert first["event"] == "uplink: refused"
    assert first["level"] == "warning"
    assert first["vehicle"] == "seoul/taxi-7"
    assert "epoch" not in first
    assert (second["vehicle"], second["epoch"], second["seq"]) == ("seoul/taxi-7", 3, 41)
    assert second["logger"] == "cloud_collector.ingest"

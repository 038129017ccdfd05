"""The control channel between the collector and its API processes, and the HTTP figures
the collector adds up from them."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter

import pytest

from cloud_collector.api_channel import (
    MAX_FRAME,
    HttpFigures,
    State,
    frame,
    read_frame,
    read_frame_blocking,
)
from cloud_collector.api_processes import ApiProcesses, describe_exit
from cloud_collector.config import CollectorConfig, MqttConfig
from cloud_collector.metrics import IngestMetrics


def test_a_config_crosses_with_its_secrets_and_end_of_file_is_none() -> None:
    a, b = socket.socketpair()
    with a, b:
        cfg = CollectorConfig(mqtt=MqttConfig(password="s3cret"))  # type: ignore[arg-type]
        a.sendall(frame(cfg))
        got = read_frame_blocking(b)
        assert isinstance(got, CollectorConfig)
        assert got.mqtt.password is not None
        assert got.mqtt.password.get_secret_value() == "s3cret"
        a.close()
        assert read_frame_blocking(b) is None


def test_an_oversized_frame_is_refused_naming_its_size() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack("!I", MAX_FRAME + 1))
        with pytest.raises(ValueError, match=rf"frame of {MAX_FRAME + 1} bytes"):
            read_frame_blocking(b)


def test_state_frames_over_a_stream() -> None:
    async def exchange() -> list[object | None]:
        a, b = socket.socketpair()
        reader, _ = await asyncio.open_unix_connection(sock=b)
        ingest = IngestMetrics(acks_sent=7, connected=True)
        a.sendall(frame(State(ingest, HttpFigures(2, Counter(rate=3)))))
        a.close()
        return [await read_frame(reader), await read_frame(reader)]

    state, end = asyncio.run(exchange())
    assert isinstance(state, State)
    assert (state.ingest.acks_sent, state.ingest.connected) == (7, True)
    assert state.http.as_tuple() == (2, Counter(rate=3))
    assert end is None


def test_figures_add_up_and_keep_the_refusals_of_ended_processes() -> None:
    a, _ = socket.socketpair()
    with a:
        api = ApiProcesses(CollectorConfig(), a, IngestMetrics())
        api._live = {0: HttpFigures(3, Counter(rate=1)), 1: HttpFigures(1, Counter(rate=2))}
        api._retired = Counter(concurrency=5)
        assert api.figures() == (4, Counter(rate=3, concurrency=5))


def test_exit_descriptions() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-9) == "killed by SIGKILL"

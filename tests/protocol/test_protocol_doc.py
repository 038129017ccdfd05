"""PROTOCOL.md quotes the golden vectors; the quotes must stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import protocol
from tests.protocol.golden_files import read, same_zstd

DOC = Path(protocol.__file__).parent / "PROTOCOL.md"
HEX_BLOCKS = re.findall(r"```\n([0-9a-f\n]+)```", DOC.read_text())


def test_doc_quotes_the_golden_vectors() -> None:
    quoted = [bytes.fromhex(block.replace("\n", "")) for block in HEX_BLOCKS]
    assert len(quoted) == 4
    payload, body, ack, status = quoted
    if same_zstd():
        assert payload == read("batch_v1_minimal")
    assert body == read("batch_v1_minimal_body")
    assert ack == read("ack_v1")
    assert status == read("status_v1_online")


@pytest.mark.parametrize(
    "reason",
    [
        "too_large_compressed",
        "too_large_decompressed",
        "too_large_element",
        "too_large_payload",
        "bad_msgpack",
        "bad_zstd",
        "unknown_version",
        "unknown_field",
        "bad_field:<path>",
    ],
)
def test_doc_lists_every_reason(reason: str) -> None:
    assert f"| `{reason}` |" in DOC.read_text()


def test_doc_states_the_limits() -> None:
    text = DOC.read_text()
    assert f"{protocol.MAX_PAYLOAD_BYTES:,}" in text
    assert f"{protocol.MAX_BODY_BYTES:,}" in text
    assert f"{protocol.MAX_ARRAY_LEN:,}" in text

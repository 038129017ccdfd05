"""PROTOCOL.md quotes the golden vectors; the quotes must stay true."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import ModuleType

import pytest

import protocol
from cloud_collector import validate
from protocol import errors
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


def _reason_constants(module: ModuleType) -> set[str]:
    """The string constants a module defines itself (``NAME = "..."`` or ``NAME: Final =
    "..."`` at module level): in these modules, each is a reason or a reason prefix."""
    tree = ast.parse(Path(str(module.__file__)).read_text())
    found = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        value = getattr(node, "value", None)
        for target in targets:
            if (
                isinstance(target, ast.Name)
                and target.id.isupper()
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                found.add(value.value)
    return found


FIXED_REASONS = (*errors.REASONS, *validate.REASONS)
# Documented as ``<prefix><placeholder>``, e.g. ``bad_field:<path>``.
PREFIXED_REASONS = errors.REASON_PREFIXES


def _documented_reasons() -> list[str]:
    """The first column of the reason tables of section 8."""
    text = DOC.read_text()
    section = text[text.index("## 8. Errors") : text.index("## 9.")]
    return re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE)


@pytest.mark.parametrize("module", [errors, validate], ids=lambda m: m.__name__)
def test_every_reason_constant_is_in_a_reason_tuple(module: ModuleType) -> None:
    # A new reason defined without being added to REASONS would escape the doc check.
    assert _reason_constants(module) <= {*FIXED_REASONS, *PREFIXED_REASONS}


@pytest.mark.parametrize("reason", [*FIXED_REASONS, *PREFIXED_REASONS])
def test_doc_lists_every_reason(reason: str) -> None:
    documented = _documented_reasons()
    if reason in PREFIXED_REASONS:
        assert any(re.fullmatch(re.escape(reason) + "<[a-z]+>", row) for row in documented)
    else:
        assert reason in documented


def test_doc_lists_no_other_reason() -> None:
    for row in _documented_reasons():
        assert row in FIXED_REASONS or row.startswith(PREFIXED_REASONS), row


def test_doc_states_the_limits() -> None:
    text = DOC.read_text()
    assert f"{protocol.MAX_PAYLOAD_BYTES:,}" in text
    assert f"{protocol.MAX_BODY_BYTES:,}" in text
    assert f"{protocol.MAX_ARRAY_LEN:,}" in text

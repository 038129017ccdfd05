"""The MQTT client library stays inside its adapter: its errors are translated there, and
no other collector module imports it."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import pytest

from cloud_collector import mqtt
from cloud_collector.errors import CollectorError, DeliveryError

COLLECTOR = Path(mqtt.__file__).parent
CLIENT_LIBRARIES = ("aiomqtt", "paho")


@pytest.mark.parametrize(
    "error",
    [
        aiomqtt.MqttError("disconnected"),
        aiomqtt.MqttCodeError(paho.MQTT_ERR_NO_CONN, "could not publish"),
        aiomqtt.MqttReentrantError("reentered"),
        ssl.SSLError(1, "certificate verify failed"),
        ssl.SSLCertVerificationError(1, "hostname mismatch"),
        ConnectionResetError(104, "reset by peer"),
        TimeoutError("timed out"),
        paho.WebsocketConnectionError("bad handshake"),
    ],
    ids=type,
)
def test_client_errors_leave_the_adapter_as_delivery_errors(error: Exception) -> None:
    with (
        pytest.raises(DeliveryError, match="mqtt publish failed") as caught,
        mqtt._translated("publish"),
    ):
        raise error
    assert isinstance(caught.value, CollectorError)
    assert caught.value.__cause__ is error


def test_a_bug_is_not_turned_into_a_retry() -> None:
    with pytest.raises(TypeError), mqtt._translated("publish"):
        raise TypeError("our bug")


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_adapter_imports_the_client_library() -> None:
    importers = sorted(
        str(path.relative_to(COLLECTOR))
        for path in COLLECTOR.rglob("*.py")
        if _imported(path) & set(CLIENT_LIBRARIES)
    )
    assert importers == ["mqtt.py"]

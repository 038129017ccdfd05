"""Builds a pipeline from configuration (or from the bundled defaults)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge_agent.camera import STANDARD, CameraModel
from edge_agent.config import AgentConfig
from edge_agent.decode import VEHICLE_DBC, FrameDecoder, bundled_dbc
from edge_agent.evidence import Evidence
from edge_agent.extract import EventExtractor, ExtractorSettings
from edge_agent.pipeline import Pipeline
from edge_agent.profile import DEFAULT_PROFILE
from edge_agent.thin import Thinner
from protocol.contracts import URGENT_EVENT_TYPES
from protocol.records import Event


def default_decoder(camera: CameraModel = STANDARD) -> FrameDecoder:
    """The camera model's DBCs and the vehicle DBC on one bus: the vehicle's ids overlap none
    of the camera's (the camera's own DBCs overlap where a model replaces a message)."""
    return FrameDecoder.from_paths([*camera.dbc_paths(), bundled_dbc(VEHICLE_DBC)])


def build_pipeline(
    config: AgentConfig | None,
    config_dir: Path,
    bus_names: list[str],
    on_event: Callable[[Event], None] | None = None,
    camera: CameraModel = STANDARD,
) -> Pipeline:
    """A pipeline for ``bus_names``; with a config, each configured bus gets its own DBCs
    and, unless ``[evidence] enabled = false``, urgent events keep their raw frames.

    ``camera`` applies without a config; a config names its camera in ``[camera] model``.
    """
    evidence = None
    if config is None:
        shared = default_decoder(camera)
        decoders = dict.fromkeys(bus_names, shared)
        settings = ExtractorSettings(sound_table=camera.sound_table())
        profile = list(DEFAULT_PROFILE)
    else:
        camera = config.camera.camera_model
        decoders = {
            bus.name: FrameDecoder.from_paths(bus.dbc_paths(config_dir, camera))
            for bus in config.bus
        }
        settings = ExtractorSettings(
            sound_table=config.camera.table(), harsh_braking_g=config.events.harsh_braking_g
        )
        profile = (
            [s.policy() for s in config.signal]
            if config.signal is not None
            else list(DEFAULT_PROFILE)
        )
        if config.evidence.enabled:
            evidence = Evidence(config.evidence.settings(), URGENT_EVENT_TYPES.__contains__)
    return Pipeline(
        decoders,
        EventExtractor(settings),
        Thinner(profile),
        on_event=on_event,
        normalise_warnings=camera.normalise,
        evidence=evidence,
    )

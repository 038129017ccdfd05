"""Pipeline snapshots: plain versioned data that continues exactly where it stopped."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import pytest

from edge_agent.assemble import build_pipeline
from edge_agent.checkpoint import Checkpoint, CheckpointError
from edge_agent.config import load_config
from edge_agent.extract import EventExtractor
from edge_agent.feed import FrameFeed, route_by_config
from edge_agent.pipeline import Pipeline
from edge_agent.pipeline_state import (
    EXTRACTOR_CONFIG,
    EXTRACTOR_FIELDS,
    STATE_VERSION,
    PipelineStateError,
)
from edge_agent.sources import ReplaySource
from tests.support.offline_agent import write_config


def _pipeline(config_path: Path) -> tuple[Pipeline, FrameFeed]:
    config = load_config(config_path)
    pipeline = build_pipeline(config, config_path.parent, [b.name for b in config.bus])
    return pipeline, FrameFeed(pipeline, route_by_config(config.bus))


def _output(pipeline: Pipeline) -> tuple[list[object], list[object]]:
    drained = pipeline.drain()
    return list(drained.events), list(drained.signals)


def test_every_extractor_attribute_is_state_or_configuration() -> None:
    # A new attribute must be added to the snapshot (or to EXTRACTOR_CONFIG) on purpose.
    assert set(vars(EventExtractor())) == EXTRACTOR_FIELDS | EXTRACTOR_CONFIG


def test_a_restored_pipeline_continues_as_if_never_stopped(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, seconds=30.0)
    frames = list(ReplaySource(tmp_path / "drive.log").frames())
    whole, feed = _pipeline(config_path)
    events: list[object] = []
    signals: list[object] = []
    states = []
    # Uninterrupted, drained at the same points as the restored run.
    cuts = [0, len(frames) // 3, 2 * len(frames) // 3, len(frames)]
    for a, b in itertools.pairwise(cuts):
        for f in frames[a:b]:
            feed.push(f)
        e, s = _output(whole)
        events += e
        signals += s
        states.append(whole.snapshot())
    extractor = states[0]["extractor"]
    assert extractor["edges"]
    assert extractor["decel"]
    assert extractor["wheel_speed_kmh"]
    # Stopped after each part: the next part runs in a new pipeline restored from
    # the snapshot, which went through msgpack as a checkpoint does.
    resumed_events: list[object] = []
    resumed_signals: list[object] = []
    blob = None
    for a, b in itertools.pairwise(cuts):
        pipeline, part = _pipeline(config_path)
        if blob is not None:
            pipeline.restore(Checkpoint.load(blob).pipeline)
            assert pipeline.snapshot() == states[cuts.index(a) - 1]
        for f in frames[a:b]:
            part.push(f)
        e, s = _output(pipeline)
        resumed_events += e
        resumed_signals += s
        blob = Checkpoint("drive.log", b, False, pipeline.snapshot()).dump()
    assert events, "the recording should produce events"
    assert resumed_events == events
    assert resumed_signals == signals


def test_an_unknown_state_version_is_a_clear_error(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(write_config(tmp_path, seconds=1.0))
    state = pipeline.snapshot()
    assert state["version"] == STATE_VERSION
    with pytest.raises(PipelineStateError, match="pipeline state version 99 is not supported"):
        pipeline.restore({**state, "version": 99})
    with pytest.raises(PipelineStateError, match="damaged"):
        pipeline.restore({"version": STATE_VERSION, "extractor": {}})


def test_checkpoint_versions_and_old_pickles_are_refused_in_one_line() -> None:
    old = pickle.dumps((1, "/x/drive.log", 512, False, b"state"))
    with pytest.raises(CheckpointError, match="older agent version") as exc:
        Checkpoint.load(old)
    assert "\n" not in str(exc.value)
    future = Checkpoint("/x/drive.log", 1, False, {}).dump().replace(b"\x02", b"\x09", 1)
    with pytest.raises(CheckpointError, match="version 9 is not supported"):
        Checkpoint.load(future)

"""The fleet simulator's pure parts: the behaviour model, the truth file, the options."""

from __future__ import annotations

import json
import math
import statistics
from functools import cache
from pathlib import Path

import pytest

from fleet_sim.cli import default_start_ms, main
from fleet_sim.model import CANYON_OUTLIER_M, Chunk, TaxiModel, chunks
from fleet_sim.network import Network, distance_m
from fleet_sim.truth import HOUR_MS, Plan, Truth, TruthError, from_json, generate, load, save

START_MS = 1_764_540_000_000  # 2025-11-30T22:00:00Z, 07:00 in Daegu


@cache
def small_truth() -> Truth:
    return generate(Plan(seed=7, taxis=3, hours=0.25, start_ms=START_MS, hazard_factor=50))


def _records(truth: Truth, index: int, step_s: int) -> tuple[object, ...]:
    model = TaxiModel(truth, index)
    merged = Chunk()
    for chunk in chunks(model, 900, step_s):
        merged.fixes += chunk.fixes
        merged.events += chunk.events
        for name, samples in chunk.signals.items():
            merged.signals.setdefault(name, []).extend(samples)
    return tuple(merged.fixes), tuple(merged.events), merged.series()


@pytest.mark.parametrize("index", [0, 1])
def test_same_records_at_any_speed(index: int) -> None:
    """The flush size follows --speed; the records do not."""
    truth = small_truth()
    at_1x = _records(truth, index, 1)
    assert at_1x[0], "the taxi drove"
    for step in (7, 60, 900):
        assert _records(truth, index, step) == at_1x


def test_another_seed_gives_other_records() -> None:
    other = generate(Plan(seed=8, taxis=3, hours=0.25, start_ms=START_MS))
    assert _records(small_truth(), 0, 60)[0] != _records(other, 0, 60)[0]


def test_gnss_noise_is_a_few_metres_with_rare_canyon_outliers() -> None:
    truth = small_truth()
    model = TaxiModel(truth, 0)
    net: Network = model.net
    centre = (net.extent.width_m / 2, net.extent.height_m / 2)
    errors = []
    for i in range(20_000):
        fix = model.fix_at(START_MS + i * 1000, *centre, 10.0)
        errors.append(distance_m(net.to_xy(fix.lat, fix.lon), centre))
    usual = [e for e in errors if e < 15]
    assert 3.0 <= statistics.mean(usual) <= 5.0
    outliers = [e for e in errors if e >= 15]
    assert 0.005 <= len(outliers) / len(errors) <= 0.02
    assert all(math.isclose(e, CANYON_OUTLIER_M, abs_tol=0.5) for e in outliers)


def test_truth_round_trips_through_its_file(tmp_path: Path) -> None:
    truth = small_truth()
    save(truth, tmp_path / "truth.json")
    assert load(tmp_path / "truth.json") == truth
    data = json.loads((tmp_path / "truth.json").read_text())
    assert {"sites", "worn_lanes", "rain", "signs", "hubs", "start_ms"} <= data.keys()
    assert truth.sites
    assert truth.signs
    assert truth.worn_lanes
    assert truth.rain is not None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"schema": 99}, "'schema'"),
        ({"sites": "x"}, "'sites'"),
        ({"start_ms": "soon"}, "'start_ms'"),
        ({"signs": [1]}, r"'signs\[0\]'"),
    ],
)
def test_a_bad_truth_file_names_the_key(change: dict[str, object], named: str) -> None:
    data = {**small_truth().to_json(), **change}
    with pytest.raises(TruthError, match=named):
        from_json(json.loads(json.dumps(data)))


def test_planted_sites_are_busy_and_generated_truth_is_deterministic() -> None:
    again = generate(Plan(seed=7, taxis=3, hours=0.25, start_ms=START_MS, hazard_factor=50))
    assert again == small_truth()
    assert all(0 < s.rate_per_pass <= 0.9 for s in again.sites)


def test_default_start_is_7_local_and_in_the_past() -> None:
    now = START_MS + 30 * HOUR_MS
    start = default_start_ms(2.0, now)
    assert (start // HOUR_MS + 9) % 24 == 7
    assert start + 2 * HOUR_MS <= now


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--taxis", "0"], "--taxis"),
        (["--speed", "0"], "--speed"),
        (["--broker", "nohost"], "--broker"),
        (["--start", "2026-01-01T07:30:00Z"], "--start"),
        (["--truth", "/nonexistent/truth.json"], "/nonexistent/truth.json"),
        (["--fleet", "a b"], "--fleet"),
        (["--tls-ca", "/nonexistent/ca.pem"], "--tls-ca"),
        (["--tls-cert", "/nonexistent/c.pem"], "--tls-cert"),
    ],
)
def test_bad_options_fail_in_one_line_naming_them(
    args: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"--taxis": "2", "--hours": "1", "--broker": "127.0.0.1:1", "--out": str(tmp_path)}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    argv = ["run", *[x for kv in base.items() for x in kv]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert named in err

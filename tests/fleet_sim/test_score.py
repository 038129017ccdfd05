"""The scoring's pure parts on hand-made road cells: no collector needed."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

from fleet_sim.score import Cell, hotspots, poisson_sf
from fleet_sim.truth import Plan, Site, Truth, generate

START_MS = 1_764_540_000_000


def _truth() -> Truth:
    base = generate(Plan(seed=5, taxis=2, hours=1, start_ms=START_MS))
    site = Site("s1", "fcw", 35.87, 128.60, "intersection", 0.5, (0, 24))
    return replace(base, sites=(site,))


def _map(truth: Truth, extra: dict[tuple[float, float], int]) -> dict[str, Cell]:
    """A grid of cells ~115 m apart with background situations, plus ``extra`` ones."""
    rng = random.Random(1)
    cells: dict[str, Cell] = {}
    dlat, dlon = 115 / 111_320, 115 / (111_320 * math.cos(math.radians(35.87)))
    for i in range(-20, 21):
        for j in range(-20, 21):
            lat, lon = 35.87 + i * dlat, 128.60 + j * dlon
            k = sum(rng.random() < 0.005 for _ in range(40))
            k += sum(
                n for (a, b), n in extra.items() if abs(a - lat) < 1e-6 and abs(b - lon) < 1e-6
            )
            props: dict[str, Any] = {"counts": {"fcw": k} if k else {}, "exposure": 40}
            cells[f"{i},{j}"] = Cell(lat, lon, {START_MS: props})
    return cells


def test_poisson_tail() -> None:
    assert poisson_sf(0, 2.0) == 1.0
    assert math.isclose(poisson_sf(1, 2.0), 1 - math.exp(-2.0))
    assert poisson_sf(10, 0.1) < 1e-12


def test_background_alone_flags_nothing() -> None:
    truth = _truth()
    notes: list[str] = []
    result = hotspots(truth, _map(truth, {}), notes)
    assert result["hotspots_flagged"] == 0
    assert result["hotspot_recall"] == 0.0


def test_a_site_split_over_two_cells_is_found_once() -> None:
    truth = _truth()
    dlon = 115 / (111_320 * math.cos(math.radians(35.87)))
    split = {(35.87, 128.60): 4, (35.87, 128.60 + dlon): 4}
    notes: list[str] = []
    result = hotspots(truth, _map(truth, split), notes)
    assert result["hotspot_recall"] == 1.0
    assert result["hotspot_precision"] == 1.0
    assert result["hotspots_flagged"] == 1, notes

"""metrics.render: a well-formed Prometheus text exposition."""

from __future__ import annotations

import re

from cloud_collector.metrics import Histogram, IngestMetrics, render

LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \S+$')


def test_render_is_well_formed() -> None:
    m = IngestMetrics()
    m.received["batch"] += 3
    m.quarantined["too_large_compressed"] += 2
    m.quarantined["bad_field:seq"] += 1
    m.commit_seconds.observe(0.002)
    m.commit_seconds.observe(3.0)
    text = render(m, {"events": 5, "note": "text is skipped", "db size": 1.5})
    for line in text.splitlines():
        assert line.startswith("# ") or LINE.match(line), line
    assert 'collector_quarantined_total{reason="too_large_compressed"} 2' in text
    assert 'collector_quarantined_total{reason="bad_field:seq"} 1' in text
    assert 'collector_commit_seconds_bucket{le="0.0025"} 1' in text
    assert 'collector_commit_seconds_bucket{le="+Inf"} 2' in text
    assert "collector_commit_seconds_count 2" in text
    assert "collector_store_events 5" in text
    assert "collector_store_db_size 1.5" in text
    assert "note" not in text


def test_histogram_is_cumulative() -> None:
    h = Histogram((1.0, 2.0))
    for v in (0.5, 1.5, 1.5, 9.0):
        h.observe(v)
    assert list(h.lines("x")) == [
        'x_bucket{le="1"} 1',
        'x_bucket{le="2"} 3',
        'x_bucket{le="+Inf"} 4',
        "x_sum 12.5",
        "x_count 4",
    ]

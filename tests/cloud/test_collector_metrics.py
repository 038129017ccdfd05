"""metrics.render: a well-formed Prometheus text exposition."""

from __future__ import annotations

from cloud_collector.metrics import Histogram, IngestMetrics, render
from tests.support.metrics_text import malformed_lines, metric


def test_render_is_well_formed() -> None:
    m = IngestMetrics()
    m.received["batch"] += 3
    m.quarantined["too_large_compressed"] += 2
    m.quarantined["bad_field:seq"] += 1
    m.commit_seconds.observe(0.002)
    m.commit_seconds.observe(3.0)
    text = render(m, {"events": 5, "note": "text is skipped", "db size": 1.5})
    assert malformed_lines(text) == []
    assert metric(text, "collector_quarantined_total", reason="too_large_compressed") == 2
    assert metric(text, "collector_quarantined_total", reason="bad_field:seq") == 1
    assert metric(text, "collector_commit_seconds_bucket", le="0.0025") == 1
    assert metric(text, "collector_commit_seconds_bucket", le="+Inf") == 2
    assert metric(text, "collector_commit_seconds_count") == 2
    assert metric(text, "collector_store_events") == 5
    assert metric(text, "collector_store_db_size") == 1.5
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

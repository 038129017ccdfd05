"""The ledger's arithmetic, on hand-made records (no programs started)."""

from __future__ import annotations

import pytest

from harness.faults.ledger import EVENT, GNSS, SAMPLE, Produced, Stored, compare, span


def _produced() -> Produced:
    p = Produced()
    for v in ("a", "b"):
        p.records += [(v, EVENT, "fcw", 100), (v, EVENT, "ldw_left", 200)]
        p.records += [(v, GNSS, "", t) for t in (100, 200, 300)]
        for t in (100, 200, 300):
            key = (v, SAMPLE, "vehicle_speed", t)
            p.records.append(key)
            p.values[key] = t / 10
    return p


def _stored(records: list[tuple[str, str, str, int]]) -> Stored:
    s = Stored()
    for r in records:
        s.records.append(r)
        if r[1] == SAMPLE:
            s.values.setdefault(r, []).append(r[3] / 10)
    return s


def test_the_same_records_are_clean() -> None:
    want = _produced()
    report = compare(want, _stored(list(want.records)))
    assert report.clean
    assert (report.produced, report.stored) == (16, 16)
    report.assert_clean()


def test_lost_doubled_unexpected_and_reordered_are_each_counted() -> None:
    want = _produced()
    got = [r for r in want.records if r != ("a", EVENT, "fcw", 100)]  # lost
    got.append(("b", GNSS, "", 200))  # doubled, and behind t=300 of its stream
    got.append(("a", EVENT, "tsr_sign", 999))  # never produced
    got.append(("zz", EVENT, "fcw", 100))  # another vehicle: not this ledger's business
    report = compare(want, _stored(got))
    assert report.lost == 1
    assert report.doubled == 1
    assert report.unexpected == 1
    assert report.reordered == 1
    assert not report.clean
    with pytest.raises(AssertionError, match="lost 1, doubled 1, reordered 1"):
        report.assert_clean()


def test_order_is_per_vehicle_and_stream() -> None:
    want = _produced()
    # Vehicle b entirely before vehicle a, events after samples: no stream goes back.
    got = sorted(want.records, key=lambda r: (r[0] != "b", r[1] == EVENT))
    assert compare(want, _stored(got)).reordered == 0
    swapped = list(want.records)
    i = swapped.index(("a", SAMPLE, "vehicle_speed", 100))
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    assert compare(want, _stored(swapped)).reordered == 1


def test_altered_values_and_health_doubles() -> None:
    want = _produced()
    got = _stored(list(want.records))
    got.values[("a", SAMPLE, "vehicle_speed", 200)] = [99.0]
    got.health = [("a", 1000, "{}"), ("a", 2000, "{}"), ("a", 2000, "{}"), ("a", 1500, "{}")]
    got.health.append(("a", 2000, '{"other": 1}'))  # another snapshot, same millisecond
    report = compare(want, got)
    assert report.altered == 1
    assert report.health_doubled == 1
    assert report.health_reordered == 1
    assert report.health_stored == 5
    report_without_clock = compare(want, _stored(list(want.records)))
    report_without_clock.assert_clean(health_order=False)


def test_a_window_keeps_only_its_records() -> None:
    want = _produced()
    lo, hi = span(want)
    assert (lo, hi) == (100, 300)
    got = _stored([r for r in want.records if r[3] <= 200])
    report = compare(want, got, (100, 200))
    assert report.clean
    assert report.produced == 12

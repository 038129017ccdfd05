"""The demo orchestrator as a person at a terminal sees it: the dashboard's URL as soon as
the collector answers (on the next free port when the asked one is taken), each taxi as it
comes online, the cut of the proxied taxi's uplink only after that taxi was online, and a
taxi that stays online from one lap of its drive into the next (its agent loops the drive,
it is not restarted). Real broker, collector and agents."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from demo.run import next_free_port, parse_http
from demo.taxi import Lap, LoopingTrack
from harness.collector import REPO
from protocol.records import GnssFix

pytestmark = pytest.mark.integration


def test_parse_http_takes_host_port_and_names_a_bad_value() -> None:
    assert parse_http("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_http("[::1]:9000") == ("::1", 9000)
    assert parse_http("8081") == ("127.0.0.1", 8081)
    for bad in ("localhost:http", "127.0.0.1:0", ":8080", "127.0.0.1:70000"):
        with pytest.raises(Exception, match="expected HOST:PORT"):
            parse_http(bad)


def test_the_track_loops_lap_after_lap_without_overlap() -> None:
    # A 3 s lap from t=100 s, moved by 1000 s; the fix at the lap's end belongs to the next.
    lap = Lap(start_s=100.0, length_s=3.0, shift_s=1000.0)
    fixes = [
        GnssFix(time_ms=t, lat=37.5, lon=127.0 + t / 1e6, mode=3)
        for t in range(100_000, 103_001, 1000)
    ]
    track = LoopingTrack(fixes, lap)
    got = track.until(1106.5) + track.until(1107.0)
    assert [f.time_ms for f in got] == [1_100_000 + i * 1000 for i in range(8)]
    assert [f.lon for f in got] == [f.lon for f in fixes[:3]] * 2 + [f.lon for f in fixes[:2]]
    assert track.until(1107.5) == []


def test_next_free_port_skips_a_taken_one() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        assert next_free_port("127.0.0.1", taken) > taken


LAP_S = 30.0  # --lap-minutes 0.5


@dataclass
class Presence:
    """What the collector's store said of taxi-1, polled: each ``online`` value once it was
    first online, and its track fixes' first and last times."""

    online: list[int | None] = field(default_factory=list)
    first_fix_ms: int | None = None
    last_fix_ms: int | None = None
    fixes: dict[int, tuple[float, float]] = field(default_factory=dict)

    def next_lap_stored(self) -> bool:
        first, last = self.first_fix_ms, self.last_fix_ms
        return first is not None and last is not None and last - first >= (LAP_S + 1) * 1000


def _poll(db: Path, seen: Presence) -> None:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        row = con.execute("SELECT online FROM vehicle_status WHERE vehicle = 'taxi-1'").fetchone()
        if row is not None and (seen.online or row[0] == 1):
            seen.online.append(row[0])
        first, last = con.execute(
            "SELECT MIN(time_ms), MAX(time_ms) FROM gnss WHERE vehicle = 'taxi-1'"
        ).fetchone()
        seen.first_fix_ms, seen.last_fix_ms = first, last
        if first is not None:
            for t, lat, lon in con.execute(
                "SELECT time_ms, lat, lon FROM gnss WHERE vehicle = 'taxi-1' AND time_ms IN (?, ?)",
                (first, first + round(LAP_S * 1000)),
            ):
                seen.fixes[t] = (lat, lon)


def _watch_presence(db: Path, seen: Presence, done: threading.Event) -> None:
    while not done.is_set():
        with contextlib.suppress(sqlite3.Error):
            _poll(db, seen)
        done.wait(0.2)


def _read(demo: subprocess.Popen[str], lines: list[str]) -> None:
    assert demo.stdout is not None
    for line in demo.stdout:
        lines.append(line.rstrip("\n"))


def _all_seen(lines: list[str], want: list[str]) -> bool:
    return all(any(re.search(p, line) for line in list(lines)) for p in want)


def test_demo_announces_taxis_times_the_cut_and_keeps_a_taxi_online_across_laps(
    tmp_path: Path,
) -> None:
    var = tmp_path / "demo"
    seen = Presence()
    lines: list[str] = []
    done = threading.Event()
    db = var / "collector.sqlite3"
    watcher = threading.Thread(target=_watch_presence, args=(db, seen, done))
    taxis = ("taxi-1", "taxi-2", "taxi-3", "taxi-4")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo", "--var", str(var), "--http", f"127.0.0.1:{taken}",
             "--taxis", "4", "--lap-minutes", "0.5", "--outage-after", "1",
             "--outage-for", "3", "--duration", "180"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        watcher.start()
        reader = threading.Thread(target=_read, args=(demo, lines))
        reader.start()
        want = [rf"\b{t} online\b" for t in taxis] + ["uplink of taxi-4 cut"]
        try:
            # Until what is asserted below has happened (then Ctrl-C), or the demo ended.
            deadline = time.monotonic() + 180
            while demo.poll() is None and time.monotonic() < deadline:
                if _all_seen(lines, want) and seen.next_lap_stored():
                    done.set()  # the stop below takes every taxi offline
                    watcher.join(5)
                    demo.send_signal(signal.SIGINT)
                    break
                time.sleep(0.2)
            code = demo.wait(60)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait(10)
            reader.join(10)
            done.set()
            watcher.join(5)
    out = "\n".join(lines)
    assert code == 0, out[-3000:]

    def first(pattern: str) -> int:
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, f"no line matching {pattern!r} in:\n{out}"
        return found[0]

    url_at = first(r"dashboard: http://127\.0\.0\.1:(\d+)/")
    port = int(re.search(r":(\d+)/", lines[url_at]).group(1))  # type: ignore[union-attr]
    assert port > taken, "the taken port was not skipped"
    online = {t: first(rf"\b{t} online\b") for t in taxis}
    assert url_at < min(online.values()), "the URL must come as soon as the collector answers"
    assert online["taxi-4"] < first(r"uplink of taxi-4 cut"), out
    _assert_online_across_laps(seen, lines)


def _assert_online_across_laps(seen: Presence, lines: list[str]) -> None:
    """taxi-1 played into its second lap (a fix a lap after the first, at the same place)
    and was never offline: its agent was not restarted between laps."""
    assert seen.next_lap_stored(), (seen.first_fix_ms, seen.last_fix_ms)
    assert seen.first_fix_ms is not None
    lap_later = seen.first_fix_ms + round(LAP_S * 1000)
    assert seen.fixes.get(lap_later) == seen.fixes[seen.first_fix_ms], seen.fixes
    assert set(seen.online) == {1}, seen.online
    assert not any("agent exited" in line for line in lines), lines

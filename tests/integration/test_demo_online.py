"""The demo orchestrator as a person at a terminal sees it: the dashboard's URL as soon as
the collector answers (on the next free port when the asked one is taken), each taxi as it
comes online, the cut of the proxied taxi's uplink only after that taxi was online, and the
next drive generated while the current one plays. Real broker, collector and agents."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from demo.run import next_free_port, parse_http
from harness.collector import REPO

pytestmark = pytest.mark.integration


def test_parse_http_takes_host_port_and_names_a_bad_value() -> None:
    assert parse_http("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_http("[::1]:9000") == ("::1", 9000)
    assert parse_http("8081") == ("127.0.0.1", 8081)
    for bad in ("localhost:http", "127.0.0.1:0", ":8080", "127.0.0.1:70000"):
        with pytest.raises(Exception, match="expected HOST:PORT"):
            parse_http(bad)


def test_next_free_port_skips_a_taken_one() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        assert next_free_port("127.0.0.1", taken) > taken


def _watch_drives(drives: Path, seen: set[frozenset[str]], done: threading.Event) -> None:
    while not done.is_set():
        with contextlib.suppress(OSError):
            seen.add(frozenset(p.name for p in drives.iterdir() if p.name.startswith("taxi-1-")))
        time.sleep(0.2)


def _read(demo: subprocess.Popen[str], lines: list[str]) -> None:
    assert demo.stdout is not None
    for line in demo.stdout:
        lines.append(line.rstrip("\n"))


def _all_seen(lines: list[str], want: list[str]) -> bool:
    return all(any(re.search(p, line) for line in list(lines)) for p in want)


def test_demo_announces_url_and_taxis_and_times_the_cut_from_the_taxi(tmp_path: Path) -> None:
    var = tmp_path / "demo"
    seen: set[frozenset[str]] = set()
    lines: list[str] = []
    done = threading.Event()
    watcher = threading.Thread(target=_watch_drives, args=(var / "drives", seen, done))
    taxis = ("taxi-1", "taxi-2", "taxi-3", "taxi-4")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo", "--var", str(var), "--http", f"127.0.0.1:{taken}",
             "--taxis", "4", "--lap-minutes", "0.5", "--outage-after", "1",
             "--outage-for", "3", "--duration", "150"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        watcher.start()
        reader = threading.Thread(target=_read, args=(demo, lines))
        reader.start()
        want = [rf"\b{t} online\b" for t in taxis] + ["uplink of taxi-4 cut"]
        try:
            # Until what is asserted below has happened (then Ctrl-C), or the demo ended.
            deadline = time.monotonic() + 150
            while demo.poll() is None and time.monotonic() < deadline:
                if _all_seen(lines, want) and any(len(names) >= 2 for names in seen):
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
    # taxi-1's next drive existed while the current one played.
    assert any(len(names) >= 2 for names in seen), sorted(map(sorted, seen))

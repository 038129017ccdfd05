"""The collector's CPU per HTTP request of a cheap route: the cost of the framework
(middleware, authentication, routing), not of a query.

    .venv/bin/python -m bench.request_cost [--requests 2000] [--src CHECKOUT] [--asgi]

Starts the collector's app (an empty SQLite store in a temporary directory, an admin token
minted into it) under uvicorn in a child process on 127.0.0.1, then sends ``--requests``
requests with keep-alive (one httpx client, one at a time) to each of: /healthz and /readyz
(public), /v1/signs (authenticated, empty store), a cached vector tile, /v1/signs again
with a rate limit that refuses nearly every request (the token's 429, after
authentication), and /v1/events with every overall slot taken (the overall limit's 429,
before authentication since it exists). ``--src`` runs the app of another
checkout (e.g. one before a change) for a before/after comparison. ``--asgi`` calls the
app in-process in a loop instead (no server, no socket: the middleware stack, routing and
handler alone, the least noisy figure on a shared machine).

Prints one JSON line per route: requests, their statuses, the child's CPU milliseconds per
request (from /proc: load-independent) and the wall milliseconds per request, with the
load average, since on a shared machine wall-clock figures depend on everyone's work.
Bounded: ``--requests`` per route and a deadline per phase (``--timeout``). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

# The child: the app over an empty store, an admin token printed, served by uvicorn.
_SERVE = """
import asyncio, sys
import uvicorn
from cloud_collector.api import create_app
from cloud_collector.config import HttpConfig
from cloud_collector.roles import Role
from cloud_collector.store import open_store
from cloud_collector.store.access import TokenRecord
from cloud_collector.tokens_cli import create_token

LIMITS = {"open": {}, "full": {"max_concurrent": 1, "max_concurrent_per_client": 1}}

async def main(path, port, rate, burst, slots):
    store = await open_store(f"sqlite:///{path}")
    record = TokenRecord(name="bench", token_hash="", role=Role.ADMIN, fleets=(),
                         created_ms=0, expires_ms=None, revoked_ms=None)
    token = await create_token(store.access, record)
    app = create_app(store, http=HttpConfig(rate_per_s=rate, rate_burst=burst, **LIMITS[slots]))
    if slots == "full":  # the one overall slot held, as by a request in progress
        app.state.guard.limits.admit("bench-holder", 0.0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    print(token, flush=True)
    await server.serve()

path, port, rate, burst, slots = sys.argv[1:6]
asyncio.run(main(path, int(port), float(rate), int(burst), slots))
"""

# The child of ``--asgi``: the same app called directly (no server, no socket), ``n`` times
# in a loop; prints the CPU ms per request (the middleware stack, routing and handler).
_ASGI = """
import asyncio, os, sys, tempfile, time
from cloud_collector.api import create_app
from cloud_collector.config import HttpConfig
from cloud_collector.roles import Role
from cloud_collector.store import open_store
from cloud_collector.store.access import TokenRecord
from cloud_collector.tokens_cli import create_token

LIMITS = {"open": {}, "full": {"max_concurrent": 1, "max_concurrent_per_client": 1}}

async def main(path, route, n, rate, burst, slots):
    store = await open_store(f"sqlite:///{path}")
    record = TokenRecord(name="bench", token_hash="", role=Role.ADMIN, fleets=(),
                         created_ms=0, expires_ms=None, revoked_ms=None)
    token = await create_token(store.access, record)
    app = create_app(store, http=HttpConfig(rate_per_s=rate, rate_burst=burst, **LIMITS[slots]))
    if slots == "full":  # the one overall slot held, as by a request in progress
        app.state.guard.limits.admit("bench-holder", 0.0)
    headers = [(b"host", b"t"), (b"authorization", f"Bearer {token}".encode())]

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def one():
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": route, "raw_path": route.encode(),
                 "root_path": "", "query_string": b"", "headers": list(headers),
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
        await app(scope, receive, send)

    statuses = []
    await one()
    statuses.clear()
    cpu0 = time.process_time()
    for _ in range(n):
        await one()
    cpu = time.process_time() - cpu0
    print(len(statuses), sorted(set(statuses)), cpu, flush=True)
    os._exit(0)  # the store's threads: nothing to flush

path, route, n, rate, burst, slots = sys.argv[1:7]
asyncio.run(main(path, route, int(n), float(rate), int(burst), slots))
"""

# (rate per s, burst, overall slots): OPEN gives no 429; REFUSING one answer, then 429s
# of the token's rate (after authentication); FULL the overall limit's 429 for every
# request (its one slot held by a request "in progress").
OPEN = ("1000000", "1000000", "open")
REFUSING = ("0.001", "1", "open")
FULL = ("1000000", "1000000", "full")

ROUTES = (
    ("healthz", "/healthz", OPEN),
    ("readyz", "/readyz", OPEN),
    ("signs", "/v1/signs", OPEN),
    ("tile (cached)", "/tiles/events/14/8800/5370.mvt", OPEN),
    ("signs 429 (token's rate)", "/v1/signs", REFUSING),
    ("events 429 (overall limit)", "/v1/events", FULL),
)


def _child_env(src: str | None) -> dict[str, str]:
    """The environment of a child running the app of ``src`` (default: this checkout); the
    child runs in a directory of its own, so no other checkout's code can come first."""
    root = Path(src) if src is not None else Path(__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": str(root.resolve())}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_up(client: httpx.Client, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            client.get("/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError("the collector app did not start in time")


def measure(
    name: str, path: str, limits: tuple[str, str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """One route's figures, from a child of its own (fresh limits and caches)."""
    env = _child_env(args.src)
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-c", _SERVE, str(Path(tmp) / "s.sqlite3"), str(port), *limits]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp)
        try:
            assert child.stdout is not None
            token = child.stdout.readline().strip()
            if not token:
                raise RuntimeError("the collector app printed no token")
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
                deadline = time.monotonic() + args.timeout
                _wait_up(client, deadline)
                client.get(path)  # warm: first-use imports, caches
                statuses: Counter[int] = Counter()
                cpu0, t0 = _cpu_s(child.pid), time.monotonic()
                for _ in range(args.requests):
                    if time.monotonic() > deadline:
                        break
                    statuses[client.get(path).status_code] += 1
                cpu1, t1 = _cpu_s(child.pid), time.monotonic()
        finally:
            child.terminate()
            child.wait(timeout=30)
    n = sum(statuses.values())
    return {
        "route": name, "path": path, "requests": n, "statuses": dict(statuses),
        "cpu_ms_per_request": round(1000 * (cpu1 - cpu0) / max(n, 1), 3),
        "wall_ms_per_request": round(1000 * (t1 - t0) / max(n, 1), 3),
        "loadavg": os.getloadavg()[0], "src": args.src or ".",
    }  # fmt: skip


def measure_asgi(
    name: str, path: str, limits: tuple[str, str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """One route's figures with the app called in-process (no server)."""
    env = _child_env(args.src)
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-c", _ASGI, str(Path(tmp) / "s.sqlite3"), path,
                str(args.requests), *limits]  # fmt: skip
        done = subprocess.run(
            argv, env=env, cwd=tmp, capture_output=True, text=True, timeout=args.timeout, check=True
        )
    words = done.stdout.strip().rsplit("\n", 1)[-1].split()
    n, statuses, cpu_s = words[0], " ".join(words[1:-1]), float(words[-1])
    return {
        "route": name, "path": path, "requests": int(n), "statuses": statuses,
        "asgi_cpu_ms_per_request": round(1000 * cpu_s / max(int(n), 1), 3),
        "loadavg": os.getloadavg()[0], "src": args.src or ".",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per route")
    parser.add_argument("--src", help="a checkout whose app to run (default: this one)")
    parser.add_argument(
        "--asgi", action="store_true", help="call the app in-process instead (no server)"
    )
    args = parser.parse_args()
    run = measure_asgi if args.asgi else measure
    for name, path, limits in ROUTES:
        print(json.dumps(run(name, path, limits, args)), flush=True)


if __name__ == "__main__":
    main()

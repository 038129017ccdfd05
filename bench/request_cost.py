"""The collector's CPU per HTTP request of a cheap route: the cost of the framework
(middleware, authentication, routing), not of a query.

    .venv/bin/python -m bench.request_cost [--requests 2000] [--src CHECKOUT]

Starts the collector's app (an empty SQLite store in a temporary directory, an admin token
minted into it) under uvicorn in a child process on 127.0.0.1, then sends ``--requests``
requests with keep-alive (one httpx client, one at a time) to each of: /healthz (public),
/v1/signs (authenticated, empty store), a cached vector tile, and /v1/signs again with a
rate limit that refuses nearly every request (429). ``--src`` runs the app of another
checkout (e.g. one before a change) for a before/after comparison.

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

async def main(path, port, rate, burst):
    store = await open_store(f"sqlite:///{path}")
    record = TokenRecord(name="bench", token_hash="", role=Role.ADMIN, fleets=(),
                         created_ms=0, expires_ms=None, revoked_ms=None)
    token = await create_token(store.access, record)
    http = HttpConfig(rate_per_s=rate, rate_burst=burst)
    app = create_app(store, http=http)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    print(token, flush=True)
    await server.serve()

path, port, rate, burst = sys.argv[1:5]
asyncio.run(main(path, int(port), float(rate), int(burst)))
"""

OPEN = ("1000000", "1000000")  # rate per s, burst: no 429
REFUSING = ("0.001", "1")  # one request, then 429s

ROUTES = (
    ("healthz", "/healthz", OPEN),
    ("signs", "/v1/signs", OPEN),
    ("tile (cached)", "/tiles/events/14/8800/5370.mvt", OPEN),
    ("signs 429", "/v1/signs", REFUSING),
)


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
    name: str, path: str, limits: tuple[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """One route's figures, from a child of its own (fresh limits and caches)."""
    env = dict(os.environ)
    if args.src is not None:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-c", _SERVE, str(Path(tmp) / "s.sqlite3"), str(port), *limits]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per route")
    parser.add_argument("--src", help="a checkout whose app to run (default: this one)")
    args = parser.parse_args()
    for name, path, limits in ROUTES:
        print(json.dumps(measure(name, path, limits, args)), flush=True)


if __name__ == "__main__":
    main()

"""Recording readers compared, and what python-can's eager asammdf import would cost.

    .venv/bin/python -m bench.formats

Converts the fixture drive (hw_fixtures/drives/drive.log) to SavvyCAN/GVRET CSV and MDF4
under bench/out/, then, each in a fresh child process: frames per CPU-second of
``ReplaySource`` over each format, and the CPU time and peak RSS of importing the agent's
command line with asammdf hidden until needed (as the agent does) and without hiding it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "formats"
DRIVE = Path(__file__).resolve().parents[1] / "hw_fixtures" / "drives" / "drive.log"
UTC = {**os.environ, "TZ": "UTC"}


def convert() -> dict[str, Path]:
    import can
    from can.util import channel2int

    from edge_agent.recordings import GVRET_HEADER, load_mdf4_support
    from edge_agent.sources import ReplaySource

    OUT.mkdir(parents=True, exist_ok=True)
    frames = list(ReplaySource(DRIVE).frames())
    csv, mf4 = OUT / "drive.csv", OUT / "drive.mf4"
    if not csv.exists():
        with csv.open("w") as out:
            out.write(GVRET_HEADER + "\n")
            for f in frames:
                data = "".join(f"{b:02X}," for b in f.data)
                bus = channel2int(f.channel)
                out.write(
                    f"{round(f.timestamp * 1e6)},{f.arbitration_id:08X},false,Rx,{bus},"
                    f"{len(f.data)},{data}\n"
                )
    if not mf4.exists():
        module = load_mdf4_support()
        assert module is not None, "needs the mdf extra"
        writer = module.MF4Writer(str(mf4))
        for f in frames:
            writer.on_message_received(
                can.Message(
                    timestamp=f.timestamp,
                    arbitration_id=f.arbitration_id,
                    data=bytes(f.data),
                    channel=channel2int(f.channel),
                    check=False,
                )
            )
        writer.stop()
    return {".log": DRIVE, ".csv": csv, ".mf4": mf4}


def peak_rss_mb() -> float:
    """This process's own peak (VmHWM): ru_maxrss would carry the forking parent's over exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_read(path: str) -> None:
    from edge_agent.sources import ReplaySource

    start = time.process_time()
    n = sum(1 for _ in ReplaySource(Path(path)).frames())
    cpu = time.process_time() - start
    print(json.dumps({"frames": n, "fps": n / cpu, "rss_mb": peak_rss_mb()}))


def child_import(hide: bool) -> None:
    start = time.process_time()
    if not hide:
        import can  # noqa: F401 - python-can first, as any importer before the agent would
    import edge_agent.cli  # noqa: F401

    cpu = time.process_time() - start
    print(json.dumps({"cpu_s": cpu, "rss_mb": peak_rss_mb(), "numpy": "numpy" in sys.modules}))


def child(*args: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.formats", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=UTC)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    if sys.argv[1:2] == ["read"]:
        child_read(sys.argv[2])
        return
    if sys.argv[1:2] == ["import"]:
        child_import(sys.argv[2] == "hidden")
        return
    for suffix, path in convert().items():
        r = child("read", str(path))
        print(f"{suffix}: {r['frames']:.0f} frames, {r['fps']:,.0f} frames/CPU-s, "
              f"peak RSS {r['rss_mb']:.1f} MB")  # fmt: skip
    for mode in ("hidden", "eager"):
        r = child("import", mode)
        print(f"import edge_agent.cli, asammdf {mode}: {r['cpu_s']:.2f} CPU-s, "
              f"peak RSS {r['rss_mb']:.1f} MB, numpy loaded: {r['numpy']}")  # fmt: skip


if __name__ == "__main__":
    main()

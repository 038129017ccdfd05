"""SavvyCAN/GVRET CSV and ASAM MDF4 recordings: the fixture drive converted to each decodes
to the candump log's events; bad files of each kind are one line naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import main
from edge_agent.errors import RecordingError
from edge_agent.sources import ReplaySource
from harness.agent import make_recording
from tests.support.recordings import GVRET_HEADER, convert

ROOT = Path(__file__).resolve().parents[2]
DRIVE_LOG = ROOT / "hw_fixtures" / "drives" / "drive.log"


def decode(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "decode", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TZ": "UTC"},
    )


def events_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("formats")
    # python-can's MF4Writer stores the start as local time without a zone; decode reads
    # it back in its own zone (TZ=UTC), so it is written in that zone too.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "UTC")
        time.tzset()
        paths = {s: convert(DRIVE_LOG, tmp / f"drive{s}") for s in (".csv", ".mf4")}
    time.tzset()
    return paths


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two seconds of the drive in each format, for tests that need a real file, not events."""
    tmp = tmp_path_factory.mktemp("small")
    log = make_recording(tmp / "small.log", 2.0)
    return {s: convert(log, tmp / f"small{s}") for s in (".csv", ".mf4")}


@pytest.fixture(scope="module")
def log_events() -> list[dict[str, Any]]:
    return events_of(decode(DRIVE_LOG))


@pytest.mark.parametrize("suffix", [".csv", ".mf4"])
def test_converted_drive_gives_the_candump_logs_events(
    suffix: str, converted: dict[str, Path], log_events: list[dict[str, Any]]
) -> None:
    events = events_of(decode(converted[suffix]))
    assert len(events) >= 12
    # Both formats number their buses (0, 1) where candump names them (can0, can1).
    assert {e.pop("bus") for e in events} == {"0", "1"}
    expected = [{k: v for k, v in e.items() if k != "bus"} for e in log_events]
    assert events == expected


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def last_error(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"edge-agent: {path}"), line
    return line


def test_gvret_lines_in_their_variants_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.csv",
        "\ufeffTime Stamp,ID,Extended,Bus,LEN,D1,D2,D3,D4,D5,D6,D7,D8\n"  # no Dir column
        "1772436600000000,0x700,false,0,8,0x10,20,01,01,01,00,00,01\n"
        "1772436600000400,738,False,0,2,01,0A,,,,,,\n"
        "1772436600001000,18FEF100,true,1,0,\n"
        "\n",
    )
    source = ReplaySource(path)
    frames = list(source.frames())
    assert [(f.timestamp, f.arbitration_id, f.channel) for f in frames] == [
        (1772436600.0, 0x700, "0"),
        (1772436600.0004, 0x738, "0"),
        (1772436600.001, 0x18FEF100, "1"),
    ]
    assert bytes(frames[0].data) == bytes.fromhex("1020010101000001")
    assert bytes(frames[1].data) == b"\x01\x0a"
    assert frames[2].is_extended_id
    assert frames[2].data == b""
    assert source.stats.malformed_lines == 0


def test_gvret_malformed_lines_are_skipped_counted_and_the_first_named(tmp_path: Path) -> None:
    good = "1772436600000000,00000700,false,Rx,0,8,10,20,01,01,01,00,00,01,"
    lines = [
        GVRET_HEADER,
        good,
        "1772436600000100,00000700,maybe,Rx,0,8,10,20,01,01,01,00,00,01,",  # line 3
        "1772436600000200,00000700,false,Rx,0,8,10,20,01",  # fewer bytes than LEN
        "1772436600000300,00000700,false,Rx,0,8,10,20,01,01,01,00,00,100,",  # byte > 0xFF
        "1772436600000400,00000800,false,Rx,0,1,00,",  # 11-bit id out of range
        "garbage",
        good.replace("600000000", "600000500"),
        "17724366000009",  # cut by a power failure
    ]
    source = ReplaySource(write(tmp_path / "bad.csv", "\n".join(lines)))
    assert len(list(source.frames())) == 2
    assert source.stats.malformed_lines == 6
    assert source.stats.first_bad_line == 3
    assert "Extended" in source.stats.first_bad_reason


def test_truncated_gvret_decodes_good_lines_and_names_the_bad_one(
    tmp_path: Path, small: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    lines = small[".csv"].read_text().splitlines()
    keep = len(lines) // 2
    cut = write(tmp_path / "cut.csv", "\n".join(lines[:keep]) + "\n" + lines[keep][:20])
    assert main(["decode", str(cut)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    summary, line = err.strip().splitlines()[-2:]
    assert json.loads(summary)["summary"]["frames"] == keep - 1  # every line but the header
    assert line.startswith(f"edge-agent: {cut}:{keep + 1}: malformed line"), line
    assert line.endswith("1 line(s) skipped")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.csv", "", ": empty file"),
        ("blank.csv", "\n\n", ": empty file"),
        ("garbage.csv", bytes(range(256)) * 8, ":1: not a SavvyCAN/GVRET CSV header"),
        (
            "python-can.csv",  # python-can's own CSV layout
            "timestamp,arbitration_id,extended,remote,error,dlc,data\n"
            "1772436600.0,0x700,1,0,0,8,ECAgAQEBAAAB\n",
            ":1: not a SavvyCAN/GVRET CSV header",
        ),
        ("header-only.csv", GVRET_HEADER + "\n", ": no CAN frames in recording"),
        ("empty.mf4", b"", ": empty file"),
        ("garbage.mf4", bytes(range(256)) * 8, ": not an MDF file"),
        ("blf.mf4", (ROOT / "hw_fixtures/drives/drive.blf").read_bytes(), ": not an MDF file"),
        ("mdf3.mf4", b"MDF     3.30    " + bytes(48), ": MDF version '3.30', only MDF 4.x"),
        ("short.mf4", b"MDF     4.10    ", ": file is truncated"),
    ],
)
def test_bad_files_are_one_line_naming_the_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str | bytes,
    reason: str,
) -> None:
    path = write(tmp_path / name, content)
    assert main(["decode", str(path)]) == 1
    assert capsys.readouterr().out == ""
    assert main(["decode", str(path)]) == 1
    line = last_error(capsys, path)
    assert line.startswith(f"edge-agent: {path}{reason}"), line


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_mf4_is_one_line(
    tmp_path: Path,
    small: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    keep: float,
) -> None:
    whole = small[".mf4"].read_bytes()
    cut = write(tmp_path / "cut.mf4", whole[: int(len(whole) * keep)])
    assert main(["decode", str(cut)]) == 1
    line = last_error(capsys, cut)
    assert line.startswith(f"edge-agent: {cut}: corrupt or truncated MDF4 file"), line


def test_gzipped_formats_are_read(tmp_path: Path, small: dict[str, Path]) -> None:
    import gzip

    for suffix in (".csv", ".mf4"):
        packed = write(tmp_path / f"d{suffix}.gz", gzip.compress(small[suffix].read_bytes()))
        frames = ReplaySource(packed).frames()
        first = [next(frames) for _ in range(3)]
        assert [f.arbitration_id for f in first] == [0x153, 0x2B0, 0x394]
        cut = write(tmp_path / f"cut{suffix}.gz", packed.read_bytes()[:-40])
        with pytest.raises(RecordingError, match=rf"cut\{suffix}\.gz: .*truncated"):
            list(ReplaySource(cut).frames())


def test_mf4_without_the_extra_names_it(small: dict[str, Path]) -> None:
    # A None entry in sys.modules makes `import asammdf` fail, as on a plain gateway install.
    code = (
        "import sys; sys.modules['asammdf'] = None\n"
        "from edge_agent.cli import main\n"
        f"raise SystemExit(main(['decode', {str(small['.mf4'])!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"edge-agent: {small['.mf4']}: reading MDF4 needs the edge agent's mdf extra "
        "(pip install 'taxi-edge-agent[mdf]')"
    )


def test_the_agent_loads_asammdf_only_to_read_mf4(small: dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import edge_agent.cli\n"
        "from edge_agent.sources import ReplaySource\n"
        "before = sorted(m for m in ('asammdf', 'numpy', 'pandas') if m in sys.modules)\n"
        f"n = sum(1 for _ in ReplaySource(Path({str(small['.mf4'])!r})).frames())\n"
        "print(before, n, 'asammdf' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    before, frames, loaded = result.stdout.rsplit(" ", 2)
    assert before == "[]"
    assert int(frames) > 1000
    assert loaded.strip() == "True"

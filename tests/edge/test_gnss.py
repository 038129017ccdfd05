"""The gpsd client: the pure parser, backoff and address parsing, a scripted fake gpsd
for the connection logic, and a real gpsd (``integration``) fed with generated NMEA."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.errors import GnssError
from edge_agent.gnss import GpsdClient
from edge_agent.gpsd_protocol import (
    WATCH_COMMAND,
    GpsdStream,
    OtherReport,
    Rejected,
    TpvReport,
    merge_fixes,
    parse_endpoint,
    parse_line,
)
from harness.gpsd import GpsdHarness, nmea_sentence
from harness.mosquitto import free_port
from protocol.records import GnssFix

LOCALHOST = "127.0.0.1"
# Every wait in this file is bounded by this, so a broken gpsd fails fast, never hangs.
WAIT_S = 5.0

# A TPV line exactly as gpsd 3.22 writes it for an NMEA receiver.
TPV_3D = (
    '{"class":"TPV","device":"tcp://127.0.0.1:40001","mode":3,'
    '"time":"2024-05-01T10:00:01.700Z","ept":0.005,"lat":48.117583333,'
    '"lon":11.516666667,"altHAE":592.3000,"altMSL":545.4000,"alt":545.4000,'
    '"track":84.4000,"magtrack":81.3000,"magvar":-3.1,"speed":11.524,"climb":0.000,'
    '"geoidSep":46.900,"eph":17.100}'
)
TPV_3D_TIME_MS = 1_714_557_601_700  # 2024-05-01T10:00:01.700Z
TPV_3D_FIX = GnssFix(
    time_ms=TPV_3D_TIME_MS,
    lat=48.117583333,
    lon=11.516666667,
    mode=3,
    alt_m=592.3,  # altHAE, not the MSL "alt"
    speed_mps=11.524,
    track_deg=84.4,
    clock_offset_ms=2_500,  # when it arrives 2.5 s after its GNSS time
)


def tpv(**changes: Any) -> str:
    """TPV_3D with fields replaced; a value of ``...`` removes the field."""
    obj = json.loads(TPV_3D)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key, None)
        else:
            obj[key] = value
    return json.dumps(obj)


# ---------------------------------------------------------------- parser


def test_tpv_3d_becomes_a_fix_with_clock_offset() -> None:
    parsed = parse_line(TPV_3D.encode() + b"\r\n", received_ms=TPV_3D_TIME_MS + 2_500)
    assert parsed == TpvReport(3, TPV_3D_FIX)


def test_clock_offset_is_negative_when_the_system_clock_is_behind() -> None:
    parsed = parse_line(TPV_3D, received_ms=0)
    assert isinstance(parsed, TpvReport)
    assert parsed.fix is not None
    assert parsed.fix.clock_offset_ms == -TPV_3D_TIME_MS


def test_alt_is_used_when_there_is_no_alt_hae() -> None:
    parsed = parse_line(tpv(altHAE=..., alt=100.5), 0)
    assert isinstance(parsed, TpvReport)
    assert parsed.fix is not None
    assert parsed.fix.alt_m == 100.5


def test_2d_fix_has_no_altitude_and_optional_fields_may_be_missing() -> None:
    parsed = parse_line(tpv(mode=2, speed=..., track=...), 0)
    assert isinstance(parsed, TpvReport)
    assert parsed.fix is not None
    assert (parsed.fix.mode, parsed.fix.alt_m, parsed.fix.speed_mps, parsed.fix.track_deg) == (
        2,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("mode", [0, 1])
def test_tpv_without_fix_reports_the_mode_only(mode: int) -> None:
    line = json.dumps({"class": "TPV", "device": "/dev/ttyS0", "mode": mode})
    assert parse_line(line, 0) == TpvReport(mode, None)


def test_a_fix_without_a_time_is_counted_not_rejected() -> None:
    # gpsd sends this while GGA gave it a position and the time of day but no RMC has
    # given the date yet: a real gpsd at start-up, not garbage.
    stream = GpsdStream()
    assert stream.feed(tpv(time=...), 0) == TpvReport(3, None, untimed=True)
    assert stream.malformed == {}
    assert stream.untimed_reports == 1
    assert stream.fix_mode == 3
    assert stream.flush() == []


@pytest.mark.parametrize(
    ("time_text", "time_ms"),
    [
        ("2024-05-01T10:00:01Z", 1_714_557_601_000),
        ("2024-05-01T10:00:01.7Z", 1_714_557_601_700),
        ("2024-05-01T10:00:01.123456789Z", 1_714_557_601_123),  # truncated, not rounded
        ("2016-12-31T23:59:60.500Z", 1_483_228_800_500),  # a leap second
    ],
)
def test_time_formats(time_text: str, time_ms: int) -> None:
    parsed = parse_line(tpv(time=time_text), 0)
    assert isinstance(parsed, TpvReport)
    assert parsed.fix is not None
    assert parsed.fix.time_ms == time_ms


@pytest.mark.parametrize(
    "cls", ["VERSION", "DEVICES", "DEVICE", "WATCH", "SKY", "GST", "ATT", "PPS", "ERROR"]
)
def test_other_classes_are_recognised_and_ignored(cls: str) -> None:
    assert parse_line(json.dumps({"class": cls, "whatever": [1, 2]}), 0) == OtherReport(cls)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (TPV_3D[:60], "bad_json"),  # truncated
        ("", "bad_json"),
        ('{"class":"TPV","mode":3,"lat":NaN}', "bad_json"),
        ("[" * 100_000, "bad_json"),  # deeper than the decoder's recursion limit
        (b'{"class":"TPV","x":"\xff"}', "not_utf8"),
        ("[1, 2]", "not_object"),
        ('"TPV"', "not_object"),
        ('{"mode":3}', "class_missing"),
        ('{"class":7}', "class_wrong_type"),
        (tpv(mode=...), "mode_missing"),
        (tpv(mode="3"), "mode_wrong_type"),
        (tpv(mode=True), "mode_wrong_type"),
        (tpv(mode=3.0), "mode_wrong_type"),
        (tpv(mode=7), "mode_out_of_range"),
        (tpv(time=1714557601.7), "time_wrong_type"),
        (tpv(time="yesterday"), "time_bad_format"),
        (tpv(time="2024-05-01 10:00:01Z"), "time_bad_format"),
        (tpv(time="2024-05-01T10:00:01.700+02:00"), "time_bad_format"),
        (tpv(time="2024-02-30T10:00:01Z"), "time_out_of_range"),
        (tpv(time="2024-05-01T10:00:61Z"), "time_out_of_range"),
        (tpv(time="1970-01-01T00:00:00Z"), "time_out_of_range"),  # before GPS time began
        (tpv(lat=...), "lat_missing"),
        (tpv(lon=...), "lon_missing"),
        (tpv(lat=200.0), "lat_out_of_range"),
        (tpv(lat=-90.5), "lat_out_of_range"),
        (tpv(lat="48.1"), "lat_wrong_type"),
        (tpv(lat=[48.1]), "lat_wrong_type"),
        (tpv(lon=-181), "lon_out_of_range"),
        (tpv(lon=False), "lon_wrong_type"),
        (tpv(altHAE=1e9), "altHAE_out_of_range"),
        (tpv(altHAE=..., alt="high"), "alt_wrong_type"),
        (tpv(speed=-1.0), "speed_out_of_range"),
        (tpv(speed=10_000.0), "speed_out_of_range"),
        (tpv(track=400), "track_out_of_range"),
        (tpv(track={"deg": 1}), "track_wrong_type"),
    ],
)
def test_malformed_lines_are_rejected_with_a_reason(line: str | bytes, reason: str) -> None:
    assert parse_line(line, 0) == Rejected(reason)


def test_stream_counts_and_tracks_the_fix_state() -> None:
    stream = GpsdStream()
    no_fix = json.dumps({"class": "TPV", "mode": 1})
    for line in ['{"class":"VERSION"}', TPV_3D, "{oops", tpv(lat=200.0), no_fix, "{oops"]:
        stream.feed(line, TPV_3D_TIME_MS)
    assert stream.latest is not None
    assert stream.latest.lat == 48.117583333  # the last fix stays; its time tells its age
    assert stream.fix_mode == 1  # ...but health sees that there is no fix now
    assert stream.malformed == {"bad_json": 2, "lat_out_of_range": 1}
    assert stream.reports == {"VERSION": 1, "TPV": 2}
    assert [fix.lat for fix in stream.flush()] == [48.117583333]
    stream.lost()
    assert stream.fix_mode == 0


def test_reports_of_one_epoch_become_one_fix() -> None:
    # What gpsd 3.22 sends after a spell without fix: a TPV after GGA (no track, speed
    # from positions), then one after RMC, with the same time.
    after_gga = tpv(track=..., speed=11.119)
    after_rmc = tpv(altHAE=..., alt=..., magtrack=...)
    next_epoch = tpv(time="2024-05-01T10:00:01.800Z", lat=48.1176)
    stream = GpsdStream()
    stream.feed(after_gga, TPV_3D_TIME_MS + 40)
    assert stream.pending
    stream.feed(after_rmc, TPV_3D_TIME_MS + 90)
    assert stream.take_complete() == []  # the epoch may still grow
    assert stream.latest is not None
    assert stream.latest.track_deg == 84.4  # latest is merged at once
    stream.feed(next_epoch, TPV_3D_TIME_MS + 140)
    (fix,) = stream.take_complete()
    assert (fix.time_ms, fix.speed_mps, fix.track_deg, fix.alt_m) == (
        TPV_3D_TIME_MS,
        11.524,  # the later report wins...
        84.4,
        592.3,  # ...and the earlier one fills its gaps
    )
    assert fix.clock_offset_ms == 40  # the first arrival is the closest to the epoch
    assert stream.merged_reports == 1
    assert [f.time_ms for f in stream.flush()] == [TPV_3D_TIME_MS + 100]


def test_a_report_after_its_epoch_was_flushed_is_not_sent_twice() -> None:
    stream = GpsdStream()
    stream.feed(tpv(track=...), 0)
    assert len(stream.flush()) == 1  # the caller's wait ran out
    stream.feed(TPV_3D, 0)  # the late RMC report of the same epoch
    assert stream.flush() == []
    assert stream.late_reports == 1
    assert stream.latest is not None
    assert stream.latest.track_deg == 84.4


def test_a_2d_report_in_a_3d_epoch_drops_the_altitude() -> None:
    merged = merge_fixes(GnssFix(1, 2.0, 3.0, mode=3, alt_m=5.0), GnssFix(1, 2.0, 3.0, mode=2))
    assert (merged.mode, merged.alt_m) == (2, None)


@given(st.one_of(st.text(), st.binary()))
def test_parse_line_never_raises_on_any_input(line: str | bytes) -> None:
    assert isinstance(parse_line(line, 0), TpvReport | OtherReport | Rejected)


_ANY_JSON_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(["2024-05-01T10:00:01.700Z", "2024-05-01T10:00:60Z"]),
)


@given(
    st.fixed_dictionaries(
        {"class": st.just("TPV")},
        optional=dict.fromkeys(
            ["mode", "time", "lat", "lon", "alt", "altHAE", "speed", "track"], _ANY_JSON_VALUE
        ),
    )
)
def test_any_fix_that_gets_through_is_plausible(obj: dict[str, Any]) -> None:
    parsed = parse_line(json.dumps(obj), received_ms=0)
    if isinstance(parsed, TpvReport) and parsed.fix is not None:
        fix = parsed.fix
        assert fix.mode in (2, 3)
        assert -90 <= fix.lat <= 90
        assert -180 <= fix.lon <= 180
        assert fix.speed_mps is None or fix.speed_mps >= 0
        assert fix.track_deg is None or 0 <= fix.track_deg <= 360


# ---------------------------------------------------------------- backoff


# ---------------------------------------------------------------- host:port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:2947", ("localhost", 2947)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        (" gpsd.taxi-7.local:65535 ", ("gpsd.taxi-7.local", 65535)),
        ("[::1]:2947", ("::1", 2947)),
        ("[fe80::1%eth0]:2947", ("fe80::1%eth0", 2947)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected host:port"),
        ("localhost", "expected host:port"),
        (":2947", "is not a host name"),
        ("local host:2947", "is not a host name"),
        ("localhost:", "port '' is not in 1..65535"),
        ("localhost:0", "is not in 1..65535"),
        ("localhost:65536", "is not in 1..65535"),
        ("localhost:http", "is not in 1..65535"),
        ("localhost:-1", "is not in 1..65535"),
        ("::1:2947", "IPv6 address in brackets"),
        ("[::1]", "expected [IPv6 address]:port"),
        ("[::1]2947", "expected [IPv6 address]:port"),
        ("[gpsd]:2947", "is not an IPv6 address"),
    ],
)
def test_parse_endpoint_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(GnssError, match=r"gpsd address .*" + message.replace("[", r"\[")):
        parse_endpoint(text)


# ---------------------------------------------------------------- helpers


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``predicate``: the client's state is plain attributes, with no event to await."""
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


@contextlib.asynccontextmanager
async def running(client: GpsdClient, fixes: list[GnssFix]) -> AsyncIterator[None]:
    """Run the client in the background, appending fixes; stop it (bounded) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(fixes.append, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_gpsd(handler: Handler) -> AsyncIterator[int]:
    """A scripted server on 127.0.0.1 standing in for gpsd; yields its port."""
    server = await asyncio.start_server(handler, LOCALHOST, 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()


def fast_client(port: int, **kwargs: Any) -> GpsdClient:
    """A client that retries within tens of milliseconds, for tests."""
    options: dict[str, Any] = {
        "backoff_base_s": 0.02,
        "backoff_cap_s": 0.2,
        "epoch_wait_s": 0.05,
    } | kwargs
    return GpsdClient(LOCALHOST, port, **options)


VERSION_LINE = (
    b'{"class":"VERSION","release":"3.22","rev":"3.22","proto_major":3,"proto_minor":14}\r\n'
)


# ---------------------------------------------------------------- client vs a fake gpsd


async def test_client_watches_and_delivers_fixes() -> None:
    commands: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(VERSION_LINE)
        commands.append(await reader.readuntil(b";\n"))
        after_gga = tpv(track=..., speed=11.119)  # merged with the next: one fix
        for line in ['{"class":"DEVICES","devices":[]}', after_gga, TPV_3D, "{bad", "{}"]:
            writer.write(line.encode() + b"\r\n")
        writer.write(b'{"class":"TPV","mode":1}\r\n')
        await writer.drain()
        await reader.read()  # hold the connection until the client goes

    wall_s = (TPV_3D_TIME_MS + 1_234) / 1000
    fixes: list[GnssFix] = []
    async with fake_gpsd(serve) as port:
        client = fast_client(port, wall_clock=lambda: wall_s)
        async with running(client, fixes):
            # The fix comes while connected: its epoch ends after epoch_wait_s of quiet.
            await wait_until(lambda: client.fix_mode == 1 and len(fixes) == 1, "fix, no-fix")
            assert client.connected
    assert commands == [WATCH_COMMAND]
    assert fixes == [dataclasses.replace(TPV_3D_FIX, clock_offset_ms=1_234)]
    assert client.latest == fixes[0]
    assert client.malformed == {"bad_json": 1, "class_missing": 1}
    assert client.stats() == {
        "gnss_connected": 0,
        "gnss_fix_mode": 0,  # unknown once stopped
        "gnss_fixes": 1,
        "gnss_reconnects": 0,
        "gnss_connect_failures": 0,
        "gnss_disconnects": 0,
        "gnss_protocol_errors": 0,
        "gnss_merged_reports": 1,
        "gnss_late_reports": 0,
        "gnss_untimed_reports": 0,
        "gnss_malformed_bad_json": 1,
        "gnss_malformed_class_missing": 1,
    }


async def test_overlong_line_is_counted_and_the_connection_reset() -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(VERSION_LINE)
        if connections == 1:
            writer.write(b'{"class":"SKY","junk":"' + b"x" * 70_000)  # no newline in sight
        else:
            writer.write(TPV_3D.encode() + b"\r\n")
        await writer.drain()
        await reader.read()

    fixes: list[GnssFix] = []
    async with fake_gpsd(serve) as port:
        client = fast_client(port)
        async with running(client, fixes):
            await wait_until(lambda: len(fixes) == 1, "a fix on the second connection")
    assert client.malformed == {"line_too_long": 1}
    assert (client.reconnects, client.disconnects) == (1, 1)


async def test_a_peer_that_is_not_gpsd_is_dropped_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The classic mistake: the agent pointed at the receiver's raw NMEA port.
        writer.write(
            nmea_sentence("GPGGA,100000.00,4807.0380,N,01131.0000,E,1,08,0.9,545.4,M,,M,,").encode()
        )
        await writer.drain()
        await reader.read()

    fixes: list[GnssFix] = []
    async with fake_gpsd(serve) as port:
        client = fast_client(port)
        async with running(client, fixes):
            await wait_until(lambda: client.protocol_errors >= 3, "repeated protocol errors")
    assert fixes == []
    assert client.connects >= 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # rate-limited: one line, not one per attempt
    assert "does not answer like gpsd" in errors[0].getMessage()


async def test_refused_connections_are_retried_and_logged_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    client = GpsdClient(
        LOCALHOST,
        free_port(),  # nobody listens there
        backoff_base_s=0.001,
        backoff_cap_s=0.001,
        monotonic=lambda: now[0],
        log_interval_s=60.0,
    )
    caplog.set_level(logging.WARNING, logger="edge_agent.gnss")
    async with running(client, []):
        await wait_until(lambda: client.connect_failures >= 20, "20 refused connections")
        now[0] = 61.0  # a minute later the next failure is logged, with a tally
        failures = client.connect_failures
        await wait_until(lambda: client.connect_failures > failures + 1, "more failures")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "unreachable" in messages[0]
    assert "similar messages held back" in messages[1]
    assert not client.connected


async def test_stop_ends_run_promptly_while_backing_off() -> None:
    client = GpsdClient(
        LOCALHOST,
        free_port(),
        backoff_base_s=60.0,
        backoff_cap_s=60.0,
        random01=lambda: 0.99,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(lambda fix: None, stop))
    await wait_until(lambda: client.connect_failures >= 1, "a refused connection")
    stop.set()
    await asyncio.wait_for(task, 1.0)  # not the ~60 s of the pending backoff


async def test_an_exception_in_the_callback_ends_run() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(VERSION_LINE + TPV_3D.encode() + b"\r\n")
        await writer.drain()
        await reader.read()

    def broken(fix: GnssFix) -> None:
        raise RuntimeError("bug in the consumer")

    async with fake_gpsd(serve) as port:
        client = fast_client(port)
        with pytest.raises(RuntimeError, match="bug in the consumer"):
            await asyncio.wait_for(client.run(broken, asyncio.Event()), WAIT_S)
    assert not client.connected


# ---------------------------------------------------------------- a real gpsd

TRACK_START = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
# Wall clock fixed 30 s after the track starts, so every clock offset is known exactly.
WALL_S = TRACK_START.timestamp() + 30.0
KNOT_MPS = 1852 / 3600


@dataclass(frozen=True)
class Epoch:
    """One epoch of the generated track: what was sent and what gpsd should report."""

    time_ms: int
    lat: float
    lon: float
    nmea: str  # GGA + RMC


def nmea_track(count: int, *, fix: bool = True, first: int = 0) -> list[Epoch]:
    """A 10 Hz drive north at 22.4 kn from Munich; ``fix=False`` makes no-fix epochs."""
    epochs = []
    for i in range(first, first + count):
        when = TRACK_START + timedelta(milliseconds=100 * i)
        hhmmss = when.strftime("%H%M%S") + f".{when.microsecond // 10_000:02d}"
        # 0.0006' of latitude is 1.11 m: 11.1 m/s at 10 Hz, close to 22.4 kn.
        lat_text = f"48{7.038 + 0.0006 * i:07.4f}"
        lon_text = "01131.0000"
        if fix:
            gga = f"GPGGA,{hhmmss},{lat_text},N,{lon_text},E,1,08,0.9,545.4,M,46.9,M,,"
            rmc = f"GPRMC,{hhmmss},A,{lat_text},N,{lon_text},E,022.4,084.4,010524,003.1,W"
        else:
            gga = f"GPGGA,{hhmmss},,,,,0,00,99.9,,M,,M,,"
            rmc = f"GPRMC,{hhmmss},V,,,,,,,010524,,,N"
        epochs.append(
            Epoch(
                time_ms=int(when.timestamp() * 1000),
                lat=48 + float(lat_text[2:]) / 60,
                lon=11 + float(lon_text[3:]) / 60,
                nmea=nmea_sentence(gga) + nmea_sentence(rmc),
            )
        )
    return epochs


def assert_fix_on_track(fix: GnssFix, track: dict[int, Epoch]) -> None:
    epoch = track.get(fix.time_ms)
    assert epoch is not None, f"fix time {fix.time_ms} is not a track epoch"
    assert fix.lat == pytest.approx(epoch.lat, abs=1e-8)  # gpsd prints 9 decimals
    assert fix.lon == pytest.approx(epoch.lon, abs=1e-8)
    assert fix.mode == 3
    assert fix.alt_m == pytest.approx(545.4 + 46.9)  # MSL + geoid separation = HAE
    assert fix.speed_mps == pytest.approx(22.4 * KNOT_MPS, abs=1e-3)
    assert fix.track_deg == pytest.approx(84.4)
    assert fix.clock_offset_ms == round(WALL_S * 1000) - fix.time_ms


def by_time(epochs: list[Epoch]) -> dict[int, Epoch]:
    return {epoch.time_ms: epoch for epoch in epochs}


@pytest.mark.integration
async def test_real_gpsd_delivers_the_track() -> None:
    epochs = nmea_track(300)
    fixes: list[GnssFix] = []
    with GpsdHarness([e.nmea for e in epochs], interval_s=0.1) as gpsd:
        client = fast_client(gpsd.port, wall_clock=lambda: WALL_S)
        async with running(client, fixes):
            await wait_until(lambda: len(fixes) >= 10, "10 fixes")
    for fix in fixes:
        assert_fix_on_track(fix, by_time(epochs))
    times = [fix.time_ms for fix in fixes]
    assert times == sorted(set(times))  # in order, no duplicates
    assert client.malformed == {}
    assert client.reconnects == 0


@pytest.mark.integration
async def test_real_gpsd_skips_malformed_nmea() -> None:
    epochs = nmea_track(300)
    bad_checksum = nmea_sentence("GPGGA,100000.00,1000.0000,N,00100.0000,E,1,08,0.9,1.0,M,,M,,")
    bad_checksum = bad_checksum[:-4] + "00\r\n"
    garbage: list[str | bytes] = [
        bad_checksum,
        b"\x00\xff\xfe binary noise \x81\x82\r\n",
        "$GPRMC,not,a,real,sentence*5A",
        "A" * 300,  # far longer than NMEA's 82 characters
        "$GPGGA,1000",  # cut off
    ]
    bursts: list[str | bytes] = []
    for i, epoch in enumerate(epochs):
        bursts.append(epoch.nmea)
        bursts.append(garbage[i % len(garbage)])
    fixes: list[GnssFix] = []
    with GpsdHarness(bursts, interval_s=0.05) as gpsd:
        client = fast_client(gpsd.port, wall_clock=lambda: WALL_S)
        async with running(client, fixes):
            await wait_until(lambda: len(fixes) >= 15, "15 fixes among the garbage")
    for fix in fixes:
        assert_fix_on_track(fix, by_time(epochs))  # none at the bad-checksum position
    assert client.malformed == {}
    assert client.reconnects == 0


@pytest.mark.integration
async def test_client_reconnects_after_gpsd_is_killed_and_restarted() -> None:
    epochs = nmea_track(300)
    fixes: list[GnssFix] = []
    with GpsdHarness([e.nmea for e in epochs], interval_s=0.1) as gpsd:
        client = fast_client(gpsd.port, wall_clock=lambda: WALL_S)
        async with running(client, fixes):
            await wait_until(lambda: len(fixes) >= 3, "fixes before the crash")
            await asyncio.to_thread(gpsd.stop, signal.SIGKILL)
            await wait_until(lambda: not client.connected, "the client to notice")
            assert client.fix_mode == 0
            await wait_until(lambda: client.connect_failures >= 1, "a refused reconnect")
            last_before = fixes[-1].time_ms
            await asyncio.to_thread(gpsd.start)
            await wait_until(
                lambda: fixes[-1].time_ms > last_before + 200, "fixes from the new gpsd"
            )
    for fix in fixes:
        assert_fix_on_track(fix, by_time(epochs))
    assert client.reconnects == 1
    assert client.disconnects == 1


@pytest.mark.integration
async def test_client_started_before_gpsd_connects_when_it_comes_up() -> None:
    epochs = nmea_track(300)
    fixes: list[GnssFix] = []
    with GpsdHarness([e.nmea for e in epochs], start_gpsd=False) as gpsd:
        client = fast_client(gpsd.port, wall_clock=lambda: WALL_S)
        async with running(client, fixes):
            await wait_until(lambda: client.connect_failures >= 3, "refused connections")
            assert fixes == []
            await asyncio.to_thread(gpsd.start)
            await wait_until(lambda: len(fixes) >= 3, "fixes once gpsd is up")
    for fix in fixes:
        assert_fix_on_track(fix, by_time(epochs))
    assert client.reconnects == 0  # the first successful connection is not a reconnect


@pytest.mark.integration
async def test_real_gpsd_reports_no_fix_then_a_fix() -> None:
    no_fix = nmea_track(15, fix=False)
    with_fix = nmea_track(300, first=15)
    fixes: list[GnssFix] = []
    modes: set[int] = set()
    with GpsdHarness([e.nmea for e in no_fix + with_fix], start_gpsd=False) as gpsd:
        client = fast_client(gpsd.port, wall_clock=lambda: WALL_S)
        async with running(client, fixes):
            await asyncio.to_thread(gpsd.start)

            def saw_no_fix() -> bool:
                modes.add(client.fix_mode)
                return 1 in modes

            await wait_until(saw_no_fix, "a no-fix TPV")
            assert fixes == []
            assert client.latest is None
            await wait_until(lambda: len(fixes) >= 10, "10 fixes")
    # Every epoch once and complete (track, RMC speed), although after the no-fix spell
    # gpsd 3.22 reports each epoch twice: after GGA and after RMC.
    for fix in fixes:
        assert_fix_on_track(fix, by_time(with_fix))
    times = [fix.time_ms for fix in fixes]
    assert times == sorted(set(times))
    assert client.stats()["gnss_merged_reports"] >= 9

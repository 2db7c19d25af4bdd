"""`candlesticks download` against a real HTTP server on 127.0.0.1 serving Binance's public-data layout,
and `candlesticks import` of download folders (.CHECKSUM files beside the zips).

The served zips hold the real 21-day BTCUSDT sample (/work/shared/data, else the bundled copy) in
Binance's headerless 12-column kline CSV, cut into three weeks relabelled as the "months" 2023-01,
2023-02 and 2023-03, and into the daily files 2023-03-01..07 (the third week, one day each); the open
times stay the real ones, so every cut imports into one gapless series.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epoch_builder import cli, download as dl, output
from epoch_builder.candles import read_candles
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.importer import bundled_sample, expand_sources, import_candlesticks
from epoch_builder.workspace import Workspace

REAL_DATA = Path("/work/shared/data/BTCUSDT_1m_20230301_20230321.csv")
SPOT = "/data/spot/monthly/klines/BTCUSDT/1m"
SPOT_DAILY = "/data/spot/daily/klines/BTCUSDT/1m"
LATER = dt.date(2024, 6, 15)  # a "today" after every served month
FAST = dl.Retry(tries=4, first_delay_s=0.001, factor=2.0, max_delay_s=0.01)
DAY = 1440


def quiet(*_: object) -> None:
    pass


# --- the served files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    source = REAL_DATA if REAL_DATA.is_file() else bundled_sample()
    df = pd.read_csv(source)
    ot = pd.to_datetime(df["open_time"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
    assert len(df) == 21 * DAY and (np.diff(ot) == 60_000).all()
    return df.assign(ot=ot)


def kline_zip(df: pd.DataFrame, csv_name: str) -> bytes:
    """Binance's kline CSV (headerless, 12 columns, ms open times) in a zip, as data.binance.vision has it."""
    rows = pd.DataFrame({
        0: df.ot, 1: df.open, 2: df.high, 3: df.low, 4: df.close, 5: df.volume, 6: df.ot + 59_999,
        7: (df.volume * df.close).round(6), 8: 100, 9: (df.volume / 2).round(6),
        10: (df.volume * df.close / 2).round(6), 11: 0,
    })
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(csv_name, rows.to_csv(index=False, header=False))
    return buffer.getvalue()


def add_zip(files: dict[str, bytes], directory: str, name: str, data: bytes) -> None:
    files[f"{directory}/{name}"] = data
    files[f"{directory}/{name}.CHECKSUM"] = f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()


@pytest.fixture(scope="module")
def layout(candles: pd.DataFrame) -> dict[str, bytes]:
    """URL path -> bytes: monthly 2023-01..03 (a week each) and daily 2023-03-01..07 (a day each)."""
    files: dict[str, bytes] = {}
    for number in range(3):
        name = f"BTCUSDT-1m-2023-{number + 1:02d}"
        add_zip(files, SPOT, f"{name}.zip", kline_zip(candles.iloc[number * 7 * DAY:(number + 1) * 7 * DAY],
                                                      f"{name}.csv"))
    for day in range(7):
        name = f"BTCUSDT-1m-2023-03-{day + 1:02d}"
        add_zip(files, SPOT_DAILY, f"{name}.zip",
                kline_zip(candles.iloc[(14 + day) * DAY:(15 + day) * DAY], f"{name}.csv"))
    return files


# --- the server ------------------------------------------------------------------------------


@dataclass
class Served:
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    sent: dict[str, int] = field(default_factory=dict)  # path -> body bytes sent
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the connection drops, once
    failures: dict[str, int] = field(default_factory=dict)  # path -> how many 503 answers before a real one
    url: str = ""

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real server
    disable_nagle_algorithm = True  # headers and body go out as written (no delayed-ACK stalls)

    def log_message(self, *_: object) -> None:
        pass

    def _empty(self, code: int, **headers: str) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        served: Served = self.server.served  # type: ignore[attr-defined]
        path, wanted = self.path, self.headers.get("Range")
        served.requests.append((path, wanted))
        if served.failures.get(path, 0) > 0:
            served.failures[path] -= 1
            return self._empty(503)
        data = served.files.get(path)
        if data is None:
            return self._empty(404)
        start = 0
        if wanted:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._empty(416, Content_Range=f"bytes */{len(data)}")
        body = data[start:]
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = served.drop_after.pop(path, None)
        if cut is not None:  # part of the body, then the connection goes away
            self.wfile.write(body[:cut])
            served.sent[path] = served.sent.get(path, 0) + cut
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)
        served.sent[path] = served.sent.get(path, 0) + len(body)


@pytest.fixture
def server(layout: dict[str, bytes]) -> Iterator[Served]:
    served = Served(files=dict(layout))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.served = served  # type: ignore[attr-defined]
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()


def fetch(server: Served, directory: Path, first: str = "2023-01", last: str = "2023-02", *,
          today: dt.date = LATER, symbol: str = "BTCUSDT", retry: dl.Retry = FAST, **kw) -> dict:
    return dl.download(symbol, "spot", first, last, directory, base_url=server.url, today=today, retry=retry,
                       sleep=kw.pop("sleep", lambda _s: None), log=quiet, **kw)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.strip() == text
    return text


# --- downloading -----------------------------------------------------------------------------


def test_every_file_is_downloaded_and_verified(server: Served, tmp_path: Path) -> None:
    summary = fetch(server, tmp_path / "dl")
    names = ["BTCUSDT-1m-2023-01.zip", "BTCUSDT-1m-2023-02.zip"]
    assert [Path(f).name for f in summary["files"]] == names
    assert summary["downloaded"] == 2 and summary["already_verified"] == 0
    for name in names:
        data = server.files[f"{SPOT}/{name}"]
        assert (tmp_path / "dl" / name).read_bytes() == data
        assert (tmp_path / "dl" / f"{name}.CHECKSUM").read_bytes() == server.files[f"{SPOT}/{name}.CHECKSUM"]
    assert summary["bytes_downloaded"] == sum(len(server.files[f"{SPOT}/{n}"]) for n in names)
    verified = json.loads((tmp_path / "dl" / dl.VERIFIED_FILE).read_text())
    assert sorted(verified) == names
    assert not list((tmp_path / "dl").glob("*.part"))


def test_the_current_month_comes_as_daily_files_up_to_yesterday(server: Served, tmp_path: Path) -> None:
    summary = fetch(server, tmp_path / "dl", "2023-02", "2023-03", today=dt.date(2023, 3, 4))
    assert [Path(f).name for f in summary["files"]] == [
        "BTCUSDT-1m-2023-02.zip", "BTCUSDT-1m-2023-03-01.zip", "BTCUSDT-1m-2023-03-02.zip", "BTCUSDT-1m-2023-03-03.zip"]
    assert server.count(f"{SPOT}/BTCUSDT-1m-2023-03.zip.CHECKSUM") == 0  # the current month has no monthly file
    with pytest.raises(UsageError) as future:
        fetch(server, tmp_path / "dl", "2023-02", "2023-04", today=dt.date(2023, 3, 4))
    assert "allowed up to the current month 2023-03" in one_line(future)


def test_a_month_not_yet_published_falls_back_to_its_days_and_yesterday_may_be_missing(
        server: Served, layout: dict[str, bytes], tmp_path: Path) -> None:
    del server.files[f"{SPOT}/BTCUSDT-1m-2023-02.zip"], server.files[f"{SPOT}/BTCUSDT-1m-2023-02.zip.CHECKSUM"]
    small = layout[f"{SPOT_DAILY}/BTCUSDT-1m-2023-03-01.zip"]
    for day in range(1, 29):
        add_zip(server.files, SPOT_DAILY, f"BTCUSDT-1m-2023-02-{day:02d}.zip", small)
    summary = fetch(server, tmp_path / "dl", "2023-02", "2023-03", today=dt.date(2023, 3, 2))
    names = [Path(f).name for f in summary["files"]]
    assert names == [f"BTCUSDT-1m-2023-02-{day:02d}.zip" for day in range(1, 29)] + ["BTCUSDT-1m-2023-03-01.zip"]
    del server.files[f"{SPOT_DAILY}/BTCUSDT-1m-2023-03-01.zip.CHECKSUM"]  # yesterday's, not out yet
    summary = fetch(server, tmp_path / "other", "2023-03", "2023-03", today=dt.date(2023, 3, 2))
    assert summary["files"] == [] and summary["not_published"] == ["BTCUSDT-1m-2023-03-01.zip"]


def test_a_wrong_checksum_is_refused_with_the_file_named_and_nothing_kept(server: Served, tmp_path: Path) -> None:
    good = server.files[f"{SPOT}/BTCUSDT-1m-2023-02.zip.CHECKSUM"]
    server.files[f"{SPOT}/BTCUSDT-1m-2023-02.zip.CHECKSUM"] = b"0" * 64 + b"  BTCUSDT-1m-2023-02.zip\n"
    directory = tmp_path / "dl"
    with pytest.raises(EpochBuilderError) as refused:
        fetch(server, directory)
    message = one_line(refused)
    assert message.startswith("BTCUSDT-1m-2023-02.zip: SHA-256 mismatch") and "0" * 64 in message
    assert not (directory / "BTCUSDT-1m-2023-02.zip").exists()
    assert not (directory / "BTCUSDT-1m-2023-02.zip.part").exists()
    assert sorted(json.loads((directory / dl.VERIFIED_FILE).read_text())) == ["BTCUSDT-1m-2023-01.zip"]
    server.files[f"{SPOT}/BTCUSDT-1m-2023-02.zip.CHECKSUM"] = good  # fixed on the server: the rerun fetches only it
    before = server.count(f"{SPOT}/BTCUSDT-1m-2023-01.zip")
    summary = fetch(server, directory)
    assert summary["downloaded"] == 1 and summary["already_verified"] == 1
    assert server.count(f"{SPOT}/BTCUSDT-1m-2023-01.zip") == before


def test_a_malformed_checksum_file_is_refused(server: Served, tmp_path: Path) -> None:
    server.files[f"{SPOT}/BTCUSDT-1m-2023-01.zip.CHECKSUM"] = b"<html>moved</html>"
    with pytest.raises(EpochBuilderError) as refused:
        fetch(server, tmp_path / "dl")
    assert "BTCUSDT-1m-2023-01.zip.CHECKSUM: not a SHA-256 checksum file" in one_line(refused)


def test_a_month_or_symbol_the_server_lacks_is_one_clear_line(server: Served, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as missing:
        fetch(server, tmp_path / "dl", "2023-01", "2023-05")
    message = one_line(missing)
    assert message.startswith(f"{server.url}{SPOT}/BTCUSDT-1m-2023-04.zip.CHECKSUM: not found (HTTP 404)")
    assert "klines of BTCUSDT for 2023-04 (monthly file)" in message
    with pytest.raises(UsageError) as unknown:
        fetch(server, tmp_path / "dl2", symbol="nosuchcoin")
    assert "/klines/NOSUCHCOIN/1m/NOSUCHCOIN-1m-2023-01.zip.CHECKSUM: not found" in one_line(unknown)


@pytest.mark.parametrize("bad, expected", [
    ({"first": "2023-1"}, "parameter from='2023-1' is invalid: allowed YYYY-MM"),
    ({"first": "2023-13"}, "parameter from='2023-13' is invalid"),
    ({"first": "2023-03", "last": "2023-01"}, "from must not be after to"),
    ({"symbol": "BTC/USDT"}, "parameter symbol='BTC/USDT' is invalid"),
    ({"market": "coin"}, "parameter market='coin' is invalid: allowed spot, um"),
    ({"base_url": "ftp://x"}, "parameter base-url='ftp://x' is invalid"),
    ({"base_url": "http://[::1"}, "parameter base-url='http://[::1' is invalid"),
])
def test_bad_parameters_name_the_parameter_and_the_allowed_values(tmp_path: Path, bad: dict, expected: str) -> None:
    args = {"symbol": "BTCUSDT", "market": "spot", "first": "2023-01", "last": "2023-02",
            "base_url": "http://127.0.0.1:9", **bad}
    with pytest.raises(UsageError) as refused:
        dl.download(args.pop("symbol"), args.pop("market"), args.pop("first"), args.pop("last"), tmp_path,
                    today=LATER, log=quiet, **args)
    assert expected in one_line(refused)


def test_a_dropped_connection_is_resumed_by_the_rerun_with_a_range_request(server: Served, tmp_path: Path) -> None:
    path = f"{SPOT}/BTCUSDT-1m-2023-02.zip"
    size = len(server.files[path])
    server.drop_after[path] = size // 3
    directory = tmp_path / "dl"
    with pytest.raises(EpochBuilderError) as dropped:
        fetch(server, directory, retry=dl.Retry(tries=1))
    message = one_line(dropped)
    assert message.startswith(f"{server.url}{path}: ") and "rerun the same command" in message
    part = directory / "BTCUSDT-1m-2023-02.zip.part"
    assert part.stat().st_size == size // 3 and not (directory / "BTCUSDT-1m-2023-02.zip").exists()

    summary = fetch(server, directory)
    assert summary["downloaded"] == 1 and summary["already_verified"] == 1
    assert server.requests[-1] == (path, f"bytes={size // 3}-")
    assert server.sent[path] == size  # nothing fetched twice
    assert (directory / "BTCUSDT-1m-2023-02.zip").read_bytes() == server.files[path] and not part.exists()


def test_a_complete_or_stale_part_is_finished_and_checked(server: Served, tmp_path: Path) -> None:
    path = f"{SPOT}/BTCUSDT-1m-2023-01.zip"
    data = server.files[path]
    directory = tmp_path / "dl"
    directory.mkdir()
    part = directory / "BTCUSDT-1m-2023-01.zip.part"
    part.write_bytes(data)  # killed after the last byte, before the rename
    summary = fetch(server, directory, "2023-01", "2023-01")
    assert summary["downloaded"] == 1 and server.requests[-1] == (path, f"bytes={len(data)}-")
    assert server.sent.get(path, 0) == 0 and (directory / "BTCUSDT-1m-2023-01.zip").read_bytes() == data
    part = directory / "BTCUSDT-1m-2023-02.zip.part"
    part.write_bytes(b"another version of the file")  # resumed, it hashes wrong: fetched once more, whole
    summary = fetch(server, directory, "2023-02", "2023-02")
    assert [r for p, r in server.requests if p.endswith("2023-02.zip")] == ["bytes=27-", None]
    assert (directory / "BTCUSDT-1m-2023-02.zip").read_bytes() == server.files[f"{SPOT}/BTCUSDT-1m-2023-02.zip"]
    assert not part.exists()


def test_connection_errors_and_5xx_are_retried_with_exponential_backoff(server: Served, tmp_path: Path) -> None:
    path = f"{SPOT}/BTCUSDT-1m-2023-01.zip"
    server.failures[path + ".CHECKSUM"] = 1
    server.failures[path] = 1
    server.drop_after[path] = 1000
    waits: list[float] = []
    summary = fetch(server, tmp_path / "dl", "2023-01", "2023-01", sleep=waits.append,
                    retry=dl.Retry(tries=5, first_delay_s=0.5, factor=2.0, max_delay_s=60))
    assert summary["downloaded"] == 1
    assert waits == [0.5, 0.5, 1.0]  # the checksum's 503; then the zip's 503 and its dropped connection
    assert [r for p, r in server.requests if p == path] == [None, None, "bytes=1000-"]
    server.failures[f"{SPOT}/BTCUSDT-1m-2023-02.zip.CHECKSUM"] = 10
    with pytest.raises(EpochBuilderError) as failed:
        fetch(server, tmp_path / "dl", "2023-02", "2023-02", retry=dl.Retry(tries=3, first_delay_s=0.001))
    assert one_line(failed) == (f"{server.url}{SPOT}/BTCUSDT-1m-2023-02.zip.CHECKSUM: HTTP 503 Service Unavailable "
                                "(after 3 tries); rerun the same command to continue where it stopped")


def test_a_second_run_skips_verified_files_without_a_request(server: Served, tmp_path: Path) -> None:
    directory = tmp_path / "dl"
    fetch(server, directory)
    made = len(server.requests)
    summary = fetch(server, directory)
    assert len(server.requests) == made  # not one request
    assert summary["already_verified"] == 2 and summary["downloaded"] == 0 and summary["requests"] == 0
    (directory / dl.VERIFIED_FILE).unlink()  # no record: the files are hashed against their .CHECKSUM instead
    assert fetch(server, directory)["already_verified"] == 2 and len(server.requests) == made
    damaged = directory / "BTCUSDT-1m-2023-01.zip"
    damaged.write_bytes(damaged.read_bytes()[:-10])  # no longer the verified file: fetched again
    summary = fetch(server, directory)
    assert summary["downloaded"] == 1 and damaged.read_bytes() == server.files[f"{SPOT}/{damaged.name}"]


def test_the_progress_display_draws_bytes_and_files(server: Served, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    output.configure(progress=True)
    try:
        summary = fetch(server, tmp_path / "dl")
    finally:
        output.configure()
    assert summary["downloaded"] == 2
    err = capsys.readouterr().err
    assert "files" in err and "2/2" in err and "kB" in err


# --- importing what was downloaded ---------------------------------------------------------------


def shell_glob(directory: Path, pattern: str) -> list[Path]:
    """What ``DIR/PATTERN`` gives in a shell: files only, hidden ones left out, sorted."""
    return sorted(p for p in directory.glob(pattern) if p.is_file() and not p.name.startswith("."))


def bundle(ws: Workspace) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    summary = json.loads(ws.bundle_file.read_text())
    return (read_candles(ws.candlesticks_file), read_candles(ws.prediction_candlesticks_file),
            {k: v for k, v in summary.items() if k not in ("sources", "imported")})


def test_importing_the_download_folder_equals_importing_the_files(server: Served, tmp_path: Path) -> None:
    directory = tmp_path / "dl"
    fetch(server, directory, "2023-01", "2023-03", today=dt.date(2023, 3, 8))  # two months and seven days
    by_folder = import_candlesticks(Workspace(tmp_path / "a"), [directory], log=quiet)
    plain = tmp_path / "plain"
    plain.mkdir()
    served = [f"{SPOT}/BTCUSDT-1m-2023-01.zip", f"{SPOT}/BTCUSDT-1m-2023-02.zip",
              *(f"{SPOT_DAILY}/BTCUSDT-1m-2023-03-{day:02d}.zip" for day in range(1, 8))]
    files = [plain / Path(path).name for path in served]
    for path, file in zip(served, files):
        file.write_bytes(server.files[path])
    by_files = import_candlesticks(Workspace(tmp_path / "b"), files, log=quiet)
    assert by_folder["candles"] == by_files["candles"] == 21 * DAY
    assert [Path(s).name for s in by_folder["sources"]] == [f.name for f in files]  # time order
    a, b = bundle(Workspace(tmp_path / "a")), bundle(Workspace(tmp_path / "b"))
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert a[2] == b[2]


def test_import_of_a_folder_or_glob_with_checksum_files_checks_each_zip(server: Served, tmp_path: Path) -> None:
    directory = tmp_path / "dl"
    fetch(server, directory)
    (directory / "nested").mkdir()
    (directory / "BTCUSDT-1m-2023-03.zip.part").write_bytes(b"half a file")  # an unfinished download: left out
    globbed = shell_glob(directory, "BTCUSDT-1m-*.zip*")  # the zips and their .CHECKSUM files, and the .part
    assert any(p.name.endswith(".CHECKSUM") for p in globbed)
    summary = import_candlesticks(Workspace(tmp_path / "ws"), [p for p in globbed if not p.name.endswith(".part")],
                                  log=quiet)
    assert summary["candles"] == 14 * DAY
    assert [Path(s).name for s in expand_sources([directory])] == ["BTCUSDT-1m-2023-01.zip", "BTCUSDT-1m-2023-02.zip"]

    damaged = directory / "BTCUSDT-1m-2023-02.zip"
    data = damaged.read_bytes()
    damaged.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(EpochBuilderError) as refused:
        import_candlesticks(Workspace(tmp_path / "ws2"), [directory], log=quiet)
    assert one_line(refused).startswith(f"{damaged}: SHA-256 mismatch")
    assert not (tmp_path / "ws2" / "candlesticks").exists()
    with pytest.raises(UsageError) as empty:
        import_candlesticks(Workspace(tmp_path / "ws3"), [directory / "nested"], log=quiet)
    assert "no candle files (.csv, .csv.gz, .zip) in the directory" in one_line(empty)


# --- the command line ----------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    finally:
        output.configure()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_downloads_into_the_workspace_and_imports(server: Served, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    code, out, err = run_cli(capsys, "candlesticks", "download", "--symbol", "btcusdt", "--from", "2023-01",
                             "--to", "2023-02", "--base-url", server.url, "--workspace", str(tmp_path / "ws"),
                             "--import", "--interval", "60", "--events", str(events), "--no-progress")
    assert code == 0, err
    directory = tmp_path / "ws" / "downloads" / "spot" / "BTCUSDT"
    assert out.splitlines() == [
        f"2 file(s) verified in {directory}: 2 downloaded, 0 already there",
        f"imported {14 * DAY:,} 1m candles and {14 * 24:,} 60m candles (2023-03-01 00:00 .. 2023-03-14 23:59) "
        f"-> {tmp_path / 'ws' / 'candlesticks'}",
    ]
    assert "BTCUSDT-1m-2023-01.zip: " in err and "SHA-256 verified (1/2 files" in err
    stages = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["stage"], e["done"], e["total"]) for e in stages][:2] == [
        ("candlesticks-download", 1, 2), ("candlesticks-download", 2, 2)]
    code, out, _ = run_cli(capsys, "candlesticks", "download", "--symbol", "BTCUSDT", "--from", "2023-01",
                           "--to", "2023-02", "--base-url", server.url, "--workspace", str(tmp_path / "ws"), "--json")
    assert code == 0 and json.loads(out)["already_verified"] == 2
    code, out, err = run_cli(capsys, "candlesticks", "import", str(directory), "--workspace", str(tmp_path / "ws"),
                             "--interval", "60", "--json", "-q")
    assert code == 0 and json.loads(out)["candles"] == 14 * DAY and err == ""


@pytest.mark.parametrize("change, argv, status, expected", [
    (None, ["--from", "2023-01", "--to", "2023-05"], 2, "BTCUSDT-1m-2023-04.zip.CHECKSUM: not found (HTTP 404)"),
    ("bad-checksum", ["--from", "2023-01", "--to", "2023-01"], 1, "BTCUSDT-1m-2023-01.zip: SHA-256 mismatch"),
    (None, ["--from", "2023-1"], 2, "parameter from='2023-1' is invalid: allowed YYYY-MM (e.g. 2019-01)"),
    (None, ["--from", "2023-01", "--to", "2999-01"], 2, "parameter to=2999-01 is invalid: allowed up to the current"),
    (None, ["--from", "2023-01", "--to", "2023-01", "--import", "--interval", "7"], 2, "parameter interval=7"),
])
def test_cli_errors_are_one_line(server: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 change: str | None, argv: list[str], status: int, expected: str) -> None:
    if change == "bad-checksum":
        server.files[f"{SPOT}/BTCUSDT-1m-2023-01.zip.CHECKSUM"] = b"f" * 64 + b"  BTCUSDT-1m-2023-01.zip\n"
    code, out, err = run_cli(capsys, "candlesticks", "download", "--symbol", "BTCUSDT", *argv, "--base-url",
                             server.url, "--workspace", str(tmp_path / "ws"), "-q")
    assert code == status and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and expected in err, err


def test_cli_import_of_a_damaged_download_is_one_line(server: Served, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "dl"
    fetch(server, directory)
    damaged = directory / "BTCUSDT-1m-2023-01.zip"
    damaged.write_bytes(b"x" + damaged.read_bytes()[1:])
    code, out, err = run_cli(capsys, "candlesticks", "import", *map(str, shell_glob(directory, "*")), "--workspace",
                             str(tmp_path / "ws"), "-q")
    assert code == 1 and out == ""
    assert err.splitlines() == [err.strip()] and err.startswith(f"error: {damaged}: SHA-256 mismatch")

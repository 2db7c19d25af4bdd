"""`candlesticks download`: Binance public-data 1m klines, each file checked against its SHA-256.

The server's layout (default https://data.binance.vision; market path ``spot`` or ``futures/um``)::

    data/<market path>/monthly/klines/<SYMBOL>/1m/<SYMBOL>-1m-<YYYY>-<MM>.zip
    data/<market path>/daily/klines/<SYMBOL>/1m/<SYMBOL>-1m-<YYYY>-<MM>-<DD>.zip

Every zip has a ``<zip>.CHECKSUM`` beside it (``<sha256 hex>  <zip name>``). Complete months come as
monthly files; the current month as daily files up to yesterday, and so does the month before while
its monthly file is not published yet (the first days of a month). Yesterday's daily file may also be
missing for a few hours: it is skipped with a warning.

A zip is downloaded into ``<zip>.part`` (after an interruption continued with an HTTP Range request),
its SHA-256 checked, its ``.CHECKSUM`` written beside it, then renamed into place; a file whose hash
is wrong is removed, never kept. ``.verified.json`` in the folder records each verified file (size,
mtime, hash): a rerun skips those without asking the server. Connection errors, timeouts and 5xx or
429 answers are retried with exponential backoff (``RETRY``).

Light at import (``httpx`` only when downloading): ``importer`` uses the checksum helpers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from epoch_builder import events, output
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.storage import atomic_write_json, atomic_write_text, fsync_dir
from epoch_builder.workspace import DOWNLOADS_DIR

if TYPE_CHECKING:  # pragma: no cover
    import httpx

DEFAULT_BASE_URL = "https://data.binance.vision"
MARKETS = {"spot": "spot", "um": "futures/um"}  # --market -> the server's path
CHECKSUM_SUFFIX = ".CHECKSUM"
PART_SUFFIX = ".part"
VERIFIED_FILE = ".verified.json"  # {zip name: {sha256, size, mtime_ns}} of the files verified here
STAGE = "candlesticks-download"  # the events' stage
TIMEOUT_S = 30.0  # connect, read and write timeouts of each request
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{2,30}")
MONTH_PATTERN = re.compile(r"(\d{4})-(\d{2})")
SHA256_PATTERN = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Retry:
    """How a request that failed for a passing reason is tried again: ``tries`` in all, waiting
    ``first_delay_s``, then ``factor`` times longer each time, at most ``max_delay_s``."""

    tries: int = 5
    first_delay_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.first_delay_s * self.factor ** (attempt - 1), self.max_delay_s)


RETRY = Retry()


# --- checksums (also used by `candlesticks import`) ----------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_checksum(text: str, where: str, name: str) -> str:
    """The SHA-256 hex of a ``.CHECKSUM`` text (``<64 hex digits>  <file name>``) for file ``name``."""
    parts = text.split()
    if not parts or not SHA256_PATTERN.fullmatch(parts[0]) or len(parts) > 2:
        raise EpochBuilderError(f"{where}: not a SHA-256 checksum file (expected '<64 hex digits>  {name}')")
    if len(parts) == 2 and Path(parts[1].lstrip("*")).name != name:
        raise EpochBuilderError(f"{where}: the checksum is for {parts[1]}, not {name}")
    return parts[0].lower()


def checksum_file(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def verify_beside(path: Path) -> bool:
    """Check ``path`` against the ``.CHECKSUM`` beside it: False when there is none, an error naming
    the file on a mismatch."""
    checksum = checksum_file(path)
    if not (path.is_file() and checksum.is_file()):
        return False
    try:
        expected = parse_checksum(checksum.read_text(encoding="utf-8", errors="replace"), str(checksum), path.name)
        actual = sha256_of(path)
    except OSError as exc:
        raise EpochBuilderError(f"{path}: cannot read ({exc.strerror})") from None
    if actual != expected:
        raise EpochBuilderError(
            f"{path}: SHA-256 mismatch: the file hashes to {actual}, {checksum.name} says {expected} "
            "(a damaged or partial file: download it again)"
        )
    return True


# --- what to fetch --------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    name: str  # BTCUSDT-1m-2024-01.zip
    url: str
    period: str  # 2024-01 (a monthly file) or 2024-01-31 (a daily one)

    @property
    def daily(self) -> bool:
        return self.period.count("-") == 2


def validate_symbol(symbol: str) -> str:
    upper = symbol.strip().upper()
    if not SYMBOL_PATTERN.fullmatch(upper):
        raise UsageError(f"parameter symbol={symbol!r} is invalid: allowed 2 to 30 letters and digits (e.g. BTCUSDT)")
    return upper


def validate_market(market: str) -> str:
    if market not in MARKETS:
        raise UsageError(f"parameter market={market!r} is invalid: allowed {', '.join(MARKETS)}")
    return market


def validate_base_url(url: str) -> str:
    import httpx

    try:
        valid = bool(re.match(r"https?://[^/\s]+", url)) and bool(httpx.URL(url).host)
    except httpx.InvalidURL:
        valid = False
    if not valid:
        raise UsageError(f"parameter base-url={url!r} is invalid: allowed an http:// or https:// URL")
    return url.rstrip("/")


def parse_month(text: str, option: str) -> tuple[int, int]:
    match = MONTH_PATTERN.fullmatch(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise UsageError(f"parameter {option}={text!r} is invalid: allowed YYYY-MM (e.g. 2019-01)")
    return int(match.group(1)), int(match.group(2))


def _months(first: tuple[int, int], last: tuple[int, int]) -> Iterator[tuple[int, int]]:
    year, month = first
    while (year, month) <= last:
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _days_in(year: int, month: int) -> int:
    following = dt.date(year + 1, 1, 1) if month == 12 else dt.date(year, month + 1, 1)
    return (following - dt.timedelta(days=1)).day


def monthly_file(base_url: str, market: str, symbol: str, year: int, month: int) -> RemoteFile:
    name = f"{symbol}-1m-{year:04d}-{month:02d}.zip"
    return RemoteFile(name, f"{base_url}/data/{MARKETS[market]}/monthly/klines/{symbol}/1m/{name}",
                      f"{year:04d}-{month:02d}")


def daily_files(base_url: str, market: str, symbol: str, year: int, month: int, last_day: int) -> list[RemoteFile]:
    files = []
    for day in range(1, last_day + 1):
        name = f"{symbol}-1m-{year:04d}-{month:02d}-{day:02d}.zip"
        files.append(RemoteFile(name, f"{base_url}/data/{MARKETS[market]}/daily/klines/{symbol}/1m/{name}",
                                f"{year:04d}-{month:02d}-{day:02d}"))
    return files


def plan(symbol: str, market: str, first: str, last: str, *, today: dt.date,
         base_url: str = DEFAULT_BASE_URL) -> list[RemoteFile]:
    """The files of months ``first``..``last`` (YYYY-MM) in time order: monthly ones for complete
    months, daily ones up to yesterday for the current month."""
    start, end = parse_month(first, "from"), parse_month(last, "to")
    current = (today.year, today.month)
    if end > current:
        raise UsageError(f"parameter to={last} is invalid: allowed up to the current month {today:%Y-%m}")
    if start > end:
        raise UsageError(f"parameters from={first} and to={last} are invalid: from must not be after to")
    files: list[RemoteFile] = []
    for year, month in _months(start, end):
        if (year, month) < current:
            files.append(monthly_file(base_url, market, symbol, year, month))
        else:
            files.extend(daily_files(base_url, market, symbol, year, month, today.day - 1))
    if not files:
        raise UsageError(f"parameters from={first} to={last}: nothing published yet "
                         f"(the daily files of {today:%Y-%m} start after its first day)")
    return files


def default_directory(root: Path, market: str, symbol: str) -> Path:
    """Where `candlesticks download` puts the files without ``--dir``: <workspace>/downloads/<market>/<SYMBOL>/."""
    return root / DOWNLOADS_DIR / market / symbol


# --- the progress display -------------------------------------------------------------------


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - the loop always returns


class _Display:
    """Files done of all, bytes of the file being fetched; rich bars on a terminal, else one log line
    per downloaded file (output's conventions: ``--no-progress``, ``-q``, ``-v``), and events."""

    def __init__(self, total_files: int, log: Callable[[str], None]) -> None:
        self.total_files, self.log = total_files, log
        self.done_files = 0
        self.bytes = 0  # downloaded in this run
        self._progress: Any = None
        self._files_task: Any = None
        self._file_task: Any = None

    @contextmanager
    def shown(self) -> Iterator["_Display"]:
        if not output.progress_wanted():
            yield self
            return
        with _rich_progress() as progress:
            self._progress = progress
            self._files_task = progress.add_task("files", total=self.total_files, unit="files", info="")
            try:
                yield self
            finally:
                self._progress = None

    def add_files(self, count: int) -> None:
        self.total_files += count
        if self._progress is not None:
            self._progress.update(self._files_task, total=self.total_files)

    def start_file(self, name: str, total_bytes: int | None, offset: int) -> None:
        if self._progress is None:
            if offset:
                output.log.debug(f"{name}: continuing from byte {offset:,}")
            return
        if self._file_task is not None:
            self._progress.remove_task(self._file_task)
        self._file_task = self._progress.add_task(name, total=total_bytes, completed=offset, unit="bytes", info="")

    def advance_bytes(self, count: int) -> None:
        self.bytes += count
        if self._progress is not None and self._file_task is not None:
            self._progress.advance(self._file_task, count)
            self._progress.update(self._files_task, info=f"{_size(self.bytes)} downloaded")

    def file_done(self, name: str, size: int, how: str) -> None:
        self.done_files += 1
        where = f"({self.done_files}/{self.total_files} files, {_size(self.bytes)} downloaded)"
        if how == "downloaded" and self._progress is None:
            self.log(f"{name}: {_size(size)} downloaded, SHA-256 verified {where}")
        else:
            output.log.debug(f"{name}: {how} {where}")
        if self._progress is not None:
            if self._file_task is not None:
                self._progress.remove_task(self._file_task)
                self._file_task = None
            self._progress.update(self._files_task, completed=self.done_files)
        events.emit(STAGE, self.done_files, self.total_files, file=name, bytes=self.bytes, status=how)


@contextmanager
def _rich_progress() -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn, DownloadColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
        TransferSpeedColumn,
    )
    from rich.table import Column
    from rich.text import Text

    class ByUnit(ProgressColumn):
        """A column that renders bytes for the file's bar and a count for the files' bar."""

        def __init__(self, for_bytes: ProgressColumn, for_count: ProgressColumn | None) -> None:
            super().__init__()
            self.for_bytes, self.for_count = for_bytes, for_count

        def render(self, task: Any) -> Any:
            column = self.for_bytes if task.fields.get("unit") == "bytes" else self.for_count
            return column.render(task) if column is not None else Text("")

    columns = [TextColumn("{task.description}", table_column=Column(max_width=30, no_wrap=True, overflow="ellipsis")),
               BarColumn(bar_width=16), ByUnit(DownloadColumn(), MofNCompleteColumn()),
               ByUnit(TransferSpeedColumn(), None), TimeElapsedColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield progress


# --- fetching -------------------------------------------------------------------------------


class _Passing(Exception):
    """A failure worth another try (connection, timeout, 5xx, 429); the message is one line."""


class _NotFound(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text}"


class _Fetcher:
    def __init__(self, client: "httpx.Client", retry: Retry, sleep: Callable[[float], None]) -> None:
        self.client, self.retry, self.sleep = client, retry, sleep
        self.requests = 0

    def _tried(self, url: str, attempt: Callable[[], Any]) -> Any:
        import httpx

        for number in range(1, self.retry.tries + 1):
            try:
                try:
                    return attempt()
                except httpx.TransportError as exc:  # refused, reset, dropped mid-body, timed out
                    raise _Passing(_one_line(exc)) from None
            except _Passing as exc:
                if number == self.retry.tries:
                    tries = f"{number} {'try' if number == 1 else 'tries'}"
                    raise EpochBuilderError(f"{url}: {exc} (after {tries}); rerun the same command to "
                                            "continue where it stopped") from None
                delay = self.retry.delay(number)
                output.warning(f"{url}: {exc}; trying again in {delay:g}s ({number}/{self.retry.tries})")
                self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_status(self, url: str, response: "httpx.Response", allowed: tuple[int, ...]) -> None:
        code = response.status_code
        if code == 404:
            raise _NotFound(url)
        if code >= 500 or code == 429:
            raise _Passing(f"HTTP {code} {response.reason_phrase}".strip())
        if code not in allowed:
            raise EpochBuilderError(f"{url}: HTTP {code} {response.reason_phrase}".strip())

    def text(self, url: str) -> str:
        def attempt() -> str:
            self.requests += 1
            response = self.client.get(url)
            self._check_status(url, response, (200,))
            return response.text

        return self._tried(url, attempt)

    def to_part(self, url: str, part: Path, display: _Display, name: str) -> None:
        """Fetch ``url`` into ``part``, continuing what it already holds (HTTP Range)."""

        def attempt() -> None:
            while True:  # at most twice: once more from byte 0 when the server refuses the range
                offset = part.stat().st_size if part.exists() else 0
                headers = {"Accept-Encoding": "identity"}
                if offset:
                    headers["Range"] = f"bytes={offset}-"
                self.requests += 1
                with self.client.stream("GET", url, headers=headers) as response:
                    if response.status_code == 416 and offset:  # the part is as long as the file, or longer
                        if _range_total(response.headers.get("content-range")) == offset:
                            return
                        part.unlink()
                        continue
                    self._check_status(url, response, (200, 206))
                    if response.status_code == 206:
                        start = _range_start(response.headers.get("content-range"))
                        if start != offset:
                            part.unlink()
                            raise _Passing(f"the server answered the range from byte {start}, not {offset}")
                        mode = "ab"
                    else:  # 200: the whole file (a server that ignores Range)
                        offset, mode = 0, "wb"
                    length = response.headers.get("content-length")
                    display.start_file(name, offset + int(length) if length and length.isdigit() else None, offset)
                    with open(part, mode) as fh:  # what arrived stays in the part when the connection drops
                        for chunk in response.iter_raw():  # as received: a drop keeps every byte so far
                            fh.write(chunk)
                            display.advance_bytes(len(chunk))
                        fh.flush()
                        os.fsync(fh.fileno())
                    return

        self._tried(url, attempt)


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def _range_total(content_range: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", content_range or "")
    return int(match.group(1)) if match else None


# --- the verified record ----------------------------------------------------------------------


def _load_verified(directory: Path) -> dict[str, Any]:
    import json

    try:
        record = json.loads((directory / VERIFIED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or damaged: files are checked against their .CHECKSUM again
    return record if isinstance(record, dict) else {}


def _still_verified(record: dict[str, Any], path: Path) -> bool:
    entry = record.get(path.name)
    try:
        stat = path.stat()
    except OSError:
        return False
    return (isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns
            and checksum_file(path).is_file())


def _record(record: dict[str, Any], directory: Path, path: Path, sha256: str) -> None:
    stat = path.stat()
    record[path.name] = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    atomic_write_json(directory / VERIFIED_FILE, dict(sorted(record.items())), indent=1)


def _matches_local(path: Path) -> str | None:
    """The hash of ``path`` when it matches the .CHECKSUM beside it (both already here), else None."""
    try:
        if not verify_beside(path):
            return None
    except EpochBuilderError:
        output.warning(f"{path}: does not match its {CHECKSUM_SUFFIX}; downloading it again")
        return None
    return parse_checksum(checksum_file(path).read_text(encoding="utf-8", errors="replace"), str(path), path.name)


# --- the command ----------------------------------------------------------------------------------


def download(
    symbol: str,
    market: str,
    first: str,
    last: str | None,
    directory: Path,
    *,
    base_url: str = DEFAULT_BASE_URL,
    today: dt.date | None = None,
    retry: Retry | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = output.info,
) -> dict[str, Any]:
    """Download and verify the 1m klines of months ``first``..``last`` (YYYY-MM; ``last`` None: the
    current month) into ``directory``. Returns the summary; ``files`` are the zips in time order."""
    import httpx

    from epoch_builder import __version__

    symbol, market, base_url = validate_symbol(symbol), validate_market(market), validate_base_url(base_url)
    today = today or dt.datetime.now(dt.timezone.utc).date()
    last = last or f"{today:%Y-%m}"
    pending = plan(symbol, market, first, last, today=today, base_url=base_url)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EpochBuilderError(f"{directory}: cannot create the download folder ({exc.strerror})") from None
    record = _load_verified(directory)
    previous = _previous_month(today.year, today.month)
    yesterday = today - dt.timedelta(days=1)
    files: list[Path] = []
    counts = {"downloaded": 0, "already_verified": 0}
    not_published: list[str] = []
    display = _Display(len(pending), log)
    client = httpx.Client(timeout=httpx.Timeout(TIMEOUT_S), follow_redirects=True,
                          headers={"User-Agent": f"epoch-builder/{__version__}"})
    fetcher = _Fetcher(client, retry or RETRY, sleep)
    started = time.perf_counter()
    with client, display.shown():
        queue = list(pending)
        while queue:
            remote = queue.pop(0)
            target = directory / remote.name
            try:
                how = _fetch_one(fetcher, remote, target, directory, record, display)
            except OSError as exc:  # the folder: full, read-only, ...
                raise EpochBuilderError(f"{exc.filename or target}: cannot write the download ({exc.strerror or exc})"
                                        ) from None
            except _NotFound as missing:
                if not remote.daily and parse_month(remote.period, "from") == previous:
                    days = daily_files(base_url, market, symbol, *previous, _days_in(*previous))
                    log(f"{remote.name}: not published yet; taking the {len(days)} daily files of {remote.period}")
                    queue[:0] = days
                    display.add_files(len(days) - 1)
                    continue
                if remote.daily and remote.period == f"{yesterday:%Y-%m-%d}":
                    output.warning(f"{remote.name}: not published yet (yesterday's file); skipped")
                    not_published.append(remote.name)
                    display.file_done(remote.name, 0, "not published yet")
                    continue
                what = f"{remote.period} ({'daily' if remote.daily else 'monthly'} file)"
                raise UsageError(
                    f"{missing.url}: not found (HTTP 404): the server has no {market} 1m klines of {symbol} for "
                    f"{what}; check --symbol, --market and --from/--to"
                ) from None
            counts[how] += 1
            files.append(target)
            display.file_done(remote.name, target.stat().st_size, how.replace("_", " "))
    log(f"{len(files)} file(s) in {directory}: {counts['downloaded']} downloaded ({_size(display.bytes)}), "
        f"{counts['already_verified']} already verified, in {time.perf_counter() - started:.1f}s")
    return {
        "symbol": symbol, "market": market, "from": first, "to": last, "base_url": base_url,
        "dir": str(directory.resolve()), "files": [str(p.resolve()) for p in files],
        "downloaded": counts["downloaded"], "already_verified": counts["already_verified"],
        "bytes_downloaded": display.bytes, "not_published": not_published, "requests": fetcher.requests,
    }


def _fetch_one(fetcher: _Fetcher, remote: RemoteFile, target: Path, directory: Path, record: dict[str, Any],
               display: _Display) -> str:
    """Make ``target`` a verified copy of ``remote``: "already_verified" or "downloaded"."""
    if _still_verified(record, target):
        return "already_verified"  # no request at all
    local = _matches_local(target)
    if local is not None:
        _record(record, directory, target, local)
        return "already_verified"
    checksum_url = remote.url + CHECKSUM_SUFFIX
    checksum_text = fetcher.text(checksum_url)
    expected = parse_checksum(checksum_text, checksum_url, remote.name)
    if target.is_file() and sha256_of(target) == expected:  # here already, without its .CHECKSUM
        atomic_write_text(checksum_file(target), checksum_text)
        _record(record, directory, target, expected)
        return "already_verified"
    part = target.with_name(target.name + PART_SUFFIX)
    for fresh in (False, True):
        if fresh:
            part.unlink(missing_ok=True)
        resumed = part.exists() and part.stat().st_size > 0
        fetcher.to_part(remote.url, part, display, remote.name)
        actual = sha256_of(part)
        if actual == expected:
            break
        part.unlink(missing_ok=True)  # a wrong file is never kept
        if not resumed:  # a part left by an earlier run may be of another version of the file: once more whole
            raise EpochBuilderError(
                f"{remote.name}: SHA-256 mismatch: the download hashes to {actual}, {remote.name}{CHECKSUM_SUFFIX} "
                f"says {expected} ({remote.url}); the file was removed, rerun to fetch it again"
            )
    atomic_write_text(checksum_file(target), checksum_text)  # first: a zip in place always has its checksum
    os.replace(part, target)
    fsync_dir(directory)
    _record(record, directory, target, expected)
    return "downloaded"

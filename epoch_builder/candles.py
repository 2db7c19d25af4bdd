"""Candlestick import, validation and resampling (SEMANTICS §1).

Sources understood (each ``.csv`` or a ``.zip`` holding one CSV):

* Binance public-data klines, with or without header: 12 columns, open time
  in ms or µs (spot files switched to µs in 2025). Volume is the quote
  volume (USDT), as the original's ``v``.
* The original's own ``ot,ct,o,h,l,c,v`` CSV.
* Generic OHLCV CSV with a header naming a time column (open_time, time,
  timestamp, date, datetime) and open/high/low/close/volume; time as ISO
  text, unix seconds, ms or µs.

Several files are merged: exact duplicate rows are dropped, conflicting
duplicates refused. Gaps are reported and filled only when asked.
Parsing is columnar (pyarrow's CSV reader) so 2 M rows load in well under 2 s.
Sources are streamed (inflated on the fly), after a 64 KiB prefix is checked to be text:
a sparse, binary or NUL-filled file is refused without being read whole.
"""

from __future__ import annotations

import codecs
import gzip
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from epoch_builder.errors import EpochBuilderError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

MINUTE_MS = 60_000
COLUMNS = ["ot", "ct", "o", "h", "l", "c", "v"]
TIME_NAMES = ("ot", "open_time", "opentime", "time", "timestamp", "date", "datetime")
GENERIC_NAMES = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v",
                 "o": "o", "h": "h", "l": "l", "c": "c", "v": "v"}
BINANCE_COLUMNS = 12


@dataclass
class GapReport:
    count: int = 0
    missing_minutes: int = 0
    largest_minutes: int = 0
    first: list[dict[str, Any]] = field(default_factory=list)  # [{after, before, missing}]

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "missing_minutes": self.missing_minutes,
                "largest_minutes": self.largest_minutes, "first": self.first}

    def describe(self) -> str:
        if not self.count:
            return "no gaps"
        firsts = ", ".join(f"{g['after']} -> {g['before']} ({g['missing']} min)" for g in self.first)
        return (f"{self.count} gap(s), {self.missing_minutes} missing minute(s), largest {self.largest_minutes} min; "
                f"first: {firsts}")


def iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


# --- reading ---------------------------------------------------------------

PREFIX_BYTES = 1 << 16  # what is read (and inflated) before a source is judged to be text at all


@contextmanager
def _source_errors(path: Path) -> Iterator[None]:
    """Reading errors of a source file as one line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except zipfile.BadZipFile:
        raise EpochBuilderError(f"{path}: not a valid zip file") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip: bad header, truncated stream, corrupt data
        raise EpochBuilderError(f"{path}: cannot read ({exc})") from None


def _open_stream(path: Path) -> BinaryIO:
    """The CSV bytes of a source as a stream: the file, its gzip content or its one .csv zip member.

    Nothing is read up front, so a huge or bogus file costs only what is read of it."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(path) as zf:  # the member stream keeps the file open after this closes
            members = [n for n in zf.namelist() if n.lower().endswith(".csv")]
            if len(members) != 1:
                raise EpochBuilderError(f"{path}: expected exactly one .csv inside the zip, found {len(members)}")
            return zf.open(members[0])
    if suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _refuse_non_text(chunk: bytes, path: Path, offset: int, *, whole_chars: bool) -> None:
    """A NUL byte or invalid UTF-8 means a binary, sparse or truncated file, not a CSV: refuse it
    before the CSV reader pulls all of it into memory."""
    fix = "give the candles as a UTF-8 CSV (.csv, .csv.gz, or a .zip holding one .csv)"
    nul = chunk.find(b"\0")
    if nul >= 0:
        raise EpochBuilderError(f"{path}: not a text CSV (NUL byte at offset {offset + nul}); {fix}")
    if whole_chars:  # a chunk cut out of the middle may split a character; only the head is decoded
        try:
            codecs.getincrementaldecoder("utf-8")().decode(chunk, final=False)  # a split last char is fine
        except UnicodeDecodeError as exc:
            raise EpochBuilderError(f"{path}: not UTF-8 text (byte {offset + exc.start}); {fix}") from None


def _read_head(path: Path) -> bytes:
    """The first bytes of the CSV text, checked to be text; for a plain file its last bytes too
    (a file extended with a hole ends in NULs), which costs one seek."""
    with _open_stream(path) as stream:
        head = stream.read(PREFIX_BYTES)
    _refuse_non_text(head, path, 0, whole_chars=True)
    if path.suffix.lower() not in (".zip", ".gz"):
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size > len(head):
                start = max(len(head), size - PREFIX_BYTES)
                fh.seek(start)
                _refuse_non_text(fh.read(PREFIX_BYTES), path, start, whole_chars=False)
    return head


def _has_header(first_line: str) -> bool:
    first = first_line.split(",")[0].strip().strip('"')
    try:
        float(first)
        return False
    except ValueError:
        return not first[:4].isdigit()  # an ISO date starts with a year: data, not a header


TIME_UNITS = ((1e11, "seconds", 1000.0), (1e14, "milliseconds", 1.0), (1e17, "microseconds", 1e-3),
              (float("inf"), "nanoseconds", 1e-6))  # (below this magnitude, unit, factor to ms)
MAX_PRICE = 1e9  # USDT: far above any real price, far below values that break the arithmetic downstream


def _to_epoch_ms(values: Any, path: Path, first_row: int = 1, units: list[int] | None = None) -> np.ndarray:
    """Times as ms: ISO text / timestamps, or numbers in s, ms or µs (by magnitude, one unit per file).
    ``units``: the unit of the file's earlier blocks (read in pieces), kept there for the next block."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(values.type):
        return pc.cast(pc.cast(values, pa.timestamp("ms", tz="UTC")), pa.int64()).to_numpy(zero_copy_only=False)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        try:
            parsed = pc.strptime(values, format="%Y-%m-%dT%H:%M:%S", unit="ms", error_is_null=True)
        except pa.ArrowInvalid:
            parsed = None
        if parsed is None or parsed.null_count:
            import pandas as pd

            try:
                parsed_pd = pd.to_datetime(values.to_pandas(), utc=True, format="ISO8601")
            except (ValueError, TypeError) as exc:
                raise EpochBuilderError(f"{path}: unreadable time value ({exc}); use ISO text, unix s, ms or µs") from None
            return parsed_pd.astype("int64").to_numpy() // 10**6 if parsed_pd.dtype.unit == "ns" else (
                parsed_pd.dt.as_unit("ms").astype("int64").to_numpy())
        return pc.cast(parsed, pa.int64()).to_numpy(zero_copy_only=False)
    numbers = values.to_numpy(zero_copy_only=False).astype(np.float64)
    if len(numbers) == 0:
        return numbers.astype(np.int64)
    if not np.all(np.isfinite(numbers)):
        row = int(np.flatnonzero(~np.isfinite(numbers))[0])
        raise EpochBuilderError(f"{path}: row {row + first_row}: the time value is missing or not a number")
    unit_of = np.searchsorted([limit for limit, _, _ in TIME_UNITS], np.abs(numbers), side="right")
    if units is not None and not units:
        units.append(int(unit_of[0]))
    unit = units[0] if units else int(unit_of[0])
    mixed = np.flatnonzero(unit_of != unit)
    if len(mixed):  # e.g. Binance's 2025 switch from ms to µs inside one merged file
        row = int(mixed[0])
        raise EpochBuilderError(
            f"{path}: row {row + first_row}: time {numbers[row]:.0f} is in {TIME_UNITS[unit_of[row]][1]}, the rows "
            f"before it in {TIME_UNITS[unit][1]}; one time unit per file")
    return np.round(numbers * TIME_UNITS[unit][2]).astype(np.int64)


def read_source(path: Path) -> "pd.DataFrame":
    """One source file -> DataFrame(ot, ct, o, h, l, c, v, _row) with ``_row`` = 1-based line in the file."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with _source_errors(path):
        head = _read_head(path)
    first_line = head[:4096].split(b"\n", 1)[0].decode("utf-8-sig", "replace").strip()  # -sig: drop a BOM
    if not first_line:
        raise EpochBuilderError(f"{path}: file is empty")
    header = _has_header(first_line)
    # 4 MiB blocks, read one at a time: the import's memory is bounded by the block (a 300 MB bomb peaks at
    # ~70 MB over the interpreter's; 16 MiB blocks read ahead by threads took ~360 MB) at ~15% of speed on a
    # 4-year file (bench/bench_import.py: 1.17 s against 0.99 s).
    read_options = pacsv.ReadOptions(autogenerate_column_names=not header, block_size=1 << 22, use_threads=False)
    convert_options = pacsv.ConvertOptions()
    if not header and first_line.count(",") + 1 == BINANCE_COLUMNS:
        # Binance klines: parse only the columns kept, with known types (skips type inference).
        wanted = {"f0": pa.int64(), "f1": pa.float64(), "f2": pa.float64(), "f3": pa.float64(),
                  "f4": pa.float64(), "f5": pa.float64(), "f7": pa.float64()}
        convert_options = pacsv.ConvertOptions(column_types=wanted, include_columns=list(wanted))
    # Streamed from the file (inflated on the fly) one block at a time, each checked as it comes: memory is the
    # candles read so far plus a block, never the inflated bytes, and a bad row (a repeated one in a
    # decompression bomb) is refused at its block, not after the whole file.
    first_row = 2 if header else 1
    parts: list[pd.DataFrame] = []
    units: list[int] = []
    with _source_errors(path), _open_stream(path) as stream:
        try:
            reader = pacsv.open_csv(stream, read_options=read_options, convert_options=convert_options,
                                    parse_options=pacsv.ParseOptions(newlines_in_values=False))
            names = [n.strip().lower() for n in reader.schema.names]
            columns = _candle_columns(names, header, path)
            row = first_row
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                part = _candle_part(batch.rename_columns(names), columns, path, row, units)
                previous = parts[-1]["ot"].iloc[-1] if parts else None
                _check_increasing(part, previous, path, row)
                parts.append(part)
                row += len(part)
        except pa.ArrowInvalid as exc:
            raise EpochBuilderError(f"{path}: malformed CSV ({str(exc).splitlines()[0]})") from None
    if not parts:
        raise EpochBuilderError(f"{path}: the file has a header but no candles")
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    out["ct"] = out["ot"] + MINUTE_MS - 1
    out["_row"] = np.arange(first_row, first_row + len(out), dtype=np.int64)
    return out[["ot", "ct", "o", "h", "l", "c", "v", "_row"]]


def _candle_columns(names: list[str], header: bool, path: Path) -> dict[str, Any]:
    """Which column holds each of ot, o, h, l, c, v (a name, or an index for headerless files)."""
    if not header or set(names) >= {"open_time", "close_time", "quote_volume"} or (
        header and len(names) == BINANCE_COLUMNS and "ignore" in names
    ):
        if len(names) < 7:
            raise EpochBuilderError(
                f"{path}: headerless file has {len(names)} columns; expected Binance klines ({BINANCE_COLUMNS})"
                " or a header naming the columns"
            )
        # Binance's quote volume is the USDT volume the original stores as v
        return {"ot": 0, "o": 1, "h": 2, "l": 3, "c": 4, "v": "f7" if "f7" in names else 5}
    if {"ot", "ct", "o", "h", "l", "c", "v"} <= set(names):
        return {k: k for k in ("ot", "o", "h", "l", "c", "v")}
    time_col = next((n for n in TIME_NAMES if n in names), None)
    mapped = {GENERIC_NAMES[n]: n for n in names if n in GENERIC_NAMES}
    missing = [k for k in ("o", "h", "l", "c", "v") if k not in mapped]
    if time_col is None or missing:
        raise EpochBuilderError(
            f"{path}: unrecognised header {names}; need a time column ({', '.join(TIME_NAMES)}) and "
            "open, high, low, close, volume"
        )
    return {"ot": time_col, **{k: mapped[k] for k in ("o", "h", "l", "c", "v")}}


def _candle_part(batch: Any, columns: dict[str, Any], path: Path, first_row: int, units: list[int]) -> "pd.DataFrame":
    """One block of the file as DataFrame(ot, o, h, l, c, v), its numbers checked."""
    import pandas as pd

    def column(key: str) -> Any:
        where = columns[key]
        return batch.column(where)

    out = pd.DataFrame({"ot": np.asarray(_to_epoch_ms(column("ot"), path, first_row, units), dtype=np.int64)})
    for key in ("o", "h", "l", "c", "v"):
        values = column(key)
        try:
            out[key] = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        except (ValueError, TypeError):
            bad = pd.to_numeric(pd.Series(values.to_pylist()), errors="coerce").isna().to_numpy().nonzero()[0]
            row = int(bad[0]) + first_row if len(bad) else "?"
            raise EpochBuilderError(f"{path}: row {row}: column {key!r} is not a number") from None
    return out


def _check_increasing(part: "pd.DataFrame", previous: int | None, path: Path, first_row: int) -> None:
    """Within one file, order is the exchange's: a time not after the previous row's means a corrupt file."""
    ot = part["ot"].to_numpy()
    if previous is not None and len(ot):
        ot = np.concatenate(([previous], ot))
        first_row -= 1
    backwards = np.flatnonzero(np.diff(ot) <= 0)
    if len(backwards):
        row = int(backwards[0]) + 1
        raise EpochBuilderError(
            f"{path}: row {row + first_row}: open time {iso(int(ot[row]))} is not after the previous "
            "row's (times must be strictly increasing within a file)"
        )


# --- merging and validation -------------------------------------------------

def merge_sources(paths: list[Path], on_read: Callable[[Path, int], None] | None = None) -> "pd.DataFrame":
    """Read and merge; drop exact duplicates; refuse conflicting ones. Adds ``_src`` (index into paths).
    ``on_read(path, rows)`` after each file (progress)."""
    import pandas as pd

    if not paths:
        raise EpochBuilderError("no source files given")
    frames = []
    for index, path in enumerate(paths):
        df = read_source(Path(path))
        df["_src"] = index
        frames.append(df)
        if on_read is not None:
            on_read(Path(path), len(df))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if (np.diff(df["ot"].to_numpy()) > 0).all():
        return df  # already strictly increasing: no sort, no duplicates (the common single-file case)
    df = df.sort_values(["ot", "_src", "_row"], kind="stable").reset_index(drop=True)
    dup = df.duplicated(subset=["ot"], keep=False)
    if dup.any():
        values = df.loc[dup, COLUMNS]
        exact = values.duplicated(keep="first")
        conflicts = values.loc[~exact, "ot"].duplicated(keep=False)
        if conflicts.any():
            first = df.loc[conflicts[conflicts].index[0]]
            raise EpochBuilderError(
                f"{paths[int(first['_src'])]}: row {int(first['_row'])}: conflicting duplicate candle at "
                f"{iso(int(first['ot']))} (another source has different prices for the same open time)"
            )
        df = df.loc[~(dup & df.duplicated(subset=COLUMNS, keep="first"))].reset_index(drop=True)
    return df


def _fail_at(df: "pd.DataFrame", mask: np.ndarray, paths: list[Path], rule: str) -> None:
    bad = np.flatnonzero(mask)
    if len(bad):
        row = df.iloc[int(bad[0])]
        where = f"{paths[int(row['_src'])]}: row {int(row['_row'])}" if "_src" in df else f"row {int(bad[0])}"
        raise EpochBuilderError(f"{where} ({iso(int(row['ot']))}): {rule} ({len(bad)} row(s) fail)")


def validate_prices(df: "pd.DataFrame", paths: list[Path]) -> None:
    """Price rules of §1 that hold per row; times are checked by ``find_gaps``."""
    o, h, l, c, v = (df[k].to_numpy() for k in ("o", "h", "l", "c", "v"))
    _fail_at(df, np.isnan(o) | np.isnan(h) | np.isnan(l) | np.isnan(c) | np.isnan(v), paths, "NaN value")
    _fail_at(df, ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(l) & np.isfinite(c) & np.isfinite(v)), paths,
             "infinite value")
    _fail_at(df, (o <= 0) | (h <= 0) | (l <= 0) | (c <= 0), paths, "prices must be positive")
    _fail_at(df, (o > MAX_PRICE) | (h > MAX_PRICE) | (l > MAX_PRICE) | (c > MAX_PRICE), paths,
             f"prices must be at most {MAX_PRICE:.0e} USDT")
    _fail_at(df, v < 0, paths, "volume must not be negative")
    _fail_at(df, l > np.minimum(o, c), paths, "low must be <= min(open, close)")
    _fail_at(df, h < np.maximum(o, c), paths, "high must be >= max(open, close)")
    ot = df["ot"].to_numpy()
    _fail_at(df, ot % MINUTE_MS != 0, paths, "open time is not on a whole minute")


def find_gaps(ot: np.ndarray, limit: int = 5) -> GapReport:
    steps = np.diff(ot)
    gap_idx = np.flatnonzero(steps != MINUTE_MS)
    report = GapReport()
    if len(gap_idx) == 0:
        return report
    missing = steps[gap_idx] // MINUTE_MS - 1
    report.count = int(len(gap_idx))
    report.missing_minutes = int(missing.sum())
    report.largest_minutes = int(missing.max())
    report.first = [
        {"after": iso(int(ot[i])), "before": iso(int(ot[i + 1])), "missing": int(m)}
        for i, m in zip(gap_idx[:limit], missing[:limit])
    ]
    return report


def fill_gaps(df: "pd.DataFrame") -> "pd.DataFrame":
    """Insert a candle at the previous close with zero volume for every missing minute."""
    import pandas as pd

    ot = df["ot"].to_numpy()
    full = np.arange(ot[0], ot[-1] + 1, MINUTE_MS, dtype=np.int64)
    out = pd.DataFrame({"ot": full})
    merged = out.merge(df[COLUMNS], on="ot", how="left")
    missing = merged["c"].isna().to_numpy()
    prev_close = merged["c"].ffill()
    for key in ("o", "h", "l", "c"):
        merged.loc[missing, key] = prev_close[missing]
    merged.loc[missing, "v"] = 0.0
    merged["ct"] = merged["ot"] + MINUTE_MS - 1
    return merged[COLUMNS]


def resample(df: "pd.DataFrame", interval_minutes: int) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(1m trimmed to whole intervals, prediction candles): first o, max h, min l, last c, sum v."""
    import pandas as pd

    step = interval_minutes * MINUTE_MS
    ot = df["ot"].to_numpy()
    first = -(-ot[0] // step) * step  # first interval boundary at or after the first candle
    last_end = (ot[-1] + MINUTE_MS) // step * step  # end of the last complete interval
    minute = df[(df["ot"] >= first) & (df["ot"] < last_end)].reset_index(drop=True)
    if minute.empty:
        raise EpochBuilderError(f"not enough candles for one {interval_minutes}-minute prediction candle")
    bins = (minute["ot"].to_numpy() - first) // step
    grouped = minute.groupby(bins, sort=True)
    pred = pd.DataFrame({
        "ot": grouped["ot"].first().to_numpy(),
        "o": grouped["o"].first().to_numpy(),
        "h": grouped["h"].max().to_numpy(),
        "l": grouped["l"].min().to_numpy(),
        "c": grouped["c"].last().to_numpy(),
        "v": grouped["v"].sum().to_numpy(),
        "ct": grouped["ct"].last().to_numpy(),
    })
    return minute[COLUMNS], pred[COLUMNS]


def check_series(df: "pd.DataFrame", interval_minutes: int, name: str) -> None:
    """Every §1 rule on a finished series (import output or a bundle on disk)."""
    step = interval_minutes * MINUTE_MS
    ot, ct = df["ot"].to_numpy(), df["ct"].to_numpy()
    checks = [
        (np.diff(ot, prepend=ot[0] - step) != step, f"open times must step exactly {interval_minutes} min"),
        (ct != ot + step - 1, "close time must be open time + interval - 1 ms"),
    ]
    for mask, rule in checks:
        bad = np.flatnonzero(mask)
        if len(bad):
            raise EpochBuilderError(f"{name}: row {int(bad[0])} ({iso(int(ot[bad[0]]))}): {rule}")
    validate_prices(df.assign(_src=0, _row=np.arange(len(df))), [Path(name)])


# --- bundle files -----------------------------------------------------------

def write_candles(path: Path, df: "pd.DataFrame") -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from epoch_builder.storage import atomic_write_with

    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    atomic_write_with(path, lambda tmp: pq.write_table(table, tmp, compression="lz4", use_dictionary=False))


def read_candles(path: Path) -> "pd.DataFrame":
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pandas()
    except FileNotFoundError:
        raise EpochBuilderError(f"{path}: candlestick file not found (run `epoch-builder candlesticks import` first)") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise EpochBuilderError(f"{path}: unreadable candlestick file ({exc})") from None


def export_csv(path: Path, df: "pd.DataFrame") -> None:
    """The original's CSV names and columns, for tools that want them."""
    from epoch_builder.storage import atomic_write_with

    atomic_write_with(path, lambda tmp: df.to_csv(tmp, index=False))

"""Candlestick import: formats, merging, validation, gaps, resampling (SEMANTICS §1)."""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epoch_builder.candles import read_candles
from epoch_builder.errors import EpochBuilderError
from epoch_builder.importer import import_candlesticks
from epoch_builder.workspace import Workspace

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 1_800_000  # on a 30-minute boundary
MIN = 60_000


def make_candles(n: int, start: int = T0, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30000 + np.cumsum(rng.normal(0, 5, n)).round(2)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + rng.uniform(0, 3, n).round(2)
    low = np.minimum(open_, close) - rng.uniform(0, 3, n).round(2)
    ot = start + np.arange(n, dtype=np.int64) * MIN
    return pd.DataFrame({"ot": ot, "ct": ot + MIN - 1, "o": open_, "h": high, "l": low, "c": close,
                         "v": rng.uniform(1, 9, n).round(4)})


def binance_rows(df: pd.DataFrame, time_scale: int = 1) -> pd.DataFrame:
    return pd.DataFrame({
        0: df.ot * time_scale, 1: df.o, 2: df.h, 3: df.l, 4: df.c, 5: df.v / 30000, 6: df.ct * time_scale,
        7: df.v, 8: 10, 9: 0.1, 10: 0.2, 11: 0,
    })


def quiet(*_: object) -> None:
    pass


def run_import(tmp_path: Path, *sources: Path, **kw) -> tuple[Workspace, dict]:
    ws = Workspace(tmp_path / "ws")
    return ws, import_candlesticks(ws, list(sources), log=quiet, **kw)


def test_bundled_sample_imports_and_resamples(tmp_path: Path, sample_csv: Path) -> None:
    ws, summary = run_import(tmp_path, sample_csv)
    minute, pred = read_candles(ws.candlesticks_file), read_candles(ws.prediction_candlesticks_file)
    assert summary["candles"] == 30240 and summary["prediction_candles"] == 1008
    assert (np.diff(minute.ot) == MIN).all() and (np.diff(pred.ot) == 30 * MIN).all()
    assert (pred.ct == pred.ot + 30 * MIN - 1).all()
    first = minute.iloc[:30]
    row = pred.iloc[0]
    assert row.o == first.o.iloc[0] and row.c == first.c.iloc[-1]
    assert row.h == first.h.max() and row.l == first.l.min() and row.v == pytest.approx(first.v.sum())


@pytest.mark.parametrize("scale", [1, 1000], ids=["ms", "us"])
def test_binance_zip_headerless_ms_and_us(tmp_path: Path, scale: int) -> None:
    df = make_candles(120)
    csv = binance_rows(df, scale).to_csv(index=False, header=False)
    src = tmp_path / "BTCUSDT-1m-2024-01.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("BTCUSDT-1m-2024-01.csv", csv)
    ws, _ = run_import(tmp_path, src)
    minute = read_candles(ws.candlesticks_file)
    np.testing.assert_array_equal(minute.ot, df.ot)
    np.testing.assert_allclose(minute.v, df.v)  # quote volume (USDT) is the seed's v


def test_generic_csv_unix_seconds_and_seed_format(tmp_path: Path) -> None:
    df = make_candles(60)
    generic = tmp_path / "generic.csv"
    pd.DataFrame({"timestamp": df.ot // 1000, "open": df.o, "high": df.h, "low": df.l, "close": df.c,
                  "volume": df.v}).to_csv(generic, index=False)
    seed = tmp_path / "seed.csv.gz"
    seed.write_bytes(gzip.compress(make_candles(60, start=T0 + 60 * MIN).to_csv(index=False).encode()))
    ws, summary = run_import(tmp_path, generic, seed)
    assert summary["candles"] == 120 and summary["prediction_candles"] == 4


def test_monthly_files_merge_dropping_exact_duplicates(tmp_path: Path) -> None:
    df = make_candles(90)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    df.iloc[:60].to_csv(a, index=False)
    df.iloc[50:].to_csv(b, index=False)  # 10 overlapping identical rows
    _, summary = run_import(tmp_path, a, b)
    assert summary["candles"] == 90


def test_conflicting_duplicate_is_refused_naming_file_and_row(tmp_path: Path) -> None:
    df = make_candles(60)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    df.to_csv(a, index=False)
    other = df.iloc[[10]].copy()
    other["c"] += 1
    other["h"] += 1
    other.to_csv(b, index=False)
    with pytest.raises(EpochBuilderError, match=r"row \d+: conflicting duplicate"):
        run_import(tmp_path, a, b)


def test_gaps_reported_refused_then_filled(tmp_path: Path) -> None:
    df = make_candles(120).drop(index=[40, 41, 42, 90]).reset_index(drop=True)
    src = tmp_path / "gappy.csv"
    df.to_csv(src, index=False)
    with pytest.raises(EpochBuilderError, match=r"2 gap\(s\), 4 missing minute\(s\), largest 3 min.*--fill-gaps"):
        run_import(tmp_path, src)
    ws, summary = run_import(tmp_path, src, fill_gaps=True)
    minute = read_candles(ws.candlesticks_file)
    assert summary["gaps"]["count"] == 2 and summary["gaps_filled"]
    filled = minute.iloc[40:43]
    prev_close = minute.c.iloc[39]
    assert (filled[["o", "h", "l", "c"]] == prev_close).all().all() and (filled.v == 0).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.__setitem__("h", d.h.where(d.index != 7, d.l - 1)), r"row 9 .*high must be >= max"),
        (lambda d: d.__setitem__("o", d.o.where(d.index != 3, -5.0)), r"row 5 .*positive"),
        (lambda d: d.__setitem__("ot", d.ot.where(d.index != 4, d.ot + 17)), r"whole minute"),
    ],
    ids=["high-below", "negative", "unaligned-time"],
)
def test_bad_rows_name_file_and_row(tmp_path: Path, mutate, message: str) -> None:
    df = make_candles(60)
    mutate(df)
    src = tmp_path / "bad.csv"
    df.to_csv(src, index=False)
    with pytest.raises(EpochBuilderError, match=message) as err:
        run_import(tmp_path, src)
    assert str(src) in str(err.value)


def test_non_numeric_cell_and_unknown_header(tmp_path: Path) -> None:
    src = tmp_path / "text.csv"
    src.write_text("ot,ct,o,h,l,c,v\n" + f"{T0},{T0 + MIN - 1},1,2,0.5,1,abc\n")
    with pytest.raises(EpochBuilderError, match="text.csv"):
        run_import(tmp_path, src)
    weird = tmp_path / "weird.csv"
    weird.write_text("when,price\n1,2\n")
    with pytest.raises(EpochBuilderError, match=r"weird.csv: unrecognised header"):
        run_import(tmp_path, weird)


def test_failed_import_leaves_previous_bundle_untouched(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    make_candles(60).to_csv(good, index=False)
    ws, _ = run_import(tmp_path, good)
    before = ws.candlesticks_file.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("garbage\n\x00\x01\n")
    with pytest.raises(EpochBuilderError):
        run_import(tmp_path, bad)
    assert ws.candlesticks_file.read_bytes() == before
    assert not list(ws.candlesticks_dir.glob(".*.tmp"))


def test_interval_parameter_is_validated(tmp_path: Path) -> None:
    src = tmp_path / "c.csv"
    make_candles(60).to_csv(src, index=False)
    with pytest.raises(EpochBuilderError, match=r"interval=7 .*allowed 2\.\.1440"):
        run_import(tmp_path, src, interval_minutes=7)


def test_more_malformed_inputs_give_one_line_errors(tmp_path: Path) -> None:
    df = make_candles(30)
    cases: dict[str, tuple[Path, str]] = {}
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases["empty"] = (empty, r"empty.csv: file is empty")
    nocsv = tmp_path / "nocsv.zip"
    with zipfile.ZipFile(nocsv, "w") as zf:
        zf.writestr("readme.txt", "hello")
    cases["zip"] = (nocsv, r"nocsv.zip: expected exactly one .csv inside the zip, found 0")
    nan = tmp_path / "nan.csv"
    df.assign(c=df.c.where(df.index != 5, np.nan)).to_csv(nan, index=False)
    cases["nan"] = (nan, r"nan.csv: row 7 .*NaN")
    backwards = tmp_path / "backwards.csv"
    df.iloc[[0, 1, 3, 2, 4]].to_csv(backwards, index=False)
    cases["order"] = (backwards, r"backwards.csv: row 5: open time .* is not after")
    columns = tmp_path / "columns.csv"
    columns.write_text("1,2,3\n4,5,6\n")
    cases["columns"] = (columns, r"columns.csv: headerless file has 3 columns")
    for name, (src, message) in cases.items():
        with pytest.raises(EpochBuilderError, match=message) as err:
            run_import(tmp_path, src)
        assert "\n" not in str(err.value), name


def test_out_of_range_values_header_only_and_mixed_time_units(tmp_path: Path) -> None:
    df = make_candles(30)
    cases: dict[str, tuple[Path, str]] = {}
    inf = tmp_path / "inf.csv"
    df.assign(h=df.h.where(df.index != 4, np.inf)).to_csv(inf, index=False)
    cases["inf"] = (inf, r"inf.csv: row 6 .*infinite value")
    huge = tmp_path / "huge.csv"
    df.assign(h=df.h.where(df.index != 8, 1e300)).to_csv(huge, index=False)
    cases["huge"] = (huge, r"huge.csv: row 10 .*prices must be at most 1e\+09 USDT")
    header_only = tmp_path / "header.csv"
    header_only.write_text("ot,ct,o,h,l,c,v\n")
    cases["header-only"] = (header_only, r"header.csv: the file has a header but no candles")
    mixed = binance_rows(df)
    mixed.loc[12:, 0] = mixed.loc[12:, 0] * 1000  # µs from row 13 of the file on, as Binance switched in 2025
    mixed_path = tmp_path / "mixed.csv"
    mixed.to_csv(mixed_path, index=False, header=False)
    cases["mixed-units"] = (mixed_path, r"mixed.csv: row 13: time \d+ is in microseconds, the rows before it in "
                                        r"milliseconds; one time unit per file")
    for name, (src, message) in cases.items():
        with pytest.raises(EpochBuilderError, match=message) as err:
            run_import(tmp_path, src)
        assert "\n" not in str(err.value), name


READ_PEAK = """
import resource, sys
from pathlib import Path
import pandas, pyarrow, pyarrow.compute, pyarrow.csv  # loaded before the baseline: not the file's cost
from epoch_builder.candles import read_source
from epoch_builder.errors import EpochBuilderError

def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

base = peak()
for name in sys.argv[1:]:
    try:
        read_source(Path(name))
        print("ACCEPTED", name)
    except EpochBuilderError as exc:
        print("REFUSED", exc)
print("GROWTH", peak() - base)
"""


def test_huge_non_text_sources_are_refused_after_a_small_prefix(tmp_path: Path) -> None:
    """A 2 GiB sparse file (``truncate -s 2G``), real rows followed by a 2 GiB hole, and archives that
    inflate to 128 MiB of NULs: each refused naming the file, without reading or inflating it all."""
    import subprocess
    import sys

    sparse = tmp_path / "big.csv"
    with open(sparse, "wb"):
        pass
    os.truncate(sparse, 2 << 30)  # sparse: no disk, but 2 GiB if read
    holed = tmp_path / "holed.csv"
    make_candles(60).to_csv(holed, index=False)
    os.truncate(holed, 2 << 30)
    zeros = bytes(1 << 20)
    gz = tmp_path / "zeros.csv.gz"
    with gzip.open(gz, "wb", compresslevel=1) as out:
        for _ in range(128):
            out.write(zeros)
    zipped = tmp_path / "zeros.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, zf.open("zeros.csv", "w") as out:
        for _ in range(128):
            out.write(zeros)
    sources = [sparse, holed, gz, zipped]
    result = subprocess.run([sys.executable, "-c", READ_PEAK, *map(str, sources)], capture_output=True, text=True,
                            timeout=120, check=True)
    lines = result.stdout.splitlines()
    refused = [line for line in lines if line.startswith("REFUSED")]
    assert len(refused) == len(sources), result.stdout
    for src, line in zip(sources, refused):
        assert line.startswith(f"REFUSED {src}: not a text CSV (NUL byte at offset "), line
    growth = int(lines[-1].split()[1])
    assert growth < 64 << 20, f"peak memory grew by {growth >> 20} MiB while refusing"


def test_damaged_archives_and_utf8_bom_give_one_line_results(tmp_path: Path) -> None:
    csv = make_candles(60).to_csv(index=False).encode()
    packed = gzip.compress(csv)
    cases = {
        "trunc.csv.gz": (packed[: len(packed) // 2], "cannot read"),
        "notgz.csv.gz": (b"ot,ct,o,h,l,c,v\n", "cannot read"),
        "latin1.csv": ("time,Öffnung\n".encode("latin-1"), r"not UTF-8 text \(byte 5\)"),
        "utf16.csv": (csv[:200].decode().encode("utf-16"), "not a text CSV"),
    }
    for name, (data, message) in cases.items():
        src = tmp_path / name
        src.write_bytes(data)
        with pytest.raises(EpochBuilderError, match=message) as err:
            run_import(tmp_path, src)
        assert str(err.value).startswith(f"{src}: ") and "\n" not in str(err.value), name
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + csv)  # spreadsheet exports start with one; the header is still a header
    _, summary = run_import(tmp_path, bom)
    assert summary["candles"] == 60

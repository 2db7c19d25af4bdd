"""`candlesticks import`: sources -> validated bundle in ``candlesticks/``.

The bundle is committed as a whole. Every file of the new bundle is written into a
sibling directory ``candlesticks.new-<id>`` (``bundle.json`` last: its presence marks
the directory complete), fsynced, then swapped with ``candlesticks/`` in one step
(Linux ``renameat2(RENAME_EXCHANGE)``), or elsewhere by two renames through
``candlesticks.old-<id>``. ``recover_bundle`` (run by ``Workspace.candlesticks_dir``
before any use of the bundle's paths) completes or rolls back a switch cut short by
a crash and removes leftovers, so a reader, and the next command after a ``kill -9``,
sees the complete old bundle or the complete new one.

This module stays light to import (no numpy/pandas at module level): the workspace
calls ``recover_bundle`` from a property.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from epoch_builder import output
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.storage import atomic_write_json, fsync_dir
from epoch_builder.workspace import BUNDLE_FILE, CANDLESTICKS_DIR, Workspace

INTERVAL_RANGE = (2, 1440)
CANDLE_SUFFIXES = (".csv", ".csv.gz", ".zip")  # what a directory given as a source contributes
CHECKSUM_SUFFIX = ".checksum"  # Binance's <zip>.CHECKSUM beside a zip: checked, never read as candles
NEW_PREFIX = f"{CANDLESTICKS_DIR}.new-"
OLD_PREFIX = f"{CANDLESTICKS_DIR}.old-"


def validate_interval(interval_minutes: int) -> int:
    """The prediction candle interval: 2..1440 minutes, dividing a day (the CLI and the console check it here)."""
    low, high = INTERVAL_RANGE
    if not (low <= interval_minutes <= high) or 1440 % interval_minutes and interval_minutes % 60:
        raise UsageError(
            f"parameter interval={interval_minutes} is invalid: allowed {low}..{high} minutes dividing a day"
        )
    return interval_minutes


def import_candlesticks(
    ws: Workspace,
    sources: list[Path],
    *,
    interval_minutes: int = 30,
    fill_gaps: bool = False,
    export_csv: bool = False,
    log: Callable[[str], None] = output.info,
) -> dict[str, Any]:
    validate_interval(interval_minutes)
    _refuse_if_epoch_active(ws)  # early, before minutes of reading; checked again under the lock below
    from epoch_builder import candles  # heavy (numpy, pandas): only when importing

    sources = expand_sources(sources)
    verified = verify_checksums(sources)
    if verified:
        log(f"{verified} file(s) match the SHA-256 of the .CHECKSUM beside them")
    with output.progress_bars() as bars:
        bar = bars.add("reading candles", len(sources) + 1)
        started = time.perf_counter()
        df = candles.merge_sources(sources, on_read=lambda path, rows: bar.advance(info=f"{rows:,} rows from {path.name}"))
        candles.validate_prices(df, sources)
        gaps = candles.find_gaps(df["ot"].to_numpy())
        if gaps.count:
            if not fill_gaps:
                raise EpochBuilderError(
                    f"{len(df)} candles have {gaps.describe()}; rerun with --fill-gaps to fill them "
                    "(a candle at the previous close, zero volume)"
                )
            log(f"filling {gaps.describe()}")
            df = candles.fill_gaps(df)
        minute, prediction = candles.resample(df, interval_minutes)
        candles.check_series(minute, 1, "1m candles")
        candles.check_series(prediction, interval_minutes, f"{interval_minutes}m candles")

        summary = {
            "sources": [str(Path(s).resolve()) for s in sources],
            "interval_minutes": interval_minutes,
            "candles": len(minute),
            "prediction_candles": len(prediction),
            "first_ot": int(minute["ot"].iloc[0]),
            "last_ct": int(minute["ct"].iloc[-1]),
            "gaps": gaps.to_json(),
            "gaps_filled": bool(gaps.count and fill_gaps),
            "export_csv": export_csv,
            "imported": int(time.time() * 1000),
        }

        def write(directory: Path) -> None:
            # The new bundle holds no normalized_prediction_candlesticks.parquet: that file belongs to an epoch.
            candles.write_candles(directory / ws.candlesticks_file.name, minute)
            candles.write_candles(directory / ws.prediction_candlesticks_file.name, prediction)
            if export_csv:
                candles.export_csv(directory / "candlesticks.csv", minute)
                candles.export_csv(directory / "prediction_candlesticks.csv", prediction)
            atomic_write_json(directory / BUNDLE_FILE, summary, indent=2)

        bar.update(description="writing the bundle")
        ws.root.mkdir(parents=True, exist_ok=True)
        with workspace_lock(ws.root):  # a create-epoch that began meanwhile has finished, or not started
            _refuse_if_epoch_active(ws)
            commit_bundle(ws.root, write)
        bar.advance()
    log(f"bundle written in {time.perf_counter() - started:.2f}s; {gaps.describe()}")
    return summary


def _refuse_if_epoch_active(ws: Workspace) -> None:
    if ws.epoch_config_file.exists():
        raise EpochBuilderError(
            f"{ws.epoch_config_file}: an epoch is active; importing would replace its candlesticks "
            "(export it or remove config/epoch.json first)"
        )


def expand_sources(sources: list[Path]) -> list[Path]:
    """The files to read: a directory stands for the candle files below it (.csv, .csv.gz, .zip, in
    time order, hidden ones and ``.part`` downloads left out); ``.CHECKSUM`` files are dropped."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted((path for path in source.rglob("*") if _is_candle_file(path, source)), key=_time_order)
            if not found:
                raise UsageError(f"{source}: no candle files ({', '.join(CANDLE_SUFFIXES)}) in the directory")
            files.extend(found)
        elif not source.name.lower().endswith(CHECKSUM_SUFFIX):
            files.append(source)
    return files


def _is_candle_file(path: Path, top: Path) -> bool:
    return (path.name.lower().endswith(CANDLE_SUFFIXES) and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(top).parts))


def _time_order(path: Path) -> tuple:
    """Binance names end in the period (``-2024-01.zip``, ``-2024-01-31.zip``): a month before its days."""
    periods = re.findall(r"(\d{4})-(\d{2})(?:-(\d{2}))?", path.name)
    if not periods:
        return (1, 0, 0, 0, str(path))
    year, month, day = periods[-1]
    return (0, int(year), int(month), int(day or 0), str(path))


def verify_checksums(files: list[Path]) -> int:
    """Check every file that has a ``.CHECKSUM`` beside it (a mismatch names the file); how many had one."""
    from epoch_builder.download import verify_beside

    return sum(verify_beside(Path(path)) for path in files)


def bundled_sample() -> Path:
    """The 21-day BTCUSDT 1m sample shipped in the package."""
    return Path(__file__).parent / "data" / "BTCUSDT_1m_20230301_20230321.csv.gz"


# --- committing the bundle as a whole ----------------------------------------------------


# The workspace lock this process holds: resolved root -> [fd, depth]. Reentrant, so a command that holds it
# for its whole check-then-act (create-epoch, an import's final check and switch, export's moves) can
# commit the bundle inside; a thread lock keeps other threads of the process out meanwhile.
_HELD: dict[str, list[int]] = {}
_THREADS = threading.RLock()


@contextmanager
def workspace_lock(root: Path) -> Iterator[None]:
    """The one lock for every check-then-act on the candlestick bundle and ``config/epoch.json``: an exclusive
    flock on the workspace root directory, waited for. Reentrant within a process; the kernel drops it when
    the holder dies, even by SIGKILL."""
    import fcntl

    key = os.path.realpath(root)
    with _THREADS:
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
            try:
                yield
            finally:
                held[1] -= 1
            return
        fd = os.open(root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _HELD[key] = [fd, 1]
            try:
                yield
            finally:
                del _HELD[key]
        finally:
            os.close(fd)  # releases the lock


@contextmanager
def _bundle_lock(root: Path, *, wait: bool) -> Iterator[bool]:
    """The workspace lock (yields False if busy and not waiting, or held by this very process: a recovery
    must never run inside a switch, whose new directory it would take for a leftover).

    Held by an import from its new directory's creation to the end of the switch, so a recovery in
    another process never mistakes a bundle being written for a leftover."""
    if wait:
        with workspace_lock(root):
            yield True
        return
    import fcntl

    if os.path.realpath(root) in _HELD:
        yield False
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def recover_bundle(root: Path) -> None:
    """Complete or roll back a bundle switch interrupted by a crash, and remove leftover directories.

    Cheap when there is nothing to do (one listing of the root); skipped while an import holds the lock."""
    try:
        if not any(name.startswith((NEW_PREFIX, OLD_PREFIX)) for name in os.listdir(root)):
            return
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        with _bundle_lock(root, wait=False) as locked:
            if locked:
                _recover_locked(root)
    except OSError as exc:  # e.g. a read-only workspace: say so once instead of reading a half state
        raise EpochBuilderError(
            f"{root / CANDLESTICKS_DIR}: cannot finish an interrupted `candlesticks import` ({exc.strerror}); "
            "make the workspace writable and rerun, or rerun the import"
        ) from None


def _recover_locked(root: Path) -> None:
    names = sorted(os.listdir(root))  # ids sort by creation time
    new = [root / n for n in names if n.startswith(NEW_PREFIX)]
    old = [root / n for n in names if n.startswith(OLD_PREFIX)]
    current = root / CANDLESTICKS_DIR
    if not os.path.lexists(current):  # died between the two renames (or before the first import's one)
        complete = [d for d in new if (d / BUNDLE_FILE).is_file()]
        if complete:
            os.rename(complete[-1], current)  # the new bundle was complete: finish the switch
        elif old:
            os.rename(old[-1], current)  # roll back to the old bundle
        fsync_dir(root)
    for leftover in new + old:
        _remove(leftover)


def _remove(path: Path) -> None:
    if path.is_symlink():  # a candlesticks/ that was a link, swapped out: drop the link, not its target
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``).

    False where the platform, libc or filesystem lacks it: the caller then uses two renames."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a))


def commit_bundle(root: Path, write: Callable[[Path], None]) -> None:
    """``write(directory)`` fills a new bundle directory; it then replaces ``candlesticks/`` as a whole."""
    root.mkdir(parents=True, exist_ok=True)
    current = root / CANDLESTICKS_DIR
    with _bundle_lock(root, wait=True):
        _recover_locked(root)  # an earlier interrupted switch first: it decides what "old" is
        new = root / f"{NEW_PREFIX}{time.time_ns():020d}-{os.getpid()}"
        new.mkdir()
        old: Path | None = None
        try:
            write(new)
            fsync_dir(new)
            if not os.path.lexists(current):  # the first import
                os.rename(new, current)
            elif _exchange(new, current):
                _remove(new)  # now holds the old bundle
            else:
                old = root / (OLD_PREFIX + new.name[len(NEW_PREFIX):])
                os.rename(current, old)
                os.rename(new, current)  # killed between the renames: the next recovery finishes the switch
                _remove(old)
            fsync_dir(root)
        except BaseException:  # a failed import keeps the old bundle
            _remove(new)  # not switched in (after an exchange: the old bundle)
            if old is not None and old.exists() and not os.path.lexists(current):
                os.rename(old, current)  # the second rename failed
            raise

"""Atomic artifact writes and readers whose errors name the file.

Every artifact goes through ``atomic_write_*``: the bytes land in a temporary
file in the same directory, are fsynced, then renamed over the target, so a
crash leaves either the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from epoch_builder.errors import EpochBuilderError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(target: Path) -> int:
    """Delete the temporaries of ``target`` whose writer process is gone (killed mid-write); returns
    how many. A temporary of a live writer, or one named otherwise, is left alone."""
    removed = 0
    prefix = f".{target.name}."
    try:
        names = os.listdir(target.parent)
    except OSError:
        return 0
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix):].split(".", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _alive(int(pid_text)):
            try:
                os.unlink(target.parent / name)
                removed += 1
            except OSError:
                pass
    return removed


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``.

    For writers that need a path (Parquet, Keras, zip) rather than bytes.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    # The writer's pid in the name: a temporary left by a killed writer is known as such and removed
    # by the next write of the same file.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; artifacts get the usual mode
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise EpochBuilderError(disk_full_message(target)) from None
        raise
    return target


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """An out-of-space error, from Python's own I/O (errno) or a library's (pyarrow's carries only the text)."""
    return isinstance(exc, OSError) and (exc.errno in DISK_FULL_ERRNOS or "No space left on device" in str(exc)
                                         or "Disk quota exceeded" in str(exc))


def disk_full_message(path: str | os.PathLike) -> str:
    """One line for a write that ran out of space: the file, and what is free where it goes."""
    import shutil

    where = Path(path).parent
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = f"{shutil.disk_usage(where).free / 1e6:,.1f} MB free there"
    except OSError:
        free = "free space unknown"
    return f"{path}: no space left on the device while writing it ({free}); free some space and rerun"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> Path:
    text = json.dumps(obj, indent=indent, allow_nan=False, separators=None if indent else (",", ":"))
    return atomic_write_text(path, text)


def not_utf8_message(path: str | os.PathLike, exc: UnicodeDecodeError) -> str:
    """One line for a JSON file that is not UTF-8 text (damaged, or not what its name says)."""
    byte = exc.object[exc.start:exc.start + 1].hex() if isinstance(exc.object, bytes) else "?"
    return f"{path}: not UTF-8 text (byte 0x{byte} at offset {exc.start}), so not valid JSON; the file is damaged"


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON artifact; a missing or malformed file is an error naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EpochBuilderError(f"{p}: file not found") from None
    except OSError as exc:
        raise EpochBuilderError(f"{p}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise EpochBuilderError(not_utf8_message(p, exc)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EpochBuilderError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None

"""The candlestick bundle switched as a whole, and the workspace's one lock.

Every file of a new bundle is written into a sibling directory ``candlesticks.new-<id>`` (``bundle.json``
last: its presence marks the directory complete), fsynced, then swapped with ``candlesticks/`` in one step
(Linux ``renameat2(RENAME_EXCHANGE)``), or elsewhere by two renames through ``candlesticks.old-<id>``.
``recover_bundle`` (run by ``Workspace.open``, before any command uses the bundle's paths) completes or
rolls back a switch cut short by a crash and removes leftovers, so a reader, and the next command after a
``kill -9``, sees the complete old bundle or the complete new one. ``workspace_lock`` is the one lock for
every check-then-act on the bundle and ``config/epoch.json`` (import, create-epoch, export's moves).

Its own module (with the bundle's names), below the workspace and the importer: light to import, and
imported by both without either importing the other back.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from epoch_builder.errors import EpochBuilderError
from epoch_builder.storage import fsync_dir

CANDLESTICKS_DIR = "candlesticks"
BUNDLE_FILE = "bundle.json"  # the import's report; written last into a new bundle, so it marks one complete
NEW_PREFIX = f"{CANDLESTICKS_DIR}.new-"
OLD_PREFIX = f"{CANDLESTICKS_DIR}.old-"


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

"""Incremental file sync between this machine's workspace and a host's (SFTP for SSH hosts).

Named groups follow the original's push/pull actions (``{epoch}`` is the
active epoch id from the local ``config/epoch.json``):

    push  root-files                   files directly in the workspace root
          config                       config/
          candlesticks                 candlesticks/
          regression-training-configs  {epoch}/regression_training_configs/
          prediction-models            {epoch}/prediction_models/ (assets + configs)
          workspace                    everything (the original's push_epoch_builder)
    pull  trained-regressions          {epoch}/regressions/ + {epoch}/regression_batched_certificates/
                                       + {epoch}/tensorboard/ (training histories)
          prediction-models            {epoch}/prediction_models/profitable_configs/

Trust boundary: every byte a host sends is untrusted. A host's manifest
(what it says it has) is filtered before anything is hashed or moved: an
entry is kept only if its path is a clean workspace-relative path *under one
of the paths that were asked for* (a regression pull: that epoch's
``regressions/``, ``regression_batched_certificates/`` and ``tensorboard/``; a
dispatch pull: that batch's model and TensorBoard directories and its certificate) and its size and mtime
are integers. Everything else -- ``config/cluster.json``, ``.board/``, batch
files, ``..``, absolute paths, control characters, malformed entries -- is
refused and reported (``SyncReport.refused``), never written. A hash answer
that does not name a refused file's sha256 as 64 hex digits refuses that
file too. So a compromised worker can hand back bad results for its own
batch, but never rewrite the controller's configuration or another group.

How one sync runs:
1. Both sides list the files (size, mtime in ns) in one helper call each.
   Paths that leave the workspace (``..``, absolute, symlinks pointing out)
   are refused with UnsafePath before anything moves.
2. Same size and mtime: unchanged.  Same size, other mtime: sha256 on both
   sides decides; equal content only gets its mtime fixed.  Otherwise the
   file is sent.
3. Changed files go into a fresh staging directory under the destination
   root, made by the helper ``receive`` there (on the host for a push, a
   local process for a pull).  Files under 1 MiB travel many to a tar stream
   over one channel (a push: from this process into the host's ``receive``;
   a pull: from the host's ``send``, relayed to the local ``receive``), each
   member named by its index (``17.part``), never by its path, with the
   sha256 of each after the archive; larger files travel alone over SFTP, 8
   at a time, meanwhile.  Then ``receive`` commits: it checks size + sha256
   of each, sets its mtime and mode, flushes the staged files to disk (one
   syncfs for many files), renames them into place and flushes the
   renames.  A destination path therefore only ever holds a complete,
   verified file, and a committed sync survives a crash; an interrupted
   sync leaves the old versions.
4. A staging directory belongs to the ``receive`` process writing into it,
   which holds the flock of its ``.lock`` while it lives.  Step 1 of every sync removes, on
   both ends, the staging directories whose lock is free (a killed sync's);
   a live sync's are never touched, so syncs to one host can run side by side.

A host's tar stream is untrusted like its manifest: only regular-file
members with exactly the names and sizes asked for are written, and only
into the staging directory; another name, ``..``, an absolute name, a link,
a directory, a wrong size, a repeat or a file without its sha256 refuses that
file (``SyncReport.refused``; a member that is no file of the request is
named there as the host gave it), and a block that is no tar header ends
the stream.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Iterable, Sequence

from epoch_builder.workspace import CANDLESTICKS_DIR, CONFIG_DIR, DOWNLOADS_DIR, EpochPaths
from remote import host_program, host_program_client
from remote.config import ServerConfig
from remote.errors import RemoteError, UnsafePath
from remote.hosts import LocalHost

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host

# The layout comes from epoch_builder.workspace: an epoch laid out under the placeholder id gives each
# group's workspace-relative paths, the placeholder replaced by the active epoch's id when a group is used.
EPOCH_PLACEHOLDER = "{epoch}"
_EPOCH = EpochPaths(Path(EPOCH_PLACEHOLDER))

PUSH_GROUPS: dict[str, tuple[str, ...]] = {
    "root-files": ("<root files>",),
    "config": (CONFIG_DIR,),
    "candlesticks": (CANDLESTICKS_DIR,),
    "regression-training-configs": (_EPOCH.relative(_EPOCH.regression_training_configs_dir),),
    "prediction-models": (_EPOCH.relative(_EPOCH.prediction_models_dir),),
    "workspace": ("<everything>",),
}
PULL_GROUPS: dict[str, tuple[str, ...]] = {
    "trained-regressions": (_EPOCH.relative(_EPOCH.regressions_dir),
                            _EPOCH.relative(_EPOCH.regression_batched_certificates_dir),
                            _EPOCH.relative(_EPOCH.tensorboard_dir)),  # training histories, one run per regression
    "prediction-models": (_EPOCH.relative(_EPOCH.profitable_configs_dir),),
}
PARALLEL_FILES = 8  # large files in flight at once per host (SFTP)
SMALL_FILE_BYTES = 1 << 20  # smaller files travel many to a tar stream, larger ones alone over SFTP
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class SyncProgress:
    """Progress of one sync, reported after every block."""

    server: str
    direction: str  # push | pull
    path: str  # file being transferred
    bytes_done: int  # whole sync
    bytes_total: int
    files_done: int
    files_total: int


ProgressCallback = Callable[[SyncProgress], None]


@dataclass
class SyncReport:
    server: str
    direction: str
    files_checked: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    files_touched: int = 0  # same content, only the mtime was fixed
    seconds: float = 0.0
    sent: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # paths a host offered outside what was asked (pull)
    unsendable: list[str] = field(default_factory=list)  # local names with control characters, left out (push)

    def to_dict(self) -> dict[str, object]:
        return {
            "server": self.server, "direction": self.direction, "files_checked": self.files_checked,
            "files_sent": self.files_sent, "bytes_sent": self.bytes_sent, "files_touched": self.files_touched,
            "seconds": round(self.seconds, 3), "refused": self.refused, "unsendable": self.unsendable,
        }


def safe_relpath(rel: str) -> str:
    """A workspace-relative POSIX path, normalised; UnsafePath for anything that could leave it."""
    try:
        return host_program.safe_relpath(rel)
    except host_program.HostProgramError as exc:
        raise UnsafePath(str(exc)) from None


def active_epoch_id(local_root: Path) -> str:
    """The local workspace's active epoch (config/epoch.json, checked: its id names paths on every server)."""
    from epoch_builder.workspace import Workspace

    return Workspace(Path(local_root)).active_epoch_id()


def _top_level(local_root: Path, files_only: bool) -> list[str]:
    # Raw downloads stay on the controller: servers read the imported candlesticks/ bundle.
    skip = {".jobs", host_program.STAGING_DIR, DOWNLOADS_DIR}
    names = []
    for entry in sorted(Path(local_root).iterdir()):
        if entry.name in skip:
            continue
        if files_only and not (entry.is_file() and not entry.is_symlink()):
            continue
        names.append(entry.name)
    return names


def resolve_paths(what: str | Sequence[str], direction: str, local_root: Path) -> list[str]:
    """Workspace-relative paths of a group name, or the given paths validated."""
    groups = PUSH_GROUPS if direction == "push" else PULL_GROUPS
    if isinstance(what, str):
        if what not in groups:
            raise RemoteError(f"unknown {direction} group {what!r}; allowed: {', '.join(groups)}")
        patterns = groups[what]
    else:
        patterns = tuple(what)
    paths: list[str] = []
    for pattern in patterns:
        if pattern == "<root files>":
            paths.extend(_top_level(local_root, files_only=True))
        elif pattern == "<everything>":
            paths.extend(_top_level(local_root, files_only=False))
        elif EPOCH_PLACEHOLDER in pattern:
            paths.append(safe_relpath(pattern.replace(EPOCH_PLACEHOLDER, active_epoch_id(local_root))))
        else:
            paths.append(safe_relpath(pattern))
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _local_manifest(root: Path, paths: list[str], unsendable: list[str]) -> dict[str, list[int]]:
    """The local files under ``paths``; names that cannot travel are appended to ``unsendable``."""
    host_program.remove_stale_staging(str(root))  # a killed pull's copies (as the host's manifest does for a push)
    try:
        listing = host_program.manifest(str(root), paths)
    except host_program.HostProgramError as exc:
        raise UnsafePath(str(exc)) from None
    if listing["refused"]:
        raise UnsafePath(f"{root}: refused paths that leave the workspace (symlinks out): {', '.join(listing['refused'][:5])}")
    unsendable.extend(listing["unsendable"])
    return listing["files"]


async def _remote_manifest(host: "Host", root: str, paths: list[str]) -> dict[str, list[int]]:
    listing = await host_program_client.call(host, "manifest", {"root": root, "paths": paths, "remove_stale_staging": True})
    if not isinstance(listing, dict) or not isinstance(listing.get("refused", []), list):
        raise RemoteError(f"server {host.name}: its file listing is not the helper's answer; nothing was synced")
    if listing.get("refused"):
        raise UnsafePath(f"server {host.name}: {root}: refused paths that leave the workspace (symlinks out): "
                         f"{', '.join(repr(p) for p in listing['refused'][:5])}")
    return listing.get("files")  # checked by _trusted_listing


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _trusted_listing(host: "Host", listing: object, paths: Sequence[str], refused: list[str]) -> dict[str, list[int]]:
    """The entries of a host's manifest that lie under the requested ``paths`` with integer size and
    mtime; the others are appended to ``refused`` (as text a terminal can show)."""
    if not isinstance(listing, dict):
        raise RemoteError(f"server {host.name}: its file listing is not a JSON object; nothing was synced")
    kept: dict[str, list[int]] = {}
    for rel, meta in listing.items():
        try:
            clean = safe_relpath(rel)
        except UnsafePath:
            clean = None
        well_formed = (isinstance(meta, (list, tuple)) and len(meta) == 2
                       and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in meta))
        if clean != rel or not host_program.under_requested(clean, list(paths)) or not well_formed:
            refused.append(rel if isinstance(rel, str) and clean == rel else repr(rel))
            continue
        kept[rel] = [int(meta[0]), int(meta[1])]
    return kept


async def _changed(
    host: "Host", source: dict[str, list[int]], dest: dict[str, list[int]], source_hash, dest_hash
) -> tuple[list[str], dict[str, int]]:
    """Files to send, and files whose content matches but whose mtime must be fixed."""
    send: list[str] = []
    suspects: list[str] = []
    for rel, (size, mtime) in source.items():
        theirs = dest.get(rel)
        if theirs is None or theirs[0] != size:
            send.append(rel)
        elif theirs[1] != mtime:
            suspects.append(rel)
    touch: dict[str, int] = {}
    if suspects:
        ours, theirs = await asyncio.gather(source_hash(suspects), dest_hash(suspects))
        for rel in suspects:
            if ours[rel] == theirs.get(rel):
                touch[rel] = source[rel][1]
            else:
                send.append(rel)
    return sorted(send), touch


class _Meter:
    """Sums a sync's progress as files move and reports it (totals kept as running sums: a callback for
    each of 20,000 files must not add up 20,000 entries each time)."""

    def __init__(self, host: "Host", direction: str, sizes: dict[str, int], callback: ProgressCallback | None) -> None:
        self.host, self.direction, self.callback = host, direction, callback
        self.sizes = sizes
        self.total = sum(sizes.values())
        self.file_done: dict[str, int] = {}
        self.bytes_done = 0
        self.files_done = 0

    def update(self, rel: str, done: int) -> None:
        self._count(rel, done)
        self._report(rel)

    def finished(self, *rels: str) -> None:
        """Files sent whole (one report for a batch of them)."""
        for rel in rels:
            self._count(rel, self.sizes[rel])
            self.files_done += 1
        if rels:
            self._report(rels[-1])

    def _count(self, rel: str, done: int) -> None:
        self.bytes_done += done - self.file_done.get(rel, 0)
        self.file_done[rel] = done

    def _report(self, rel: str) -> None:
        if self.callback is not None:
            self.callback(SyncProgress(self.host.name, self.direction, rel, self.bytes_done, self.total,
                                       self.files_done, len(self.sizes)))


async def push(
    host: "Host", what: str | Sequence[str], *, local_root: str | os.PathLike, remote_root: str | None = None,
    progress: ProgressCallback | None = None,
) -> SyncReport:
    """Send changed files of a push group (or explicit workspace-relative paths) to ``host``."""
    return await _sync(host, "push", what, local_root, remote_root, progress)


async def pull(
    host: "Host", what: str | Sequence[str], *, local_root: str | os.PathLike, remote_root: str | None = None,
    progress: ProgressCallback | None = None,
) -> SyncReport:
    """Fetch changed files of a pull group (or explicit paths) from ``host`` into the local workspace."""
    return await _sync(host, "pull", what, local_root, remote_root, progress)


class _LocalSide:
    """This machine's workspace as one end of a sync (host program functions called in a thread)."""

    def __init__(self, host: "Host", root: Path) -> None:
        self.host, self.root = host, root
        self.unsendable: list[str] = []  # what the last manifest left out (names with control characters)

    async def manifest(self, paths: list[str]) -> dict[str, list[int]]:
        return await asyncio.to_thread(_local_manifest, self.root, paths, self.unsendable)

    async def hash(self, rels: list[str]) -> dict[str, str | None]:
        root = self.root
        return await asyncio.to_thread(lambda: {r: _sha256(root / r) if (root / r).is_file() else None for r in rels})

    async def touch(self, items: dict[str, int]) -> None:
        await asyncio.to_thread(host_program.cmd_touch, {"root": str(self.root), "items": items})


class _RemoteSide:
    """A host's workspace as one end of a sync (host program calls over the host's link)."""

    def __init__(self, host: "Host", root: str) -> None:
        self.host, self.root = host, root

    async def manifest(self, paths: list[str]) -> dict[str, list[int]]:
        return await _remote_manifest(self.host, self.root, paths)

    async def hash(self, rels: list[str]) -> dict[str, str]:
        return await host_program_client.call(self.host, "hash", {"root": self.root, "paths": rels}, timeout=600)

    async def touch(self, items: dict[str, int]) -> None:
        await host_program_client.call(self.host, "touch", {"root": self.root, "items": items})


def _split_by_size(send: list[str], source: dict[str, list[int]]) -> tuple[list[list], list[tuple[int, str]]]:
    """``send`` numbered (the staging name of file i is ``i.part``) and split into the files that travel in
    tar streams, as ``[index, rel]``, and the large ones that travel alone over SFTP."""
    small: list[list] = []
    large: list[tuple[int, str]] = []
    for index, rel in enumerate(send):
        if source[rel][0] < SMALL_FILE_BYTES:
            small.append([index, rel])
        else:
            large.append((index, rel))
    return small, large


async def _tar_chunks(root: Path, members: list[list]) -> AsyncIterator[tuple[bytes, dict[str, list]]]:
    """:func:`remote.host_program.pack_files` of local files, read in a thread one chunk ahead of the sending."""
    chunks = host_program.pack_files(str(root), members)
    ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    try:
        while (chunk := await ahead) is not None:
            ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            yield chunk
    finally:
        await asyncio.gather(ahead, return_exceptions=True)  # the thread cannot be stopped: let it finish


async def _push_files(
    host: "Host", local_root: Path, remote_root: str, source: dict[str, list[int]], send: list[str], meter: _Meter,
) -> dict:
    """Send ``send`` into the staging directory of the host's helper ``receive``, which commits them there.

    The commit items (path, size, mtime, mode) go in its request; small files follow in one tar stream
    on its stdin (read, hashed and packed here a chunk at a time), large ones over SFTP into its staging
    directory, 8 at a time, meanwhile; last the sha256 of each file.
    """
    small, large = _split_by_size(send, source)
    by_name = {host_program.part_name(index): rel for index, rel in small}
    modes = await asyncio.to_thread(lambda: {rel: (local_root / rel).stat().st_mode & 0o777 for rel in send})
    items = [{"tmp": host_program.part_name(index), "path": rel, "size": source[rel][0], "mtime_ns": source[rel][1],
              "mode": modes[rel]} for index, rel in [*small, *large]]
    digests: dict[str, str] = {}

    async def upload_large(staging: str) -> None:
        async def upload_one(index: int, rel: str) -> None:
            async with limit:
                path = local_root / rel
                digest_task = asyncio.ensure_future(asyncio.to_thread(_sha256, path))
                await host.upload(path, f"{staging}/{host_program.part_name(index)}",
                                  lambda done, _total: meter.update(rel, done))
                digests[host_program.part_name(index)] = await digest_task
                meter.finished(rel)

        limit = asyncio.Semaphore(PARALLEL_FILES)
        await _gather_all([upload_one(index, rel) for index, rel in large])

    async def stream(copies: asyncio.Future) -> AsyncIterator[bytes]:
        async for data, packed in _tar_chunks(local_root, small):
            yield data
            digests.update((name, sha256) for name, (_size, sha256, _mode) in packed.items())
            meter.finished(*(by_name[name] for name in packed))
        yield host_program.TAR_END
        await copies
        yield json.dumps(digests).encode()

    return await _receive(host, remote_root, items, stream, upload_large, untrusted=False)


async def _pull_files(
    host: "Host", local_root: Path, remote_root: str, source: dict[str, list[int]], send: list[str],
    progress: ProgressCallback | None, refused: list[str],
) -> dict:
    """Fetch ``send`` into the staging directory of a ``receive`` helper on this machine, which commits them here.

    Small files come in one tar stream from the host's helper ``send``, with the sha256 the host took of
    each file's bytes after it; this process relays it to the local helper (two processes: unpacking
    here does not wait on decrypting). Large files come over SFTP meanwhile, checked against the sha256
    the host's ``hash`` gives first. The stream is untrusted: the local helper writes only the members
    asked for, with the expected sizes; every file that does not come so is refused.
    """
    small, large = _split_by_size(send, source)
    expected = await _RemoteSide(host, remote_root).hash([rel for _index, rel in large]) if large else {}
    expected = expected if isinstance(expected, dict) else {}
    refused.extend(rel for _index, rel in large if not _is_sha256(expected.get(rel)))
    large = [(index, rel) for index, rel in large if rel not in refused]
    meter = _Meter(host, "pull", {rel: source[rel][0] for rel in send if rel not in refused}, progress)
    items = ([{"tmp": host_program.part_name(index), "path": rel, "size": source[rel][0], "mtime_ns": source[rel][1]}
              for index, rel in small]
             + [{"tmp": host_program.part_name(index), "path": rel, "size": source[rel][0], "mtime_ns": source[rel][1],
                 "sha256": expected[rel]} for index, rel in large])

    async def download_large(staging: str) -> None:
        async def download_one(index: int, rel: str) -> None:
            async with limit:
                await host.download(f"{remote_root}/{rel}", Path(staging) / host_program.part_name(index),
                                    lambda done, _t: meter.update(rel, done))
                meter.finished(rel)

        limit = asyncio.Semaphore(PARALLEL_FILES)
        await _gather_all([download_one(index, rel) for index, rel in large])

    async def stream(copies: asyncio.Future) -> AsyncIterator[bytes]:
        if small:
            # Where each member ends in an honest stream: progress as the bytes pass by.
            ends = list(itertools.accumulate(host_program.TAR_BLOCK + size + -size % host_program.TAR_BLOCK
                                             for size in (source[rel][0] for _index, rel in small)))
            relayed = done = 0
            request = {"root": remote_root, "files": small}
            async with contextlib.aclosing(host_program_client.stream(host, "send", request, idle_timeout=600)) as chunks:
                async for chunk in chunks:
                    yield chunk
                    relayed += len(chunk)
                    passed = bisect.bisect_right(ends, relayed, lo=done)
                    meter.finished(*(rel for _index, rel in small[done:passed]))
                    done = passed
        else:
            yield host_program.TAR_END + b"{}"
        await copies

    here = LocalHost(ServerConfig(name="local", root=str(local_root), python=sys.executable, local=True))
    result = await _receive(here, str(local_root), items, stream, download_large, untrusted=True)
    asked_names, streamed = {host_program.part_name(index) for index, _rel in small}, {rel for _index, rel in small}
    offered = result.get("refused")
    refused.extend(repr(name) for name, _why in (offered if isinstance(offered, list) else []) if name not in asked_names)
    failed: list[dict] = []
    for failure in result["failed"]:
        if failure.get("path") in streamed and failure.get("reason") in host_program.STAGING_FAILURES:
            refused.append(failure["path"])  # not sent as asked, whole and with the sha256 of what came
        else:
            failed.append(failure)
    return {"committed": result["committed"], "failed": failed}


async def _receive(
    helper_host: "Host", root: str, items: list[dict[str, object]],
    stream: Callable[[asyncio.Future], AsyncIterator[bytes]], copy_large: Callable[[str], Awaitable[None]],
    *, untrusted: bool,
) -> dict:
    """Run the helper ``receive`` on ``helper_host`` (the host for a push, this machine for a pull) into
    ``root``: its stdin is ``stream(copies)`` while ``copy_large(staging)`` copies the large files into
    the staging directory it names (``copies`` is that task). Returns the commit's answer."""
    staging_named: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    copies = asyncio.ensure_future(_after(staging_named, copy_large))
    local_failure: list[BaseException] = []

    async def helper_stdin() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream(copies):
                yield chunk
        except Exception as exc:  # noqa: BLE001 - raised below: the helper only sees its stream cut short
            local_failure.append(exc)

    result: object = None
    request = {"root": root, "items": items, "untrusted": untrusted}
    try:
        async for answer in host_program_client.session(helper_host, "receive", request, helper_stdin()):
            if not staging_named.done():
                if not isinstance(answer, dict) or not isinstance(answer.get("staging"), str):
                    raise RemoteError(f"server {helper_host.name}: its helper named no staging directory; nothing was sent")
                staging_named.set_result(answer["staging"])
            else:
                result = answer
    except RemoteError:
        if local_failure:  # the cause, not the helper's complaint about the stream it did not get whole
            raise local_failure[0] from None
        raise
    finally:
        copies.cancel()
        await asyncio.gather(copies, return_exceptions=True)
    if local_failure:
        raise local_failure[0]
    if (not isinstance(result, dict) or not isinstance(result.get("committed"), list)
            or not isinstance(result.get("failed"), list)):
        raise RemoteError(f"server {helper_host.name}: its helper did not answer the commit")
    return result


async def _after(value: asyncio.Future, then: Callable[[str], Awaitable[None]]) -> None:
    await then(await value)


async def plan_push(
    host: "Host", what: str | Sequence[str], *, local_root: str | os.PathLike, remote_root: str | None = None,
) -> list[str]:
    """The files a push of ``what`` would send (missing on the host or different there), sending nothing:
    the preflight of a job started by hand, which needs the same inputs a dispatch pushes."""
    local = _LocalSide(host, Path(local_root).resolve())
    paths = resolve_paths(what, "push", local.root)
    if not paths:
        return []
    _source, send, _touch = await _compare(host, "push", local, _RemoteSide(host, remote_root or host.root), paths,
                                           SyncReport(host.name, "push"))
    return send


async def held_files(host: "Host", paths: Sequence[str], *, remote_root: str | None = None) -> list[str]:
    """Which of the workspace-relative files under ``paths`` the host holds (its listing checked like a pull's)."""
    clean = [safe_relpath(p) for p in paths]
    if not clean:
        return []
    listing = await _RemoteSide(host, remote_root or host.root).manifest(clean)
    return sorted(_trusted_listing(host, listing, clean, []))


async def _compare(
    host: "Host", direction: str, local: _LocalSide, remote: _RemoteSide, paths: list[str], report: SyncReport,
) -> tuple[dict[str, list[int]], list[str], dict[str, int]]:
    """Steps 1-2 of the module docstring: the source's files, those to send and those to touch."""
    source_side, dest_side = (local, remote) if direction == "push" else (remote, local)
    source = await source_side.manifest(paths)
    dest = await dest_side.manifest(paths)
    if direction == "pull":  # the source is the host: only what was asked for, well-formed
        source = _trusted_listing(host, source, paths, report.refused)
    else:  # the destination is the host: a lie there can only make us send our own files again
        dest = _trusted_listing(host, dest, paths, [])
        report.unsendable = sorted(local.unsendable)
    report.files_checked = len(source)
    send, touch = await _changed(host, source, dest, source_side.hash, dest_side.hash)
    return source, send, touch


async def _sync(
    host: "Host", direction: str, what: str | Sequence[str], local_root: str | os.PathLike,
    remote_root: str | None, progress: ProgressCallback | None,
) -> SyncReport:
    """One push or pull: the steps of the module docstring, from the source side to the destination side."""
    started = time.perf_counter()
    local = _LocalSide(host, Path(local_root).resolve())
    remote = _RemoteSide(host, remote_root or host.root)
    paths = resolve_paths(what, direction, local.root)
    report = SyncReport(host.name, direction)
    if not paths and direction == "push":  # an empty push group (e.g. no root files) contacts nobody
        return report
    source, send, touch = await _compare(host, direction, local, remote, paths, report)
    if touch:
        await (remote if direction == "push" else local).touch(touch)
        report.files_touched = len(touch)
    if send:
        if direction == "push":
            meter = _Meter(host, direction, {rel: source[rel][0] for rel in send}, progress)
            result = await _push_files(host, local.root, remote.root, source, send, meter)
        else:
            result = await _pull_files(host, local.root, remote.root, source, send, progress, report.refused)
        _raise_failed(host, direction, result)
        report.files_sent = len(result["committed"])
        report.bytes_sent = sum(source[rel][0] for rel in result["committed"])
        report.sent = sorted(result["committed"])
    report.seconds = time.perf_counter() - started
    return report


async def _gather_all(coros: Iterable) -> None:
    """Run all; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _raise_failed(host: "Host", direction: str, result: dict) -> None:
    if result["failed"]:
        first = result["failed"][0]
        raise RemoteError(
            f"server {host.name}: {direction} verification failed for {len(result['failed'])} file(s), "
            f"e.g. {first['path']}: {first['reason']} (the previous version was kept; run it again)"
        )


async def push_many(
    hosts: Sequence["Host"], what: str | Sequence[str], *, local_root: str | os.PathLike,
    progress: ProgressCallback | None = None,
) -> dict[str, SyncReport | BaseException]:
    """:func:`push` to several hosts in parallel; each host's report or its exception."""
    return await _each_host(hosts, lambda h: push(h, what, local_root=local_root, progress=progress))


async def pull_many(
    hosts: Sequence["Host"], what: str | Sequence[str], *, local_root: str | os.PathLike,
    progress: ProgressCallback | None = None,
) -> dict[str, SyncReport | BaseException]:
    """:func:`pull` from several hosts in parallel (their files are disjoint: each trains its own batches)."""
    return await _each_host(hosts, lambda h: pull(h, what, local_root=local_root, progress=progress))


async def _each_host(
    hosts: Sequence["Host"], sync_one: Callable[["Host"], Awaitable[SyncReport]],
) -> dict[str, SyncReport | BaseException]:
    results = await asyncio.gather(*(sync_one(h) for h in hosts), return_exceptions=True)
    return {h.name: r for h, r in zip(hosts, results)}

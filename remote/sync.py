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
          prediction-models            {epoch}/prediction_models/profitable_configs/

Trust boundary: every byte a host sends is untrusted. A host's manifest
(what it says it has) is filtered before anything is hashed or moved: an
entry is kept only if its path is a clean workspace-relative path *under one
of the paths that were asked for* (a regression pull: that epoch's
``regressions/`` and ``regression_batched_certificates/``; a dispatch pull:
that batch's model directories and its certificate) and its size and mtime
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
   root (several files at once, large blocks, many SFTP requests in flight),
   then one commit call checks size + sha256 of each, sets its mtime, fsyncs
   and renames it into place.  A destination path therefore only ever holds
   a complete, verified file; an interrupted sync leaves the old version and
   a stale staging directory that a later sync removes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, Sequence

from remote import agent, agent_client
from remote.errors import RemoteError, UnsafePath

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host

PUSH_GROUPS: dict[str, tuple[str, ...]] = {
    "root-files": ("<root files>",),
    "config": ("config",),
    "candlesticks": ("candlesticks",),
    "regression-training-configs": ("{epoch}/regression_training_configs",),
    "prediction-models": ("{epoch}/prediction_models",),
    "workspace": ("<everything>",),
}
PULL_GROUPS: dict[str, tuple[str, ...]] = {
    "trained-regressions": ("{epoch}/regressions", "{epoch}/regression_batched_certificates"),
    "prediction-models": ("{epoch}/prediction_models/profitable_configs",),
}
PARALLEL_FILES = 8  # files in flight at once per host
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

    def to_dict(self) -> dict[str, object]:
        return {
            "server": self.server, "direction": self.direction, "files_checked": self.files_checked,
            "files_sent": self.files_sent, "bytes_sent": self.bytes_sent, "files_touched": self.files_touched,
            "seconds": round(self.seconds, 3), "refused": self.refused,
        }


def safe_relpath(rel: str) -> str:
    """A workspace-relative POSIX path, normalised; UnsafePath for anything that could leave it."""
    try:
        return agent.safe_relpath(rel)
    except agent.AgentError as exc:
        raise UnsafePath(str(exc)) from None


def active_epoch_id(local_root: Path) -> str:
    path = Path(local_root) / "config" / "epoch.json"
    try:
        epoch_id = json.loads(path.read_text(encoding="utf-8"))["id"]
    except FileNotFoundError:
        raise RemoteError(f"{path}: no active epoch (run `epoch-builder create-epoch` first)") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise RemoteError(f"{path}: invalid epoch config (key 'id' missing)") from None
    return safe_relpath(str(epoch_id))


def _top_level(local_root: Path, files_only: bool) -> list[str]:
    skip = {".jobs", agent.STAGING_DIR}
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
        elif "{epoch}" in pattern:
            paths.append(safe_relpath(pattern.replace("{epoch}", active_epoch_id(local_root))))
        else:
            paths.append(safe_relpath(pattern))
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _local_manifest(root: Path, paths: list[str]) -> dict[str, list[int]]:
    try:
        listing = agent.manifest(str(root), paths)
    except agent.AgentError as exc:
        raise UnsafePath(str(exc)) from None
    if listing["refused"]:
        raise UnsafePath(f"{root}: refused paths that leave the workspace (symlinks out): {', '.join(listing['refused'][:5])}")
    return listing["files"]


async def _remote_manifest(host: "Host", root: str, paths: list[str]) -> dict[str, list[int]]:
    listing = await agent_client.call(host, "manifest", {"root": root, "paths": paths})
    if not isinstance(listing, dict) or not isinstance(listing.get("refused", []), list):
        raise RemoteError(f"server {host.name}: its file listing is not the helper's answer; nothing was synced")
    if listing.get("refused"):
        raise UnsafePath(f"server {host.name}: {root}: refused paths that leave the workspace (symlinks out): "
                         f"{', '.join(repr(p) for p in listing['refused'][:5])}")
    return listing.get("files")  # checked by _trusted_listing


def _inside_requested(rel: str, paths: Sequence[str]) -> bool:
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in paths)


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
        if clean != rel or not _inside_requested(clean, paths) or not well_formed:
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
    def __init__(self, host: "Host", direction: str, sizes: dict[str, int], callback: ProgressCallback | None) -> None:
        self.host, self.direction, self.callback = host, direction, callback
        self.sizes = sizes
        self.total = sum(sizes.values())
        self.file_done: dict[str, int] = {}
        self.files_done = 0

    def update(self, rel: str, done: int) -> None:
        self.file_done[rel] = done
        self._report(rel)

    def finished(self, rel: str) -> None:
        self.file_done[rel] = self.sizes[rel]
        self.files_done += 1
        self._report(rel)

    def _report(self, rel: str) -> None:
        if self.callback is not None:
            self.callback(SyncProgress(self.host.name, self.direction, rel, sum(self.file_done.values()), self.total,
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


# Sends one changed file into the destination's staging directory and returns its commit item:
# (index, rel, staging dir, meter) -> {"tmp", "path", "size", "sha256", "mtime_ns"[, "mode"]}.
_SendOne = Callable[[int, str, str, _Meter], Awaitable[dict[str, object]]]


class _LocalSide:
    """This machine's workspace as one end of a sync (agent functions called in a thread)."""

    def __init__(self, host: "Host", root: Path) -> None:
        self.host, self.root = host, root

    async def manifest(self, paths: list[str]) -> dict[str, list[int]]:
        return await asyncio.to_thread(_local_manifest, self.root, paths)

    async def hash(self, rels: list[str]) -> dict[str, str | None]:
        root = self.root
        return await asyncio.to_thread(lambda: {r: _sha256(root / r) if (root / r).is_file() else None for r in rels})

    async def touch(self, items: dict[str, int]) -> None:
        await asyncio.to_thread(agent.cmd_touch, {"root": str(self.root), "items": items})

    async def stage(self) -> str:
        return await asyncio.to_thread(agent.stage, str(self.root))

    async def commit(self, staging: str, items: list[dict[str, object]]) -> dict:
        return await asyncio.to_thread(agent.commit, str(self.root), staging, items)

    async def sender(self, source: dict[str, list[int]], send: list[str], refused: list[str]) -> _SendOne:
        """Upload: the sha256 is taken locally while the file travels."""

        async def send_one(index: int, rel: str, staging: str, meter: _Meter) -> dict[str, object]:
            path = self.root / rel
            digest_task = asyncio.create_task(asyncio.to_thread(_sha256, path))
            await self.host.upload(path, f"{staging}/{index}.part", lambda done, _total: meter.update(rel, done))
            return {"tmp": f"{index}.part", "path": rel, "size": source[rel][0], "sha256": await digest_task,
                    "mtime_ns": source[rel][1], "mode": path.stat().st_mode & 0o777}

        return send_one


class _RemoteSide:
    """A host's workspace as one end of a sync (agent calls over the host's link)."""

    def __init__(self, host: "Host", root: str) -> None:
        self.host, self.root = host, root

    async def manifest(self, paths: list[str]) -> dict[str, list[int]]:
        return await _remote_manifest(self.host, self.root, paths)

    async def hash(self, rels: list[str]) -> dict[str, str]:
        return await agent_client.call(self.host, "hash", {"root": self.root, "paths": rels}, timeout=600)

    async def touch(self, items: dict[str, int]) -> None:
        await agent_client.call(self.host, "touch", {"root": self.root, "items": items})

    async def stage(self) -> str:
        return (await agent_client.call(self.host, "stage", {"root": self.root}))["dir"]

    async def commit(self, staging: str, items: list[dict[str, object]]) -> dict:
        return await agent_client.call(self.host, "commit", {"root": self.root, "staging": staging, "items": items}, timeout=600)

    async def sender(self, source: dict[str, list[int]], send: list[str], refused: list[str]) -> _SendOne:
        """Download: the host hashes all files to send in one call before any moves; a file without a
        well-formed sha256 in its answer is refused (the commit checks each download against it)."""
        answer = await self.hash(send)
        expected = answer if isinstance(answer, dict) else {}
        refused.extend(rel for rel in send if not _is_sha256(expected.get(rel)))

        async def send_one(index: int, rel: str, staging: str, meter: _Meter) -> dict[str, object]:
            await self.host.download(f"{self.root}/{rel}", Path(staging) / f"{index}.part",
                                     lambda done, _t: meter.update(rel, done))
            return {"tmp": f"{index}.part", "path": rel, "size": source[rel][0], "sha256": expected[rel],
                    "mtime_ns": source[rel][1]}

        return send_one


async def _sync(
    host: "Host", direction: str, what: str | Sequence[str], local_root: str | os.PathLike,
    remote_root: str | None, progress: ProgressCallback | None,
) -> SyncReport:
    """One push or pull: the steps of the module docstring, from the source side to the destination side."""
    started = time.perf_counter()
    local = _LocalSide(host, Path(local_root).resolve())
    remote = _RemoteSide(host, remote_root or host.root)
    source_side, dest_side = (local, remote) if direction == "push" else (remote, local)
    paths = resolve_paths(what, direction, local.root)
    report = SyncReport(host.name, direction)
    if not paths and direction == "push":  # an empty push group (e.g. no root files) contacts nobody
        return report
    source = await source_side.manifest(paths)
    dest = await dest_side.manifest(paths)
    if direction == "pull":  # the source is the host: only what was asked for, well-formed
        source = _trusted_listing(host, source, paths, report.refused)
    else:  # the destination is the host: a lie there can only make us send our own files again
        dest = _trusted_listing(host, dest, paths, [])
    report.files_checked = len(source)
    send, touch = await _changed(host, source, dest, source_side.hash, dest_side.hash)
    if touch:
        await dest_side.touch(touch)
        report.files_touched = len(touch)
    if send:
        send_one = await source_side.sender(source, send, report.refused)
        send = [rel for rel in send if rel not in report.refused]
        staging = await dest_side.stage()
        meter = _Meter(host, direction, {rel: source[rel][0] for rel in send}, progress)
        limit = asyncio.Semaphore(PARALLEL_FILES)
        items: list[dict[str, object]] = []

        async def transfer(index: int, rel: str) -> None:
            async with limit:
                items.append(await send_one(index, rel, staging, meter))
                meter.finished(rel)

        await _gather_all([transfer(i, rel) for i, rel in enumerate(send)])
        result = await dest_side.commit(staging, items)
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

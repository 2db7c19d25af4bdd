"""Controller side of :mod:`remote.host_program`: build a request, run it on a host, read its answer.

``remote/host_program.py`` holds only code that runs on the host (standard
library, the host's own Python).  Its source travels on the host's stdin with
the request inside it (:func:`request_program`), so the command line is a few
bytes whatever the request's size and the program always matches this client.
A command that also reads data from stdin (a push's files, :func:`session`)
is started by a one-line loader instead (:data:`BOOTSTRAP`), which reads
the program length-prefixed and leaves the rest of stdin to it.

An answer is untrusted like every byte from a host: it must be one JSON
object ``{"ok": ...}`` or ``{"error": {"kind", "message"}}`` on the last line
of stdout; anything else is a :class:`RemoteCommandFailed` naming the server
and the helper command.  Callers check the shape of what ``ok`` holds.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterable, AsyncIterator

from remote.errors import JobConflict, JobNotFound, RemoteCommandFailed, RemoteError, UnsafePath

if TYPE_CHECKING:  # pragma: no cover - typing only
    from remote.hosts import Host, Result

HOST_PROGRAM_SOURCE = Path(__file__).with_name("host_program.py").read_text(encoding="utf-8")
_REQUEST_PLACEHOLDER = "STDIN_REQUEST = None  # request placeholder\n"
assert HOST_PROGRAM_SOURCE.count(_REQUEST_PLACEHOLDER) == 1, "remote/host_program.py lost its request placeholder"

# A host program error's kind -> the exception the controller raises (others: RemoteError).
_ERROR_KINDS: dict[str, type[RemoteError]] = {
    "conflict": JobConflict,
    "not_found": JobNotFound,
    "unsafe_path": UnsafePath,
    "verify": RemoteError,
}


def request_program(request: dict[str, Any]) -> bytes:
    """The helper's source with the request in it, for ``python -`` on the host's stdin: the command
    line stays a few bytes whatever the request's size (a commit of 20,000 paths is megabytes)."""
    literal = repr(json.dumps(request, separators=(",", ":")))
    return HOST_PROGRAM_SOURCE.replace(_REQUEST_PLACEHOLDER, f"STDIN_REQUEST = {literal}\n").encode()


# ``python -c BOOTSTRAP command``: reads a line with the program's length, then the program (the request
# inside it), and runs it as ``__main__``; the rest of stdin stays in the same buffer for the command's
# data (a push's files). ``python -`` would take all of stdin as the program.
BOOTSTRAP = 'import sys;i=sys.stdin.buffer;exec(compile(i.read(int(i.readline())),"remote/host_program.py","exec"))'


def framed_program(request: dict[str, Any]) -> bytes:
    """The helper's program for :data:`BOOTSTRAP`: its length on a line, then the program."""
    program = request_program(request)
    return b"%d\n" % len(program) + program


def program_argv(host: "Host", command: str) -> list[str]:
    """The command line of a helper call: the program and its request come on stdin."""
    return [host.python, "-", command]


def error_from_answer(error: object, server: str) -> RemoteError:
    """The remote.errors exception for the host program's error answer (its message shown as one line)."""
    kind = error.get("kind") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = " ".join(str(message if message is not None else error).split())[:500]
    return _ERROR_KINDS.get(kind if isinstance(kind, str) else "", RemoteError)(f"server {server}: {text}")


def read_answer(host: "Host", command: str, result: "Result") -> Any:
    """The ``ok`` value of a helper's answer; the matching RemoteError for an error or a garbled answer."""
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or ("ok" not in answer and "error" not in answer):
        detail = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1][:300]
        raise RemoteCommandFailed(
            f"server {host.name}: helper `{command}` failed with {host.python} (exit {result.exit_status}): {detail}"
        )
    if "error" in answer:
        raise error_from_answer(answer["error"], host.name)
    return answer["ok"]


async def call(host: "Host", command: str, request: dict[str, Any], *, timeout: float | None = None) -> Any:
    """Run one host program command on ``host`` and return its answer's ``ok`` value."""
    result = await host.run(program_argv(host, command), timeout=timeout, input=request_program(request))
    return read_answer(host, command, result)


def stream(host: "Host", command: str, request: dict[str, Any], *, idle_timeout: float | None = None) -> AsyncIterator[bytes]:
    """The raw stdout of a long-running host program command (``follow``)."""
    return host.stream(program_argv(host, command), input=request_program(request), idle_timeout=idle_timeout)


async def session(
    host: "Host", command: str, request: dict[str, Any], data: AsyncIterable[bytes], *, idle_timeout: float | None = None,
) -> AsyncIterator[Any]:
    """Run a helper command that reads ``data`` from stdin after its program and answers as it goes
    (``receive``): yields the ``ok`` value of each JSON line it prints, while ``data`` is still being sent.
    An error line raises its RemoteError; a line that is not an answer, RemoteCommandFailed."""

    async def stdin() -> AsyncIterator[bytes]:
        yield framed_program(request)
        async for chunk in data:
            yield chunk

    argv = [host.python, "-c", BOOTSTRAP, command]
    pending = b""
    async with contextlib.aclosing(host.stream_with_stdin(argv, stdin(), idle_timeout=idle_timeout)) as output:
        async for chunk in output:
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield _answer_line(host, command, line)
    if pending.strip():
        yield _answer_line(host, command, pending)


def _answer_line(host: "Host", command: str, line: bytes) -> Any:
    from remote.hosts import Result

    return read_answer(host, command, Result(0, line.decode("utf-8", "replace"), ""))

"""Connect: the console hands its terminal to an interactive ssh in the server's workspace and
takes it back when the shell exits. Runs the real console in a pseudo-terminal against a real sshd."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from conftest import PYTHON, write_cluster_file

pytestmark = pytest.mark.ssh
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


class Terminal:
    """A child process on a pseudo-terminal; ``expect`` reads its screen output (escapes dropped)."""

    def __init__(self, argv: list[str], cwd: Path, rows: int = 40, cols: int = 140) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                        start_new_session=True)
        os.close(slave)
        self.seen = b""

    def expect(self, pattern: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern.encode(), ANSI.sub(b"", self.seen)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; last output: {self.tail()!r}")
            self._read(min(left, 0.2))

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code; the output is read meanwhile, as a terminal would: a child whose
        writes fill the pseudo-terminal's buffer blocks and could never exit."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s; last output: {self.tail()!r}")
            self._read(0.1)
        return self.process.returncode

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.seen += os.read(self.master, 65536)
            except OSError:  # the child closed the terminal
                time.sleep(0.05)

    def tail(self) -> bytes:
        return ANSI.sub(b"", self.seen)[-1500:]

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def mark(self) -> None:
        """Forget what was seen so far (the next ``expect`` looks only at new output)."""
        self.seen = b""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.master)


def test_connect_opens_a_shell_in_the_server_workspace_and_returns(sshd_pair, tmp_path: Path) -> None:
    config = write_cluster_file(sshd_pair, tmp_path / "cluster.json")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    root = sshd_pair.servers[0].root
    term = Terminal([PYTHON, "-m", "console.cli", "--config", str(config), "--workspace", str(workspace)],
                    cwd=Path(__file__).resolve().parents[2])
    try:
        term.expect(r"srv1.{0,40}online", 60)  # the servers table: the controller's workspace first, then srv1
        term.mark()
        term.send("\x1b[B")  # down: srv1
        term.send("c")
        term.expect(r"[#$] $", 30)  # the remote login shell's prompt
        term.mark()
        term.send("echo CONNECTED-$((6*7)) in $(pwd)\r")
        term.expect(rf"CONNECTED-42 in {re.escape(str(root))}", 30)
        term.mark()
        term.send("exit\r")
        term.expect(r"srv2", 30)  # the console draws its screen again
        term.send("q")
        assert term.wait(30) == 0
    finally:
        term.close()

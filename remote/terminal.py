"""Text from hosts, made safe for the operator's terminal.

A host's answers (hostnames, job ids, log lines, error output) are untrusted: escape sequences in them
could retitle, clear or recolour the controller's terminal, or hide what is printed. ``epoch-cluster``
writes everything through :class:`EscapingStream`, which shows each control character as ``\\xNN``
(newline and tab excepted); JSON output needs nothing more, ``json.dumps`` escapes them itself. The
console draws host text as plain strings and strips them there.
"""

from __future__ import annotations

import re
from typing import TextIO

# C0 controls but tab and newline, DEL, and the C1 controls (0x9b is a one-byte CSI on some terminals).
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """``text`` with every control character but newline and tab written as ``\\xNN``."""
    return UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class EscapingStream:
    """A text stream that writes :func:`shown` text to ``stream``; ``unescaped`` is the stream itself, for
    the controller's own control characters (a progress line's carriage return)."""

    def __init__(self, stream: TextIO) -> None:
        self.unescaped = stream

    def write(self, text: str) -> int:
        return self.unescaped.write(shown(text))

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding, buffer...: the stream's own
        return getattr(self.unescaped, name)

"""Detail pane: the selected server's status with small history sparklines."""

from __future__ import annotations

import time

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from console.state import ONLINE, HostView


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    return f"{days}d {rest // 3600}h{rest % 3600 // 60:02d}m"


def _gib(value: object) -> str:
    return f"{value / 2**30:.1f} GiB" if isinstance(value, (int, float)) else "-"


def describe(host: HostView) -> str:
    s = host.status
    lines = [f"[b]{escape(host.name)} [/]· {escape(host.address)} ·[b] {host.state}[/]"]
    if host.error:
        lines.append(f"[red]{escape(host.error)}[/]")
    if host.state == ONLINE or s:
        load = s.get("load") or s.get("loadavg")
        load_text = " ".join(f"{x:.2f}" for x in load) if isinstance(load, list) else "-"
        disk = s.get("disk") if isinstance(s.get("disk"), dict) else {}
        mem = s.get("memory") if isinstance(s.get("memory"), dict) else {}
        lines.append(f"load {load_text}   uptime {_uptime(s.get('uptime_s'))}   cpus {(s.get('cpu') or {}).get('count', '-') if isinstance(s.get('cpu'), dict) else s.get('cpu_count', '-')}")
        lines.append(f"memory {_gib(mem.get('used'))} / {_gib(mem.get('total'))}   "
                     f"disk {_gib(disk.get('used'))} / {_gib(disk.get('total'))} ({disk.get('percent', '-')}%)")
        gpus = s.get("gpus") or s.get("gpu") or []
        for gpu in gpus if isinstance(gpus, list) else []:
            if isinstance(gpu, dict):
                lines.append(f"gpu {escape(str(gpu.get('name', '?')))} {gpu.get('utilization_percent', '-')}% "
                             f"mem {gpu.get('memory_used_mb', '-')}/{gpu.get('memory_total_mb', '-')} MB")
    if host.updated:
        lines.append(f"[dim]updated {time.time() - host.updated:.0f}s ago[/]")
    return "\n".join(lines)


class HostDetail(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("no server selected", id="detail-text")
        for name in ("cpu", "memory", "gpu"):
            with Horizontal(classes="spark-row"):
                yield Label(f"{name:<6}", classes="spark-label")
                yield Sparkline([], id=f"spark-{name}", summary_function=max)

    def show(self, host: HostView | None) -> None:
        # A redraw can land while the app shuts down and the panes' children are already gone:
        # then there is nothing to show, not an error.
        texts = self.query("#detail-text")
        if not texts:
            return
        text = texts.first(Static)
        if host is None:
            text.update("no server selected")
            return
        text.update(describe(host))
        for name, history in (("cpu", host.cpu_history), ("memory", host.memory_history), ("gpu", host.gpu_history)):
            sparks = self.query(f"#spark-{name}")
            if not sparks:
                return
            spark = sparks.first(Sparkline)
            data = list(history)
            if spark.data != data:
                spark.data = data

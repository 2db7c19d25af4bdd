"""`epoch-builder report` on a real small build: the page, its figures' data, the PNG, the errors, and the page
drawn by a real browser (headless Chromium).

The build is made once for the module from six tiny trained DNNs (as in test_build_export.py, whose grid and
helpers it uses): initialize, sweep every batch, build the top 3.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from epoch_builder.workspace import Workspace
from tests.test_build_export import _sweep_all, cli, initialize, train_tiny_regressions

CHROMIUM = Path("/usr/bin/chromium")
BUILT_MODELS = 3


@pytest.fixture(scope="module")
def _built_template(_small_epoch_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report-build") / "workspace"
    shutil.copytree(_small_epoch_template, root)
    ws = train_tiny_regressions(root)
    assert initialize(ws) == 0
    assert _sweep_all(ws) >= BUILT_MODELS
    assert cli(ws, "build-prediction-models", "--top", str(BUILT_MODELS), "--no-progress") == 0
    return root


@pytest.fixture
def built(_built_template: Path, tmp_path: Path) -> Workspace:
    root = tmp_path / "workspace"
    shutil.copytree(_built_template, root)
    return Workspace(root)


def build_of(ws: Workspace) -> list[dict[str, Any]]:
    return json.loads(ws.epoch().build_file.read_text())


# --- reading a page back ------------------------------------------------------------------

class Page(HTMLParser):
    """Every tag with its attributes, the model sections and the text (html.parser, strict enough to fail on
    a page it cannot read)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if not self._in_script:
            self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(want in a.get(k, "").split() for k, want in attrs.items())]

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def figures(path: Path) -> dict[str, list[dict[str, Any]]]:
    """{div id: traces} of every ``Plotly.newPlot(id, traces, ...)`` in the page's body."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    found: dict[str, list[dict[str, Any]]] = {}
    marker = "Plotly.newPlot("
    at = text.find(marker, text.index("</head>"))
    while at != -1:
        cursor = at + len(marker)
        while text[cursor].isspace():
            cursor += 1
        div_id, cursor = decoder.raw_decode(text, cursor)
        while text[cursor] in " \n\t,":
            cursor += 1
        traces, cursor = decoder.raw_decode(text, cursor)
        found[div_id] = traces
        at = text.find(marker, cursor)
    return found


def series(path: Path, name: str) -> list[dict[str, Any]]:
    return [t for traces in figures(path).values() for t in traces if (t.get("meta") or {}).get("series") == name]


def assert_valid_png(path: Path) -> tuple[int, int]:
    """Signature, every chunk's CRC, IHDR first and IEND last; returns (width, height)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG signature"
    at, chunks = 8, []
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8: at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length: at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in chunk {kind!r}"
        chunks.append((kind, body))
        at += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND" and any(k == b"IDAT" for k, _ in chunks)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG" and image.size == (width, height)
    return width, height


def assert_self_contained(page: Page) -> None:
    scripts = page.all("script")
    assert scripts, "the page draws with scripts"
    for tag, attrs in page.tags:
        for key in ("src", "href"):
            value = attrs.get(key, "")
            assert not value.lower().startswith(("http:", "https:", "//")), f"<{tag} {key}={value!r}> needs a network"
    assert not [s for s in scripts if "src" in s], "every script is inline"


def assert_equity_matches(path: Path, expected: list[tuple[int, dict[str, Any]]]) -> None:
    """One equity series per model, in rank order, ending at the model's final balance."""
    equity = series(path, "equity")
    assert [(t["meta"]["rank"], t["meta"]["model_id"]) for t in equity] == [(r, c["id"]) for r, c in expected]
    for trace, (_, cert) in zip(equity, expected):
        backtest = cert["backtest"]
        assert trace["y"] == backtest["balance_history"]
        assert trace["y"][-1] == backtest["final_balance"]
        assert len(trace["x"]) == len(backtest["positions"]) + 1
    drawdowns = {t["meta"]["model_id"]: t["y"] for t in series(path, "drawdown")}
    for _, cert in expected:
        assert min(drawdowns[cert["id"]]) == cert["backtest"]["max_drawdown"]


# --- the tests ---------------------------------------------------------------------------------

def test_the_default_report_is_the_best_model(built: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    build = build_of(built)
    best = build[0]
    assert cli(built, "report", "--no-progress") == 0
    html_file = built.epoch().report_file(best["id"])
    assert html_file == built.epoch().dir / "reports" / f"{best['id']}.html"
    png_file = html_file.with_suffix(".png")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{html_file}: ") and out[1].startswith(f"{png_file}: ")
    page = parse(html_file)
    assert_self_contained(page)
    sections = page.all("section", **{"class": "model"})
    assert [s["data-model-id"] for s in sections] == [best["id"]]
    assert_equity_matches(html_file, [(1, best)])
    width, height = assert_valid_png(png_file)
    assert width >= 600 and height >= 300

    # the positions, each where it opened and where it closed
    positions = best["backtest"]["positions"]
    drawn = {name: series(html_file, name) for name in ("entry_long", "entry_short", "exit_take_profit",
                                                         "exit_stop_loss", "price")}
    assert len(drawn["entry_long"][0]["x"]) == sum(p["t"] == 1 for p in positions)
    assert len(drawn["entry_short"][0]["x"]) == sum(p["t"] == -1 for p in positions)
    assert drawn["exit_take_profit"][0]["y"] == [p["cp"] for p in positions if p["o"]]
    assert drawn["exit_stop_loss"][0]["y"] == [p["cp"] for p in positions if not p["o"]]
    assert all(p["cp"] == (p["tpp"] if p["o"] else p["slp"]) for p in positions)
    assert len(drawn["price"][0]["x"]) > 100  # the 30-minute closes over the test range (4+ days)

    # accuracy, counts and the discovery are stated
    text = page.plain
    assert f"accuracy {best['backtest']['accuracy']:,.2f}%" in text
    assert f"{len(positions):,} position(s)" in text
    assert "Discovery" in text and f"{best['discovery']['increase_num']} / {best['discovery']['decrease_num']}" in text

    # how much is luck: the build's PBO line, the model's deflated Sharpe ratio, no out-of-sample window here
    summary = json.loads(built.epoch().build_summary_file.read_text())
    assert f"probability of backtest overfitting {summary['pbo']['pbo']:.2f}" in text
    assert "How much is luck?" in text and "No out-of-sample window" in text
    dsr = best["deflated_sharpe"]
    assert (f"{dsr['dsr']:,.3f}" in text) if dsr["dsr"] is not None else (dsr["reason"] in text)

    # loss and val_loss per epoch of every regression of the model, from its certificate
    ids = [r["id"] for r in best["model"]["regressions"]]
    for key in ("loss", "val_loss"):
        traces = series(html_file, key)
        assert [t["meta"]["regression_id"] for t in traces] == ids
        for trace in traces:
            cert = json.loads(built.epoch().regression_certificate_file(trace["meta"]["regression_id"]).read_text())
            assert trace["y"] == cert["training_history"][key]
            assert trace["x"] == list(range(1, len(cert["training_history"][key]) + 1))
    assert "not present locally" not in text


def test_top_n_reports_n_models(built: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build = build_of(built)
    assert len(build) == BUILT_MODELS
    out = tmp_path / "out" / "two.html"
    assert cli(built, "report", "--top", "2", "--out", str(out), "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["html"] == str(out) and document["png"] == str(out.with_suffix(".png"))
    assert document["models"] == [c["id"] for c in build[:2]]
    page = parse(out)
    assert_self_contained(page)
    assert [s["data-model-id"] for s in page.all("section", **{"class": "model"})] == document["models"]
    assert_equity_matches(out, list(enumerate(build[:2], 1)))
    assert_valid_png(out.with_suffix(".png"))

    # the default name of --top N, and asking for more models than the build holds
    assert cli(built, "report", "--top", "5") == 0
    captured = capsys.readouterr()
    assert f"holds {BUILT_MODELS} model(s), not 5" in captured.err
    default = built.epoch().report_file("top-5")
    assert_equity_matches(default, list(enumerate(build, 1)))
    assert_valid_png(default.with_suffix(".png"))

    # --model-id picks that one, with its rank in the build
    assert cli(built, "report", "--model-id", build[2]["id"], "--out", str(tmp_path / "third.html")) == 0
    assert_equity_matches(tmp_path / "third.html", [(3, build[2])])


def test_errors_are_one_line(built: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli(built, "report", "--model-id", "_SMALL_nope", "--out", str(tmp_path / "x.html")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: model id '_SMALL_nope' is not in ")
    assert str(built.epoch().build_file) in err[0] and "`epoch-builder models list`" in err[0]
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.png").exists()

    assert cli(built, "report", "--top", "0") == 2
    assert capsys.readouterr().err.strip() == "error: parameter --top=0 must be >= 1"
    assert cli(built, "report", "--out", str(tmp_path / "report.png")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must name an .html file" in err[0]
    with pytest.raises(SystemExit) as done:
        cli(built, "report", "--best", "--top", "2")
    assert done.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err

    built.epoch().build_file.unlink()
    assert cli(built, "report") == 1
    assert "no build (run build-prediction-models first)" in capsys.readouterr().err
    assert not (built.epoch().dir / "reports").exists()


def test_a_regression_certificate_not_present_locally_is_said(built: Workspace, tmp_path: Path) -> None:
    best = build_of(built)[0]
    ids = [r["id"] for r in best["model"]["regressions"]]
    gone = ids[1]
    shutil.rmtree(built.epoch().regression_dir(gone))
    out = tmp_path / "missing.html"
    assert cli(built, "report", "--out", str(out)) == 0
    text = parse(out).plain
    assert f"The certificate of regression {gone} is not present locally" in text
    assert "epoch-cluster pull trained-regressions" in text
    assert [t["meta"]["regression_id"] for t in series(out, "loss")] == [i for i in ids if i != gone]
    assert_equity_matches(out, [(1, best)])  # the rest of the page does not depend on it


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason=f"{CHROMIUM} not installed (`make system-deps` installs the Debian package chromium)")
def test_headless_chromium_draws_the_charts(built: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "drawn.html"
    assert cli(built, "report", "--top", "2", "--out", str(out)) == 0
    figure_ids = list(figures(out))
    assert len(figure_ids) >= 2 * 4  # equity, positions, discovery and training per model
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=20000", "--dump-dom",
         out.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Page()
    dom.feed(done.stdout)
    dom.close()
    # plotly replaces each empty div with its drawing: a .plot-container holding svg.main-svg layers
    drawn = {a["id"] for a in dom.all("div", **{"class": "js-plotly-plot"})}
    assert drawn == set(figure_ids), set(figure_ids) - drawn
    assert len(dom.all("div", **{"class": "plot-container"})) == len(figure_ids)
    assert len(dom.all("svg", **{"class": "main-svg"})) >= len(figure_ids)
    assert len(dom.all("g", **{"class": "scatterlayer"})) >= len(figure_ids) - 2  # the discovery's bars excepted
    assert dom.all("path", **{"class": "js-line"}), "the lines were drawn"


async def test_the_console_writes_the_report_and_shows_its_path(built: Workspace) -> None:
    """Charts → HTML report (key H): choose a model of the build, the page is written in the console's
    workspace and its path shown; the page is the same kind `epoch-builder report` writes."""
    import asyncio

    from console.app import make_app

    build = build_of(built)
    app = make_app(None, built.root)

    async def until(predicate: Any, what: str, timeout: float = 60.0) -> None:
        for _ in range(int(timeout / 0.1)):
            if predicate():
                return
            await pilot.pause(0.05)
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; notifications: {list(app.messages)}")

    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("H")
        await until(lambda: type(app.screen).__name__ == "ReportModelPicker" and app.screen.is_mounted, "the picker")
        await pilot.press("down")  # the second model of the build
        await pilot.press("ctrl+s")
        written = built.epoch().report_file(build[1]["id"])
        await until(lambda: any(m.startswith(f"HTML report written: {written}") for m in app.messages), "the path")
    assert_self_contained(parse(written))
    assert_equity_matches(written, [(2, build[1])])
    assert_valid_png(written.with_suffix(".png"))

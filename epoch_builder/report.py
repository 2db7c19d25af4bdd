"""`epoch-builder report`: one self-contained HTML page of built prediction models, and a PNG of their equity.

Everything comes from the local workspace: the model certificates of ``build.json`` (SEMANTICS §7.6), the
epoch's prediction candles and each regression's certificate. Per model the page shows

* the equity: the backtest's ``balance_history`` (the initial balance at the start of the test range, then the
  balance after each closed position, at its close time) and its drawdown from the running peak, in % as the
  certificate's ``max_drawdown`` counts it;
* the positions on the prediction candles' close over the test range: longs and shorts where they opened,
  take-profit and stop-loss exits where they closed (a successful position closes at its take-profit price,
  a failed one at its stop-loss price);
* the backtest's accuracies and counts and the model's discovery (SEMANTICS §4, over the feature sums);
* per regression of the model, loss and val_loss per epoch from its certificate's ``training_history``; a
  regression whose certificate is not in the workspace (trained elsewhere, not pulled) is named as such.

plotly.js is inlined once in the page's head: the file opens without a network. Beside it a PNG of the equity
(matplotlib, Agg) for places that take pictures. plotly and matplotlib are imported only where they draw.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from epoch_builder import output
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.numbers import pct_change
from epoch_builder.workspace import EpochPaths, Workspace

EQUITY_SERIES = "equity"  # the ``meta.series`` of each model's equity trace in the page (what tests look for)
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
LONG, SHORT = 1, -1
COLORS = {"equity": "#1f77b4", "drawdown": "#d62728", "price": "#7f7f7f", "long": "#1a9850", "short": "#d73027",
          "take_profit": "#2166ac", "stop_loss": "#111111", "loss": "#1f77b4", "val_loss": "#ff7f0e"}
TRAINING_PANEL_HEIGHT = 300  # px per row of two regressions' loss panels
PULL_HINT = "`epoch-cluster pull trained-regressions` fetches the trained regressions from the servers"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    png: Path
    model_ids: list[str]


@dataclass(frozen=True)
class Regression:
    """One regression of a model as the page shows it: its certificate, or why there is none."""

    id: str
    config: dict[str, Any]  # the model certificate's copy of the regression's config
    certificate_file: Path
    certificate: dict[str, Any] | None
    problem: str | None  # None when the certificate was read


# --- which models --------------------------------------------------------------------

def select_models(build: list[Any], build_file: Path, *, model_id: str | None = None,
                  top: int | None = None) -> list[tuple[int, dict[str, Any]]]:
    """``(rank, certificate)`` of the models to report: ``model_id``, the first ``top``, else the best.
    ``build`` is build.json's list, most profitable first (rank 1)."""
    if top is not None and top < 1:
        raise UsageError(f"parameter --top={top} must be >= 1")
    ranked = [(rank, cert) for rank, cert in enumerate(build, 1) if isinstance(cert, dict)]
    if not ranked:
        raise EpochBuilderError(f"{build_file}: the build holds no model to report (run build-prediction-models)")
    if model_id is not None:
        for rank, cert in ranked:
            if cert.get("id") == model_id:
                return [(rank, cert)]
        raise UsageError(f"model id {model_id!r} is not in {build_file} ({len(ranked)} model(s); "
                         "`epoch-builder models list` shows their ids)")
    if top is not None:
        if top > len(ranked):
            output.warning(f"{build_file}: the build holds {len(ranked)} model(s), not {top}; reporting all of them")
        return ranked[:top]
    return ranked[:1]


def default_name(model_id: str | None, top: int | None, best_id: str) -> str:
    """The default file name (no suffix): the model id, or ``top-N``."""
    return f"top-{top}" if top is not None else (model_id or best_id)


def check_out(out: str | Path) -> Path:
    path = Path(out).expanduser()
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"parameter --out={out}: must name an .html file (the PNG is written beside it as .png)")
    if path.exists() and path.is_dir():
        raise UsageError(f"parameter --out={out}: is a directory; name an .html file")
    return path.resolve()


# --- the figures' data -----------------------------------------------------------------

def utc(ms: int | float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).replace(tzinfo=None)


def time_text(ms: int | float) -> str:
    """A time as plotly's date axis reads it (UTC, to the millisecond)."""
    moment = utc(ms)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def shown_time(ms: int | float) -> str:
    """A time as the page's text shows it (UTC, to the minute)."""
    return f"{utc(ms):%Y-%m-%d %H:%M}"


def _backtest(cert: dict[str, Any]) -> dict[str, Any]:
    backtest = cert.get("backtest")
    if not isinstance(backtest, dict):
        raise EpochBuilderError(f"build.json: model {cert.get('id')!r} has no backtest (a damaged build)")
    for key in ("positions", "balance_history", "final_balance"):
        if key not in backtest:
            raise EpochBuilderError(f"build.json: model {cert.get('id')!r}: backtest key {key!r} missing (a damaged build)")
    return backtest


def equity_series(cert: dict[str, Any]) -> tuple[list[int], list[float]]:
    """(times in ms, balances): the initial balance at the test range's start, then each close's balance."""
    backtest = _backtest(cert)
    balances = [float(b) for b in backtest["balance_history"]]
    positions = backtest["positions"]
    if len(balances) != len(positions) + 1:
        raise EpochBuilderError(f"build.json: model {cert.get('id')!r}: balance_history has {len(balances)} entries for "
                                f"{len(positions)} position(s); expected {len(positions) + 1} (a damaged build)")
    start = int(cert.get("test_ds_start") or (positions[0]["ot"] if positions else 0))
    return [start, *(int(p["ct"]) for p in positions)], balances


def drawdown_series(balances: list[float]) -> list[float]:
    """Each balance's change from the highest balance before it, in % (2 decimals, <= 0); the lowest value is
    the certificate's max_drawdown."""
    peak = -math.inf
    drawdowns = []
    for balance in balances:
        peak = max(peak, balance)
        drawdowns.append(min(pct_change(peak, balance), 0.0))
    return drawdowns


def load_regressions(paths: EpochPaths, cert: dict[str, Any]) -> list[Regression]:
    from epoch_builder.storage import read_json

    found = []
    for config in cert.get("model", {}).get("regressions", []) or []:
        rid = str(config.get("id")) if isinstance(config, dict) else str(config)
        path = paths.regression_certificate_file(rid)
        certificate, problem = None, None
        if not path.is_file():
            problem = "not present locally"
        else:
            try:
                loaded = read_json(path)
            except EpochBuilderError as exc:
                problem = f"unreadable ({exc})"
            else:
                if isinstance(loaded, dict):
                    certificate = loaded
                else:
                    problem = "unreadable (not a certificate object)"
        found.append(Regression(rid, config if isinstance(config, dict) else {"id": rid}, path, certificate, problem))
    return found


def load_price(ws: Workspace, start: int, end: int) -> tuple[list[int], list[float]] | None:
    """(open times, closes) of the prediction candles in [start, end]; None when the bundle is not here."""
    from epoch_builder.candles import read_candles

    path = ws.prediction_candlesticks_file
    if not path.is_file():
        return None
    candles = read_candles(path)
    inside = candles[(candles["ot"] >= start) & (candles["ot"] <= end)]
    return [int(t) for t in inside["ot"].tolist()], [float(c) for c in inside["c"].tolist()]


# --- plotly figures -------------------------------------------------------------------------

def _figure_html(figure: Any, div_id: str, height: int) -> str:
    figure.update_layout(height=height, margin={"l": 60, "r": 20, "t": 50, "b": 40}, template="plotly_white",
                         hovermode="closest")
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG,
                          default_height=f"{height}px", default_width="100%")


def equity_figure(cert: dict[str, Any], rank: int) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    times, balances = equity_series(cert)
    x = [time_text(t) for t in times]
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06,
                           subplot_titles=("Equity: balance after each closed position (USDT)",
                                           "Drawdown from the running peak (%)"))
    figure.add_trace(go.Scatter(x=x, y=balances, mode="lines+markers", line={"shape": "hv", "color": COLORS["equity"]},
                                name="equity", meta={"series": EQUITY_SERIES, "model_id": cert["id"], "rank": rank},
                                hovertemplate="%{x}<br>balance %{y:,.2f}<extra></extra>"), row=1, col=1)
    figure.add_trace(go.Scatter(x=x, y=drawdown_series(balances), mode="lines", fill="tozeroy",
                                line={"shape": "hv", "color": COLORS["drawdown"]}, name="drawdown %",
                                meta={"series": "drawdown", "model_id": cert["id"]},
                                hovertemplate="%{x}<br>drawdown %{y:.2f}%<extra></extra>"), row=2, col=1)
    figure.update_yaxes(title_text="USDT", row=1, col=1)
    figure.update_yaxes(title_text="%", row=2, col=1)
    figure.update_xaxes(type="date")
    return figure


def positions_figure(cert: dict[str, Any], price: tuple[list[int], list[float]] | None, interval: int) -> Any:
    import plotly.graph_objects as go

    positions = _backtest(cert)["positions"]
    figure = go.Figure()
    if price is not None:
        figure.add_trace(go.Scatter(x=[time_text(t) for t in price[0]], y=price[1], mode="lines",
                                    line={"color": COLORS["price"], "width": 1}, name=f"{interval}-minute close",
                                    meta={"series": "price"}, hovertemplate="%{x}<br>close %{y:,.2f}<extra></extra>"))

    def side(p: dict[str, Any]) -> str:
        return "long" if p["t"] == LONG else "short"

    def hover(p: dict[str, Any]) -> str:
        return (f"{side(p)} opened {shown_time(p['ot'])} at {p['op']:,.2f}<br>take-profit {p['tpp']:,.2f}, "
                f"stop-loss {p['slp']:,.2f}<br>closed {shown_time(p['ct'])} at {p['cp']:,.2f} "
                f"({'take-profit' if p['o'] else 'stop-loss'})<br>balance after {p['b']:,.2f}")

    segments_x: list[Any] = []
    segments_y: list[Any] = []
    for p in positions:
        segments_x += [time_text(p["ot"]), time_text(p["ct"]), None]
        segments_y += [p["op"], p["cp"], None]
    if positions:
        figure.add_trace(go.Scatter(x=segments_x, y=segments_y, mode="lines", hoverinfo="skip", name="open to close",
                                    line={"color": "#999999", "width": 1, "dash": "dot"}, meta={"series": "holding"}))
    markers = (
        ("long entry", "entry_long", lambda p: p["t"] == LONG, "ot", "op", "triangle-up", COLORS["long"]),
        ("short entry", "entry_short", lambda p: p["t"] == SHORT, "ot", "op", "triangle-down", COLORS["short"]),
        ("take-profit exit", "exit_take_profit", lambda p: bool(p["o"]), "ct", "cp", "star", COLORS["take_profit"]),
        ("stop-loss exit", "exit_stop_loss", lambda p: not p["o"], "ct", "cp", "x", COLORS["stop_loss"]),
    )
    for name, series, keep, at, price_key, symbol, color in markers:
        chosen = [p for p in positions if keep(p)]
        figure.add_trace(go.Scatter(
            x=[time_text(p[at]) for p in chosen], y=[p[price_key] for p in chosen], mode="markers", name=name,
            marker={"symbol": symbol, "size": 11, "color": color, "line": {"width": 1, "color": "white"}},
            text=[hover(p) for p in chosen], hovertemplate="%{text}<extra></extra>", meta={"series": series}))
    figure.update_layout(title=f"Positions on the {interval}-minute price over the test range",
                         legend={"orientation": "h", "y": -0.15})
    figure.update_xaxes(type="date")
    figure.update_yaxes(title_text="USDT")
    return figure


def _successes(discovery: dict[str, Any], name: str, total_key: str) -> tuple[int, int]:
    """(successful, unsuccessful) predictions of one direction, from the discovery's lists."""
    ok = discovery.get(f"{name}_successful_list")
    bad = discovery.get(f"{name}_unsuccessful_list")
    if isinstance(ok, list) and isinstance(bad, list):
        return len(ok), len(bad)
    total = int(discovery.get(total_key) or 0)
    good = round(total * float(discovery.get(f"{name}_accuracy") or 0) / 100)
    return good, total - good


def discovery_figure(discovery: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("Predictions by outcome",
                                                           "Points after 10% .. 100% of the predictions"))
    inc = _successes(discovery, "increase", "increase_num")
    dec = _successes(discovery, "decrease", "decrease_num")
    figure.add_trace(go.Bar(x=["increase", "decrease"], y=[inc[0], dec[0]], name="successful",
                            marker_color=COLORS["long"]), row=1, col=1)
    figure.add_trace(go.Bar(x=["increase", "decrease"], y=[inc[1], dec[1]], name="unsuccessful",
                            marker_color=COLORS["short"]), row=1, col=1)
    points = [float(v) for v in discovery.get("points_hist") or []]
    figure.add_trace(go.Scatter(x=[f"{10 * (i + 1)}%" for i in range(len(points))], y=points, mode="lines+markers",
                                name="points", line={"color": COLORS["equity"]}), row=1, col=2)
    figure.update_layout(barmode="stack")
    return figure


def training_figure(regressions: list[Regression]) -> tuple[Any, int] | None:
    """(figure, rows of panels): loss and val_loss per epoch, one panel per regression whose certificate holds a
    training history; None when none does."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    shown = [r for r in regressions if r.certificate is not None and _history(r.certificate)]
    if not shown:
        return None
    cols = 1 if len(shown) == 1 else 2
    rows = math.ceil(len(shown) / cols)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=[r.id for r in shown],
                           vertical_spacing=min(0.12, 0.5 / rows), horizontal_spacing=0.08)
    for index, regression in enumerate(shown):
        history = _history(regression.certificate or {})
        for key in ("loss", "val_loss"):
            values = history.get(key) or []
            if not values:
                continue
            figure.add_trace(go.Scatter(
                x=list(range(1, len(values) + 1)), y=values, mode="lines", name=key, legendgroup=key,
                showlegend=index == 0, line={"color": COLORS[key]}, meta={"series": key, "regression_id": regression.id},
                hovertemplate=f"{html.escape(regression.id)}<br>epoch %{{x}}: {key} %{{y:.6g}}<extra></extra>"),
                row=index // cols + 1, col=index % cols + 1)
    figure.update_xaxes(title_text="epoch")
    figure.update_annotations(font_size=11)
    return figure, rows


def _history(certificate: dict[str, Any]) -> dict[str, list[Any]]:
    history = certificate.get("training_history")
    if not isinstance(history, dict):
        return {}
    return {k: [v if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]
            for k, values in history.items() if isinstance(values, list) and values}


# --- the page ----------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 0 1.5em 3em; color: #222; }
h1 { margin-bottom: .2em; } h2 { border-top: 2px solid #ddd; padding-top: .8em; margin-top: 2em; }
h3 { margin: 1.4em 0 .4em; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
code { font-size: 13px; } .muted { color: #666; }
.missing { background: #fff4e5; border-left: 4px solid #f0a020; padding: .5em .8em; margin: .4em 0; }
.grid { display: flex; flex-wrap: wrap; gap: 2em; }
"""


TEXT_CLASS = ' class="text"'


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if math.isfinite(value) else str(value)
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], text_columns: tuple[int, ...] = (0,)) -> str:
    def cells(tag: str, values: list[Any]) -> str:
        return "".join(f"<{tag}{TEXT_CLASS if i in text_columns else ''}>{v}</{tag}>" for i, v in enumerate(values))
    head = cells("th", [html.escape(h) for h in header])
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(rows: list[tuple[str, Any]]) -> str:
    return _table(["figure", "value"], [[html.escape(name), value] for name, value in rows])


def _backtest_table(cert: dict[str, Any]) -> str:
    backtest = _backtest(cert)
    model = cert.get("model", {})
    positions = backtest["positions"]
    longs = sum(1 for p in positions if p["t"] == LONG)
    wins = sum(1 for p in positions if p["o"])
    initial = float(backtest.get("initial_balance") or 0)
    profit = float(backtest.get("profit") or 0)
    return _pairs([
        ("initial balance (USDT)", _cell(initial)),
        ("final balance (USDT)", _cell(float(backtest["final_balance"]))),
        ("profit (USDT)", f"{_cell(profit)} ({_cell(profit / initial * 100 if initial else 0.0)}%)"),
        ("fees (USDT)", _cell(float(backtest.get("fees") or 0))),
        ("max drawdown", f"{_cell(float(backtest.get('max_drawdown') or 0))}%"),
        ("positions", _cell(len(positions))),
        ("longs / shorts", f"{longs:,} / {len(positions) - longs:,}"),
        ("successful (take-profit) / failed (stop-loss)", f"{wins:,} / {len(positions) - wins:,}"),
        ("accuracy", f"{_cell(backtest.get('accuracy'))}%"),
        ("long accuracy / short accuracy",
         f"{_cell(backtest.get('increase_accuracy'))}% / {_cell(backtest.get('decrease_accuracy'))}%"),
        ("increase / decrease outcomes",
         f"{_cell(backtest.get('increase_outcome_num'))} / {_cell(backtest.get('decrease_outcome_num'))}"),
        ("price change requirement (pcr)", f"{_cell(model.get('price_change_requirement'))}%"),
        ("min sum function / adjustment factor",
         f"{_cell(model.get('min_sum_function'))} / {_cell(model.get('min_sum_adjustment_factor'))}"),
        ("min increase sum / min decrease sum",
         f"{_cell(model.get('min_increase_sum'), 6)} / {_cell(model.get('min_decrease_sum'), 6)}"),
        ("position size / leverage / fee per side",
         f"{_cell(backtest.get('position_size'))} / {_cell(backtest.get('leverage'))} / "
         f"{_cell(backtest.get('exchange_fee'), 3)}%"),
        ("idle minutes after a close", _cell(backtest.get("idle_minutes_on_position_close"))),
    ])


def _discovery_tables(discovery: dict[str, Any]) -> str:
    counts = _pairs([
        ("increase / decrease / neutral predictions",
         f"{_cell(discovery.get('increase_num'))} / {_cell(discovery.get('decrease_num'))} / "
         f"{_cell(discovery.get('neutral_num'))}"),
        ("increase / decrease / neutral outcomes",
         f"{_cell(discovery.get('increase_outcome_num'))} / {_cell(discovery.get('decrease_outcome_num'))} / "
         f"{_cell(discovery.get('neutral_outcome_num'))}"),
        ("accuracy", f"{_cell(discovery.get('accuracy'))}%"),
        ("increase accuracy / decrease accuracy",
         f"{_cell(discovery.get('increase_accuracy'))}% / {_cell(discovery.get('decrease_accuracy'))}%"),
        ("points", _cell(discovery.get("points"))),
    ])
    names = ("increase", "decrease", "increase_successful", "increase_unsuccessful", "decrease_successful",
             "decrease_unsuccessful")
    stats = _table(["feature sums of", "min", "max", "mean", "median"],
                   [[html.escape(name.replace("_", " ")), *(_cell(discovery.get(f"{name}_{s}"), 6)
                                                           for s in ("min", "max", "mean", "median"))]
                    for name in names if f"{name}_min" in discovery])
    return f'<div class="grid"><div>{counts}</div><div>{stats}</div></div>'


def _luck_section(cert: dict[str, Any]) -> str:
    """In-sample vs out-of-sample figures and the deflated Sharpe ratio (docs/prediction-models.md, How much is luck?)."""
    parts = ["<h3>How much is luck?</h3>"]
    window = cert.get("out_of_sample")
    if isinstance(window, dict):
        sides = [(name, window.get(key) or {}) for name, key in (("in-sample", "in_sample"),
                                                                  ("out-of-sample", "out_of_sample"))]
        rows = [[name, _cell(side.get("profit")), f"{_cell(side.get('accuracy'))}%", _cell(side.get("positions")),
                 f"{_cell(side.get('max_drawdown'))}%"] for name, side in sides]
        parts.append(f'<p class="muted">Out-of-sample window: the last {_cell(window.get("days"))} day(s) of the '
                     f"test range, from {shown_time(window.get('start', 0))} UTC; find-profitable-configs never saw "
                     "it, and the model trades it with its own min sums.</p>")
        parts.append(_table(["part", "profit", "accuracy", "positions", "max drawdown"], rows))
    else:
        parts.append('<p class="muted">No out-of-sample window (create-epoch --oos-days N keeps one).</p>')
    dsr = cert.get("deflated_sharpe")
    if isinstance(dsr, dict) and dsr.get("dsr") is not None:
        parts.append(_pairs([
            ("deflated Sharpe ratio (probability the true Sharpe ratio beats the best of the trials by luck)",
             _cell(dsr.get("dsr"), 3)),
            (f"Sharpe ratio ({dsr.get('returns', 'per position')})", _cell(dsr.get("sr"), 4)),
            ("expected best Sharpe ratio of the skill-less trials (SR0)", _cell(dsr.get("sr0"), 4)),
            ("trials (configurations of the sweep)", _cell(dsr.get("n_trials"))),
            ("variance of the trials' Sharpe ratios", _cell(dsr.get("variance_of_sharpes"), 6)),
            ("returns: observations, skew, kurtosis",
             f"{_cell(dsr.get('observations'))}, {_cell(dsr.get('skew'), 3)}, {_cell(dsr.get('kurtosis'), 3)}"),
        ]))
    elif isinstance(dsr, dict):
        parts.append(f'<p class="muted">No deflated Sharpe ratio: {html.escape(str(dsr.get("reason", "")))}.</p>')
    else:
        parts.append('<p class="muted">This build has no deflated Sharpe ratios (built before they existed).</p>')
    return "".join(parts)


def _regressions_section(regressions: list[Regression], figure_html: str | None) -> str:
    from epoch_builder.regressions.architectures import family_of_id
    from epoch_builder.regressions.rank import stopped_by_search, stopped_mark

    rows = []
    for r in regressions:
        cert = r.certificate or {}
        evaluation = cert.get("test_evaluation") if isinstance(cert.get("test_evaluation"), dict) else {}
        discovery = cert.get("discovery") if isinstance(cert.get("discovery"), dict) else {}
        rows.append([
            f"<code>{html.escape(r.id)}</code>", html.escape(family_of_id(r.id) or "-"),
            _cell(r.config.get("lookback")), _cell(r.config.get("predictions")),
            _cell(cert.get("epochs")), _cell(cert.get("best_epoch")),
            # rN: --search halving stopped it at rung N (certified from its best weights then)
            "-" if stopped_by_search(cert) is None else f"stopped {stopped_mark(stopped_by_search(cert))}",
            _cell(evaluation.get("loss"), 6), f"{_cell(discovery.get('accuracy'))}%" if discovery else "-",
            html.escape("present" if r.problem is None else r.problem),
        ])
    table = _table(["regression", "family", "lookback", "predictions", "epochs", "best epoch", "search", "test loss",
                    "discovery accuracy", "certificate"], rows, text_columns=(0, 1, 6, 9))
    notes = []
    for r in regressions:
        if r.problem is not None:
            notes.append(f'<p class="missing">The certificate of regression <code>{html.escape(r.id)}</code> is '
                         f"{html.escape(r.problem)} (<code>{html.escape(str(r.certificate_file))}</code>): its training "
                         f"and validation loss cannot be shown. {html.escape(PULL_HINT)}.</p>")
        elif not _history(r.certificate or {}):
            notes.append(f'<p class="missing">The certificate of regression <code>{html.escape(r.id)}</code> holds '
                         "no training history: its training and validation loss cannot be shown.</p>")
    chart = figure_html or ""
    return f"<h3>Regressions: training and validation loss per epoch</h3>{table}{''.join(notes)}{chart}"


def _model_section(ws: Workspace, paths: EpochPaths, rank: int, cert: dict[str, Any],
                   price: tuple[list[int], list[float]] | None, interval: int) -> str:
    anchor = f"model-{rank}"
    model_id = str(cert["id"])
    backtest = _backtest(cert)
    regressions = load_regressions(paths, cert)
    discovery = cert.get("discovery") if isinstance(cert.get("discovery"), dict) else {}
    training = training_figure(regressions)
    training_html = (None if training is None else
                     _figure_html(training[0], f"{anchor}-training", TRAINING_PANEL_HEIGHT * training[1] + 80))
    price_note = ("" if price is not None else
                  f'<p class="missing">The prediction candles are not present locally '
                  f"(<code>{html.escape(str(ws.prediction_candlesticks_file))}</code>): the positions are drawn "
                  "without the price.</p>")
    return "".join([
        f'<section class="model" id="{anchor}" data-model-id="{html.escape(model_id)}" data-rank="{rank}">',
        f"<h2>#{rank} <code>{html.escape(model_id)}</code></h2>",
        f'<p class="muted">profit {_cell(float(backtest.get("profit") or 0))} USDT, final balance '
        f'{_cell(float(backtest["final_balance"]))} USDT, accuracy {_cell(backtest.get("accuracy"))}%, '
        f"{len(backtest['positions']):,} position(s); test range {shown_time(cert.get('test_ds_start', 0))} "
        f"to {shown_time(cert.get('test_ds_end', 0))} UTC.</p>",
        "<h3>Backtest</h3>", _backtest_table(cert),
        _figure_html(equity_figure(cert, rank), f"{anchor}-equity", 560),
        "<h3>Positions</h3>", price_note,
        _figure_html(positions_figure(cert, price, interval), f"{anchor}-positions", 520),
        "<h3>Discovery</h3>", _discovery_tables(discovery),
        _figure_html(discovery_figure(discovery), f"{anchor}-discovery", 360),
        _luck_section(cert),
        _regressions_section(regressions, training_html),
        "</section>",
    ])


def render_html(ws: Workspace, selected: list[tuple[int, dict[str, Any]]], build_size: int,
                luck: str = "") -> str:
    """The whole page: plotly.js inlined once in the head, then a summary (with ``luck``, the build's
    probability-of-backtest-overfitting line) and one section per model."""
    from plotly.offline import get_plotlyjs

    from epoch_builder.regressions.architectures import family_of_id

    paths = ws.epoch()
    config = ws.load_epoch_config()
    interval = int(config.prediction_interval_minutes)
    starts = [int(c.get("test_ds_start") or 0) for _, c in selected]
    ends = [int(c.get("test_ds_end") or 0) for _, c in selected]
    price = load_price(ws, min(starts), max(ends))
    summary_rows = []
    for rank, cert in selected:
        backtest = _backtest(cert)
        model = cert.get("model", {})
        families = sorted({f for r in model.get("regressions", []) if (f := family_of_id(r.get("id", "")))})
        summary_rows.append([
            str(rank), f'<a href="#model-{rank}"><code>{html.escape(str(cert["id"]))}</code></a>',
            _cell(float(backtest.get("profit") or 0)), _cell(float(backtest["final_balance"])),
            f"{_cell(backtest.get('accuracy'))}%", _cell(len(backtest["positions"])),
            f"{_cell(float(backtest.get('max_drawdown') or 0))}%",
            f"{_cell(model.get('price_change_requirement'))} / {_cell(model.get('min_sum_function'))} / "
            f"{_cell(model.get('min_sum_adjustment_factor'))}",
            html.escape(",".join(families) or "-"),
            _cell(((cert.get("out_of_sample") or {}).get("out_of_sample") or {}).get("profit")),
            _cell((cert.get("deflated_sharpe") or {}).get("dsr"), 3),
        ])
    summary = _table(["#", "model", "profit", "final balance", "accuracy", "positions", "max drawdown",
                      "pcr / msf / msaf", "families", "oos profit", "DSR"], summary_rows, text_columns=(1, 7, 8))
    if luck:
        summary += f'<p class="luck">{html.escape(luck)}.</p>'
    title = (f"Epoch {config.id}: model {selected[0][1]['id']}" if len(selected) == 1
             else f"Epoch {config.id}: top {len(selected)} models")
    sections = "".join(_model_section(ws, paths, rank, cert, price, interval) for rank, cert in selected)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "".join([
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n",
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n',
        f"<h1>{html.escape(title)}</h1>\n",
        f'<p class="muted">From <code>{html.escape(str(paths.build_file))}</code> ({build_size} model(s), most '
        f"profitable first), generated {generated}. {interval}-minute prediction candles; times in UTC. The equity is "
        "the balance after each closed position; a successful position closes at its take-profit price, a failed one "
        "at its stop-loss price.</p>\n",
        summary, "\n", sections, "\n</body>\n</html>\n",
    ])


# --- the PNG -------------------------------------------------------------------------------------------

def write_equity_png(path: Path, selected: list[tuple[int, dict[str, Any]]], title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    from epoch_builder.storage import atomic_write_with

    figure = Figure(figsize=(10, 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for rank, cert in selected:
        times, balances = equity_series(cert)
        axes.step([utc(t) for t in times], balances, where="post", marker="o", markersize=3,
                  label=f"#{rank} {cert['id']} ({float(_backtest(cert)['final_balance']):,.2f})")
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.set_title(title, fontsize=11)
    axes.set_ylabel("balance (USDT)")
    axes.set_xlabel("close time (UTC)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    return atomic_write_with(path, lambda tmp: figure.savefig(tmp, format="png"))


# --- the command ----------------------------------------------------------------------------------------

def write_report(ws: Workspace, *, model_id: str | None = None, top: int | None = None,
                 out: str | Path | None = None, log: Callable[[str], None] = output.info) -> ReportFiles:
    """Write the HTML page (``out`` or ``<epoch>/reports/<model id | top-N>.html``) and the PNG beside it."""
    from epoch_builder.prediction.build import load_build, load_summary, luck_line, model_ids
    from epoch_builder.storage import atomic_write_text

    started = time.monotonic()
    target = check_out(out) if out is not None else None
    paths = ws.epoch()
    build = load_build(paths)
    selected = select_models(build, paths.build_file, model_id=model_id, top=top)
    for _, cert in selected:
        equity_series(cert)  # a damaged certificate fails here, before anything is written
    html_path = target or paths.report_file(default_name(model_id, top, str(selected[0][1]["id"])))
    png_path = html_path.with_suffix(".png")
    log(f"rendering {len(selected)} model(s) of {paths.build_file}")
    page = render_html(ws, selected, len(build), luck_line(load_summary(paths, model_ids(build))))
    atomic_write_text(html_path, page)
    title = (f"{paths.id}: equity of model {selected[0][1]['id']}" if len(selected) == 1
             else f"{paths.id}: equity of the top {len(selected)} models")
    write_equity_png(png_path, selected, title)
    log(f"report written in {time.monotonic() - started:.1f}s")
    return ReportFiles(html_path, png_path, [str(c["id"]) for _, c in selected])


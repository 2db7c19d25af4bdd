"""The fast engine against the per-candle oracle (tests/oracle.py), plus its numeric helpers."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from epoch_builder.discovery import build_discovery
from epoch_builder.errors import EpochBuilderError
from epoch_builder.numbers import alter, round_to
from epoch_builder.prediction import kernel as K
from epoch_builder.prediction.touch import first_touches
from epoch_builder.prediction.engine import (
    BacktestData,
    Evaluator,
    evaluate,
    evaluate_full,
    evaluate_many,
    max_drawdown,
)
from tests.oracle import oracle_simulate

START_MS = 1_650_000_000_000
POSITION_KEYS = ("t", "ot", "op", "tpp", "slp", "ct", "cp", "o", "b", "p")


# --- numeric helpers must be NumPy's, bit for bit ---------------------------------

def test_round_and_alter_match_numpy() -> None:
    rng = np.random.default_rng(7)
    sums = np.round(rng.uniform(-8, 8, 20_000), 6)
    prices = np.round(rng.uniform(50, 120_000, 20_000), 2)
    halfway = np.array([0.125, 0.375, -0.125, 2.675, 1.005, 0.285, -0.285, 1234.565, 0.5, 1.5, 2.5, -2.5])
    for value in np.concatenate([sums, prices, halfway]).tolist():
        assert K.round_scaled(value, 100.0) == round_to(value, 2)
        assert K.round_scaled(value, 1e6) == round_to(value, 6)
    for value in np.concatenate([sums[:5000], halfway]).tolist():
        for percent in (8.0, 4.0, -4.0, -8.0):
            assert K.alter2(value, percent) == alter(value, percent)
    for pcr in (0.5, 1.0, 3.0, 2.5):
        assert np.array_equal(np.round(prices * (1 + pcr / 100), 2), [alter(p, pcr) for p in prices.tolist()])
        assert np.array_equal(np.round(prices * (1 + -pcr / 100), 2), [alter(p, -pcr) for p in prices.tolist()])


def test_mean_and_median_match_numpy() -> None:
    rng = np.random.default_rng(3)
    for size in list(range(1, 140)) + [255, 256, 257, 1000, 4097, 8193, 20_001]:
        values = np.round(rng.normal(0, 2, size), 6)
        assert K.numpy_mean(values, size) == np.mean(values), size
        assert K.numpy_median(values.copy(), size) == np.median(values), size
        ties = rng.choice(np.array([-1.0, -0.5, 0.0, 0.25, 0.5]), size)
        assert K.numpy_median(ties.copy(), size) == np.median(ties), size
        ordered = np.sort(values)
        assert K.numpy_median(ordered.copy(), size) == np.median(values), size
        assert K.numpy_median(ordered[::-1].copy(), size) == np.median(values), size


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1, 1e6, allow_nan=False), max_size=30))
def test_max_drawdown_equals_brute_force(balances: list[float]) -> None:
    from epoch_builder.numbers import pct_change

    pairs = [pct_change(balances[i], min(balances[i + 1:])) for i in range(len(balances) - 1)]
    assert max_drawdown(balances) == min([0.0, *pairs])


def test_max_drawdown() -> None:
    assert max_drawdown([100.0]) == 0.0
    assert max_drawdown([100.0, 120.0, 130.0]) == 0.0
    # from 120 to the lowest later balance 90: -25%
    assert max_drawdown([100.0, 120.0, 95.0, 110.0, 90.0, 200.0]) == -25.0


# --- random data ----------------------------------------------------------------------

def random_data(seed: int, params: dict[str, Any]) -> tuple[BacktestData, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    n = params["candles"]
    steps = rng.choice([1, 1, 1, 2], n) if params["gaps"] else np.ones(n, dtype=np.int64)
    ot = START_MS + np.cumsum(steps) * 60_000
    vol = params["volatility"]
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.exponential(vol, n))
    low = np.minimum(open_, close) * (1 - rng.exponential(vol, n))
    candles = {"ot": ot, "ct": ot + 59_999, "o": np.round(open_, 2), "h": np.round(high, 2), "l": np.round(low, 2)}
    # lookback index: non-decreasing, mostly +1 every `per` candles, sometimes skipping a window
    per = params["per"]
    increments = np.zeros(n, dtype=np.int64)
    increments[per::per] = 1
    if params["skip_windows"]:
        increments[per::per] += rng.choice([0, 0, 1], increments[per::per].size)
    k = np.cumsum(increments) + params["k_start"]
    n_features = max(1, int(k[-1]) + 1 - params["features_short"])
    grid = params["grid"]
    features = {}
    for i in range(params["regressions"]):
        walk = np.cumsum(rng.normal(0, 0.2, n_features)).clip(-1, 1)
        features[f"R{i}"] = np.round(walk * grid) / grid if grid else np.round(walk, 6)
    n_labels = max(0, n_features + params["labels_delta"])
    labels = {float(p): rng.choice(np.array([1, -1], dtype=np.int8), n_labels) for p in (0.5, 1, 3)}
    data = BacktestData.from_arrays(
        **candles, k=k, features=features, labels=labels, position_size=params["position_size"],
        leverage=params["leverage"], exchange_fee=params["fee"], idle_minutes=params["idle"],
    )
    return data, candles


def run_oracle(data: BacktestData, candles: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    return oracle_simulate(candles, data.k, data.features, data.labels, config, data.position_size, data.leverage,
                           data.exchange_fee, data.idle_minutes)


def assert_same(data: BacktestData, candles: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    expected = run_oracle(data, candles, config)
    fast = evaluate(data, config)
    full = evaluate_full(data, config)
    bt = full["backtest"]
    assert fast.min_increase_sum == expected["min_increase_sum"] == full["min_increase_sum"]
    assert fast.min_decrease_sum == expected["min_decrease_sum"] == full["min_decrease_sum"]
    assert [{key: p[key] for key in POSITION_KEYS} for p in bt["positions"]] == expected["positions"]
    assert bt["balance_history"] == expected["balance_history"]
    assert fast.final_balance == bt["final_balance"] == expected["final_balance"]
    assert fast.fees == bt["fees"] == expected["fees"]
    assert fast.profit == expected["profit"]
    assert (fast.longs, fast.shorts) == (expected["increase_num"], expected["decrease_num"])
    assert fast.positions == len(expected["positions"])
    assert fast.accuracy == bt["accuracy"] == expected["accuracy"]
    assert fast.increase_accuracy == expected["increase_accuracy"]
    assert fast.decrease_accuracy == expected["decrease_accuracy"]
    assert fast.profitable == (expected["accuracy"] >= 55 and expected["profit"] > 0)
    sums = [sum(float(data.features[r][i]) for r in config["ri"]) for i in range(data.n_features)]
    labels = data.labels[float(config["pcr"])]
    assert full["discovery"] == build_discovery(sums, labels)
    assert fast.discovery_increase_num == full["discovery"]["increase_num"]
    assert fast.discovery_accuracy == full["discovery"]["accuracy"]
    return expected


params_strategy = st.fixed_dictionaries({
    "candles": st.one_of(st.integers(0, 700), st.integers(700, 4000)),
    "per": st.integers(1, 8),
    "gaps": st.booleans(),
    "volatility": st.sampled_from([0.001, 0.004, 0.02]),
    "skip_windows": st.booleans(),
    "k_start": st.integers(0, 3),
    "features_short": st.integers(0, 6),
    "labels_delta": st.integers(-8, 3),
    "grid": st.sampled_from([0, 2, 4]),  # 0: continuous features; else quantised (ties, zero sums)
    "regressions": st.integers(1, 5),
    "position_size": st.sampled_from([100.0, 1000.0, 10_000.0]),
    "leverage": st.integers(1, 10),
    "fee": st.sampled_from([0.02, 0.065, 0.2]),
    "idle": st.sampled_from([0, 1, 5, 180]),
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    params=params_strategy,
    pcr=st.sampled_from([0.5, 1, 3]),
    msf=st.sampled_from(["mean", "median"]),
    msaf=st.sampled_from([0, 0.5, 1, 1.5, 2]),
    pick=st.integers(1, 5),
)
def test_engine_equals_oracle_on_random_data(seed: int, params: dict[str, Any], pcr: float, msf: str,
                                             msaf: float, pick: int) -> None:
    assume(params["candles"] > 0)
    data, candles = random_data(seed, params)
    ids = data.regression_ids[:pick]
    assert_same(data, candles, {"pcr": pcr, "msf": msf, "msaf": msaf, "ri": ids})


def test_random_data_produces_positions_of_every_kind() -> None:
    """Guard against a vacuous parity test: the generator yields longs, shorts, wins, losses, stops."""
    seen = {"long": 0, "short": 0, "win": 0, "loss": 0, "balance_stop": 0}
    for seed in range(40):
        data, candles = random_data(seed, {
            "candles": 2000, "per": 5, "gaps": seed % 2 == 0, "volatility": 0.004, "skip_windows": False,
            "k_start": 0, "features_short": 0, "labels_delta": 0, "grid": 0, "regressions": 4,
            "position_size": 1000.0, "leverage": 1 + seed % 10, "fee": 0.065, "idle": seed % 3,
        })
        config = {"pcr": 1, "msf": "mean" if seed % 2 else "median", "msaf": 0.5, "ri": data.regression_ids}
        expected = assert_same(data, candles, config)
        for p in expected["positions"]:
            seen["long" if p["t"] == 1 else "short"] += 1
            seen["win" if p["o"] else "loss"] += 1
        seen["balance_stop"] += expected["final_balance"] < data.position_size
    assert all(count > 0 for count in seen.values()), seen


def test_evaluate_many_keeps_order_and_equals_evaluate() -> None:
    data, _ = random_data(11, {
        "candles": 3000, "per": 4, "gaps": False, "volatility": 0.004, "skip_windows": False, "k_start": 0,
        "features_short": 0, "labels_delta": 0, "grid": 0, "regressions": 5, "position_size": 1000.0,
        "leverage": 3, "fee": 0.065, "idle": 5,
    })
    rng = np.random.default_rng(0)
    configs = [{"pcr": float(rng.choice([0.5, 1, 3])), "msf": str(rng.choice(["mean", "median"])),
                "msaf": float(rng.choice([1, 1.5, 2])),
                "ri": list(rng.choice(data.regression_ids, int(rng.integers(1, 6)), replace=False))}
               for _ in range(300)]
    many = list(evaluate_many(data, configs, workers=2, chunk_size=37))
    assert [i for i, _ in many] == list(range(len(configs)))
    assert [e for _, e in many] == [evaluate(data, c) for c in configs]
    assert [e for _, e in evaluate_many(data, configs, workers=1)] == [e for _, e in many]
    with Evaluator(data, workers=2) as evaluator:  # one pool, reused across chunks
        first = [e for _, e in evaluator.evaluate(configs[:150], chunk_size=16)]
        second = [e for _, e in evaluator.evaluate(configs[150:])]
        with pytest.raises(EpochBuilderError, match="config #1: msf 'mode'"):
            list(evaluator.evaluate([configs[0], {**configs[0], "msf": "mode"}]))
        assert first + second == [e for _, e in many]


def test_feature_sums_add_left_to_right_in_config_order() -> None:
    # 0.1 + 0.2 + 0.3 differs from 0.3 + 0.2 + 0.1 in floating point; the order is the config's
    data = BacktestData.from_arrays(
        ot=[START_MS], ct=[START_MS + 59_999], o=[1.0], h=[1.0], l=[1.0], k=[0],
        features={"a": [0.1], "b": [0.2], "c": [0.3]}, labels={1: [1]},
        position_size=100, leverage=1, exchange_fee=0.065, idle_minutes=0)
    forward = evaluate_full(data, {"pcr": 1, "msf": "mean", "msaf": 1, "ri": ["a", "b", "c"]})
    backward = evaluate_full(data, {"pcr": 1, "msf": "mean", "msaf": 1, "ri": ["c", "b", "a"]})
    assert forward["discovery"]["increase_list"] == [0.1 + 0.2 + 0.3]
    assert backward["discovery"]["increase_list"] == [0.3 + 0.2 + 0.1]


@pytest.mark.parametrize("config, message", [
    ({"pcr": 2, "msf": "mean", "msaf": 1, "ri": ["R0"]}, "pcr 2 has no labels"),
    ({"pcr": 1, "msf": "mode", "msaf": 1, "ri": ["R0"]}, "msf 'mode' is not one of mean, median"),
    ({"pcr": 1, "msf": "mean", "msaf": 1, "ri": ["nope"]}, "regression 'nope' has no features"),
    ({"pcr": 1, "msf": "mean", "msaf": 1, "ri": []}, "ri must be a non-empty list"),
    ({"pcr": 1, "msf": "mean", "ri": ["R0"]}, "missing key(s) msaf"),
    ({"pcr": "x", "msf": "mean", "msaf": 1, "ri": ["R0"]}, "pcr and msaf must be numbers"),
])
def test_bad_configs_are_named(config: dict[str, Any], message: str) -> None:
    data, _ = random_data(1, {
        "candles": 50, "per": 4, "gaps": False, "volatility": 0.004, "skip_windows": False, "k_start": 0,
        "features_short": 0, "labels_delta": 0, "grid": 0, "regressions": 1, "position_size": 1000.0,
        "leverage": 3, "fee": 0.065, "idle": 5,
    })
    with pytest.raises(EpochBuilderError, match="config #0: " + re.escape(message)):
        evaluate(data, config)


def test_bad_data_is_named() -> None:
    with pytest.raises(EpochBuilderError, match="labels\\[1.0\\] must hold only 1 and -1"):
        BacktestData.from_arrays(ot=[1], ct=[2], o=[1.0], h=[1.0], l=[1.0], k=[0], features={"a": [0.0]},
                                 labels={1: [0]}, position_size=100, leverage=1, exchange_fee=0.1, idle_minutes=0)
    with pytest.raises(EpochBuilderError, match="k has 2 rows, ot has 1"):
        BacktestData.from_arrays(ot=[1], ct=[2], o=[1.0], h=[1.0], l=[1.0], k=[0, 1], features={"a": [0.0]},
                                 labels={1: [1]}, position_size=100, leverage=1, exchange_fee=0.1, idle_minutes=0)


def first_exits(high: np.ndarray, low: np.ndarray, upper: np.ndarray, lower: np.ndarray, end: int) -> np.ndarray:
    """The backtest's exit query: per entry candle j < end, the first later candle before end
    touching either price (as BacktestData.tables asks it)."""
    return first_touches(high, low, np.arange(1, end + 1, dtype=np.int64), upper, lower, end)


@pytest.mark.parametrize("end_cut", [0, 1, 37, 64])
def test_first_exits_equal_a_plain_scan(end_cut: int) -> None:
    rng = np.random.default_rng(end_cut)
    n = 5000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    high = np.round(close * (1 + rng.exponential(0.002, n)), 2)
    low = np.round(close * (1 - rng.exponential(0.002, n)), 2)
    upper, lower = np.round(close * 1.01, 2), np.round(close * 0.99, 2)
    end = n - end_cut
    exits = first_exits(high, low, upper, lower, end)
    for j in range(end):
        expected = next((t for t in range(j + 1, end) if high[t] >= upper[j] or low[t] <= lower[j]), end)
        assert exits[j] == expected, j


def test_first_exits_across_super_blocks() -> None:
    """Long flat stretches put exits tens of thousands of candles away (both skip levels)."""
    rng = np.random.default_rng(5)
    n = 30_000
    close = np.full(n, 100.0)
    for start, factor in ((700, 1.03), (9_500, 0.97), (22_000, 1.03), (23_000, 0.97)):  # rare jumps
        close[start:] *= factor
    close += rng.normal(0, 0.05, n)
    high, low = np.round(close + 0.05, 2), np.round(close - 0.05, 2)
    upper, lower = np.round(close * 1.02, 2), np.round(close * 0.98, 2)
    end = n - 17
    exits = first_exits(high, low, upper, lower, end)
    for j in range(0, end, 7):
        hits = np.flatnonzero((high[j + 1:end] >= upper[j]) | (low[j + 1:end] <= lower[j]))
        assert exits[j] == (j + 1 + hits[0] if hits.size else end), j
    assert (exits - np.arange(end)).max() > 2 * 64 * 64  # spans whole super-blocks


def test_trend_runs_give_the_literal_signal() -> None:
    """signal_from_runs (the scan's form) equals the §7.4 rule written out (signal_at)."""
    rng = np.random.default_rng(9)
    for grid in (0, 4):
        sums = np.cumsum(rng.normal(0, 0.3, 3000))
        sums = np.round(sums * grid) / grid if grid else np.round(sums, 6)
        for min_inc, min_dec in ((0.0, 0.0), (0.5, -0.5), (2.0, -2.0)):
            decisions = set()
            for index in range(6, sums.size):
                up, down = K.runs_at(sums, index)
                expected = K.signal_at(sums, index, min_inc, min_dec)
                got = K.signal_from_runs(sums, index, up, down, min_inc, min_dec) if max(up, down) >= 3 else 0
                assert got == expected, (index, min_inc)
                decisions.add(expected)
            assert decisions == {-1, 0, 1}


def test_workers_die_with_a_killed_parent(tmp_path) -> None:
    """kill -9 of a sweep must not leave its pool workers running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "sweep.py"
    script.write_text(
        "import sys, time\n"
        "from tests.test_engine import random_data\n"
        "from epoch_builder.prediction.engine import Evaluator\n"
        "data, _ = random_data(3, {'candles': 4000, 'per': 4, 'gaps': False, 'volatility': 0.004,\n"
        "    'skip_windows': False, 'k_start': 0, 'features_short': 0, 'labels_delta': 0, 'grid': 0,\n"
        "    'regressions': 4, 'position_size': 1000.0, 'leverage': 3, 'fee': 0.065, 'idle': 5})\n"
        "config = {'pcr': 1, 'msf': 'mean', 'msaf': 1, 'ri': data.regression_ids}\n"
        "with Evaluator(data, 2) as evaluator:\n"
        "    print(' '.join(str(p.pid) for p in evaluator._pool._pool), flush=True)\n"
        "    while True:\n"
        "        for _ in evaluator.evaluate([config] * 2000):\n"
        "            pass\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=root,
                             env={**os.environ, "PYTHONPATH": root})
    try:
        workers = [int(pid) for pid in child.stdout.readline().split()]
        assert len(workers) == 2
        time.sleep(0.5)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.monotonic() + 10
        alive = workers
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in workers if _running(pid)]
            time.sleep(0.1)
        assert not alive, f"workers still running: {alive}"
    finally:
        if child.poll() is None:
            child.kill()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False

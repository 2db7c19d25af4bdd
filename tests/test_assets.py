"""Prediction-model assets (SEMANTICS §5) and configuration batches (§6)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from epoch_builder.errors import EpochBuilderError
from epoch_builder.numbers import alter
from epoch_builder.prediction.assets import compute_labels, load_test_range, range_indexer, range_labels
from epoch_builder.prediction.configs import Grid, load_batch, write_batches
from epoch_builder.workspace import Workspace
from tests.oracle import oracle_labels


@pytest.mark.parametrize("pcr", [0.5, 1, 3])
def test_labels_equal_a_plain_scan_on_the_real_sample(small_epoch: Workspace, pcr: float) -> None:
    rng = load_test_range(small_epoch)
    lb = rng.lookback
    expected = oracle_labels(rng.one["ot"].tolist(), rng.one["h"].tolist(), rng.one["l"].tolist(),
                            rng.test_ot[lb:].tolist(), rng.test_o[lb:].tolist(), pcr)
    got = range_labels(rng, pcr)
    assert got.dtype == np.int8
    assert got.tolist() == expected
    assert len(expected) > 50 and {1, -1} <= set(expected)


def test_labels_on_random_candles_with_ties_and_unresolved_tail() -> None:
    rng = np.random.default_rng(7)
    for trial in range(30):
        n = int(rng.integers(1, 400))
        ot = np.arange(n, dtype=np.int64) * 60_000
        close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.004, n))), 2)
        high = np.round(close * (1 + rng.exponential(0.002, n)), 2)
        low = np.round(close * (1 - rng.exponential(0.002, n)), 2)
        pred_idx = np.arange(0, n, int(rng.integers(1, 40)))
        pred_o = close[pred_idx]
        pcr = float(rng.choice([0.1, 0.5, 1.0]))
        got = compute_labels(ot, high, low, ot[pred_idx], pred_o, pcr)
        assert got.tolist() == oracle_labels(ot.tolist(), high.tolist(), low.tolist(), ot[pred_idx].tolist(),
                                            pred_o.tolist(), pcr), trial


def test_indexer_maps_each_candle_to_its_window(small_epoch: Workspace) -> None:
    rng = load_test_range(small_epoch)
    k = range_indexer(rng)
    assert rng.one["ot"][0] == rng.test_ot[rng.lookback] and k[0] == 0
    for j in range(0, len(k), 53):
        last = max(i for i in range(len(rng.test_ot)) if rng.test_ot[i] <= rng.one["ot"][j])
        assert k[j] == last - rng.lookback


def test_labels_resolved_before_t_do_not_depend_on_later_candles(small_epoch: Workspace) -> None:
    """Research integrity: changing candles after t changes no label whose outcome resolved before t."""
    rng = load_test_range(small_epoch)
    lb = rng.lookback
    one = rng.one
    before = compute_labels(one["ot"], one["h"], one["l"], rng.test_ot[lb:], rng.test_o[lb:], 1.0)
    t_index = len(one["ot"]) // 2
    h, l = one["h"].copy(), one["l"].copy()
    noise = np.random.default_rng(3).uniform(0.95, 1.05, len(h) - t_index)
    h[t_index:] = np.round(h[t_index:] * noise * 1.02, 2)
    l[t_index:] = np.round(l[t_index:] * noise * 0.98, 2)
    after = compute_labels(one["ot"], h, l, rng.test_ot[lb:], rng.test_o[lb:], 1.0)
    # a label resolved before t: its deciding candle lies before t_index
    resolved = [i for i, pred_ot in enumerate(rng.test_ot[lb:lb + len(before)])
                if _deciding_candle(one, pred_ot, rng.test_o[lb + i], 1.0) < t_index]
    assert len(resolved) > 20
    assert all(after[i] == before[i] for i in resolved)
    assert not np.array_equal(before, after[: len(before)]) or len(before) != len(after)


def _deciding_candle(one, pred_ot, pred_o, pcr) -> int:
    up, down = alter(float(pred_o), pcr), alter(float(pred_o), -pcr)
    for j in range(int(np.searchsorted(one["ot"], pred_ot, side="right")), len(one["ot"])):
        if one["h"][j] >= up or one["l"][j] <= down:
            return j
    return len(one["ot"])


# --- configuration batches -----------------------------------------------------------------


def test_batches_hold_every_combination_once_shuffled_by_seed(small_epoch: Workspace) -> None:
    paths = small_epoch.epoch()
    ids = tuple(f"R{i}" for i in range(7))
    grid = Grid(ids, pcrs=(1.0, 2.5), msfs=("mean", "median"), msafs=(1.0, 1.5), per_model=3)
    written = write_batches(paths, grid, seed=11, batch_size=100, log=lambda *_: None)
    assert [p.name for p in written] == [f"{paths.id}_{n}_3.json" for n in (1, 2, 3)]
    configs = [c for p in written for c in load_batch(p, ids, [1.0, 2.5])]
    assert len(configs) == grid.total == 2 * 2 * 2 * math.comb(7, 3)
    keys = {(c["pcr"], c["msf"], c["msaf"], tuple(c["ri"])) for c in configs}
    expected = {(p, m, a, ri) for p, m, a, ri in itertools.product((1, 2.5), ("mean", "median"), (1, 1.5),
                                                                   itertools.combinations(ids, 3))}
    assert keys == expected
    assert isinstance(configs[0]["pcr"], (int, float)) and json.dumps(1) in json.dumps(configs)
    # same seed, same order; another seed, another order
    again = write_batches(paths, grid, seed=11, batch_size=100, log=lambda *_: None)
    assert [c for p in again for c in load_batch(p, ids, [1.0, 2.5])] == configs
    other = write_batches(paths, grid, seed=12, batch_size=1000, log=lambda *_: None)
    assert len(other) == 1
    assert load_batch(other[0], ids, [1.0, 2.5]) != configs
    assert not (paths.configs_dir / f"{paths.id}_1_3.json").exists()  # stale batches removed
    receipt = (paths.configs_dir / "configs_receipt.txt").read_text()
    assert "280" in receipt and "seed 12" in receipt


@pytest.mark.parametrize("grid_args, message", [
    ({"per_model": 9}, "regressions-per-model=9"),
    ({"pcrs": (0.0,)}, "pcr"),
    ({"msfs": ("mode",)}, "msf"),
    ({"msafs": ()}, "msaf"),
])
def test_bad_grid_parameters_are_named(grid_args, message: str) -> None:
    with pytest.raises(EpochBuilderError, match=message):
        Grid(tuple(f"R{i}" for i in range(8)), **grid_args)


@pytest.mark.parametrize("content, message", [
    ('{"pcr": 1}', "expected a JSON list"),
    ('[{"pcr": 1, "msf": "mean", "msaf": 1, "ri": ["R0"]}, {"pcr": 1, "msf": "mean", "ri": ["R0"]}]',
     "entry 1: missing key\\(s\\) msaf"),
    ('[{"pcr": 7, "msf": "mean", "msaf": 1, "ri": ["R0"]}]', "entry 0: pcr 7 has no labels; allowed: 1"),
    ('[{"pcr": 1, "msf": "mode", "msaf": 1, "ri": ["R0"]}]', "entry 0: msf 'mode'"),
    ('[{"pcr": 1, "msf": "mean", "msaf": 1, "ri": ["R9"]}]', "entry 0: regression 'R9' is not in the assets"),
    ('[{"pcr": 1, "msf": "mean", "msaf": 1, "ri": []}]', "entry 0: ri must be a non-empty list"),
    ('[{"pcr": 1, "msf": "mean", "msaf": "x", "ri": ["R0"]}]', "entry 0: msaf 'x'"),
    ('[{"pcr": 1, "msf"', "invalid JSON"),
])
def test_malformed_batch_files_name_file_and_entry(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "_E_1_1.json"
    path.write_text(content)
    with pytest.raises(EpochBuilderError, match=message) as info:
        load_batch(path, ["R0", "R1"], [1.0])
    assert str(path) in str(info.value)


def test_damaged_assets_are_refused_naming_the_file(small_epoch: Workspace) -> None:
    """features.json / labels.json cut short, or a truncated lookback_indexer.parquet: one line naming the
    file and what to do, never a changed backtest or a pyarrow traceback."""
    import json

    from epoch_builder.errors import EpochBuilderError
    from epoch_builder.prediction.assets import load_backtest_data, write_assets

    rng = np.random.default_rng(5)

    def feature_of(rid: str, close: np.ndarray) -> np.ndarray:
        from epoch_builder.prediction.assets import load_test_range

        return np.round(rng.uniform(-1, 1, load_test_range(small_epoch).n_windows), 6)

    write_assets(small_epoch, ["R1", "R2"], [1.0, 3.0], feature_of, log=lambda *_: None)
    assets = small_epoch.epoch().assets_dir
    load_backtest_data(small_epoch)  # whole: loads
    pristine = {name: (assets / name).read_bytes() for name in ("features.json", "labels.json",
                                                                "lookback_indexer.parquet")}

    def refused(name: str, data: bytes, match: str) -> None:
        (assets / name).write_bytes(data)
        with pytest.raises(EpochBuilderError, match=match) as error:
            load_backtest_data(small_epoch)
        assert "\n" not in str(error.value)
        (assets / name).write_bytes(pristine[name])

    labels = json.loads(pristine["labels.json"])
    refused("labels.json", json.dumps({**labels, "1": labels["1"][:10]}).encode(),
            r"labels.json: pcr 1 has 10 labels, assets.json says \d+; rerun initialize-prediction-models --force")
    features = json.loads(pristine["features.json"])
    refused("features.json", json.dumps({"R1": features["R1"][:-1], "R2": features["R2"]}).encode(),
            r"features.json: regression R1 has \d+ features, assets.json says")
    refused("features.json", json.dumps({"R2": features["R2"], "R1": features["R1"]}).encode(),
            "features.json: regressions differ from assets.json's")
    indexer = pristine["lookback_indexer.parquet"]
    refused("lookback_indexer.parquet", indexer[: len(indexer) // 2],
            "lookback_indexer.parquet: cannot read the lookback indexer")
    refused("lookback_indexer.parquet", b"garbage" * 10, "lookback_indexer.parquet: cannot read the lookback indexer")

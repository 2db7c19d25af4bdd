"""Run an Epoch File the way the trading platform's prediction service does, in its own runtime
(Python 3.10, TensorFlow 2.10, h5py 3.6, NumPy 1.21, pandas 1.3: .venv-tf210).

Our own restatement of the platform's steps (docs/platform.md), not its code:

* a regression: open ``<id>.h5`` with h5py, read the attributes ``id``, ``description``,
  ``lookback``, ``predictions``, load the model with TensorFlow's legacy
  ``load_model_from_hdf5`` on the open file, predict one window with ``predict_on_batch``;
* a live feature: from raw prediction-candle closes, a pandas rolling mean of
  ``sma_window_size``, NaN rows dropped, exactly ``regression_lookback`` rows required;
  refused when the SMA reaches ``highest_price_sma`` or ``lowest_price_sma``; scaled
  with those two; the feature from the last input value and the last prediction
  (percentage change rounded to 2 decimals, |change| clipped to [0.01, 1], scaled to
  [-1, 1], 6 decimals).

Usage (JSON in, JSON out):
    platform_runtime.py load JOB.json OUT.json       {"models": [{"path", "inputs" (.npy)}]}
    platform_runtime.py features JOB.json OUT.json   {"dir" (unzipped Epoch File), "closes" (.npy),
                                                      "windows": [[start, end], ...] (close rows)}
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tensorflow.python.keras.saving.hdf5_format import load_model_from_hdf5  # noqa: E402

MIN_FEATURE = 0.01
MAX_FEATURE = 1.0


def open_regression(path):
    with h5py.File(path, mode="r") as f:
        attrs = {key: f.attrs[key] for key in ("id", "description", "lookback", "predictions")}
        model = load_model_from_hdf5(f)
    return attrs, model


def percentage_change(old, new):
    if old == 0:
        return 0
    change = 0.0
    if new > old:
        change = (new - old) / old * 100
    elif old > new:
        change = -((old - new) / old * 100)
    return round(change if change >= -100 else -100, 2)


def feature_of(change):
    if MIN_FEATURE <= change <= MAX_FEATURE:
        adjusted = change
    elif change > MAX_FEATURE:
        adjusted = MAX_FEATURE
    elif -MAX_FEATURE <= change <= -MIN_FEATURE:
        adjusted = change
    elif change < -MAX_FEATURE:
        adjusted = -MAX_FEATURE
    else:
        adjusted = 0
    scale = lambda v: round((v - MIN_FEATURE) / (MAX_FEATURE - MIN_FEATURE), 6)  # noqa: E731
    if adjusted > 0:
        return scale(adjusted)
    if adjusted < 0:
        return -scale(-adjusted)
    return 0


def load(job):
    results = []
    for entry in job["models"]:
        attrs, model = open_regression(entry["path"])
        inputs = np.load(entry["inputs"]).astype(np.float64)
        predictions = np.asarray(model.predict_on_batch(inputs))
        out = entry["path"] + ".tf210.npy"
        np.save(out, predictions)
        results.append({
            "path": entry["path"], "predictions": out, "model_class": type(model).__name__,
            "layers": [type(layer).__name__ for layer in model.layers],
            "attrs": {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()},
            "attr_types": {k: type(v).__name__ for k, v in attrs.items()},
        })
    return {"models": results}


def features(job):
    directory = job["dir"]
    with open(os.path.join(directory, "epoch.json")) as fh:
        epoch = json.load(fh)
    with open(os.path.join(directory, "prediction_model_certificate.json")) as fh:
        certificate = json.load(fh)
    regressions = []
    for regression in certificate["model"]["regressions"]:
        attrs, model = open_regression(os.path.join(directory, regression["id"] + ".h5"))
        if attrs["id"] != regression["id"] or not isinstance(attrs["description"], str):
            raise SystemExit(f"{regression['id']}.h5: id or description attribute is wrong: {attrs}")
        regressions.append((attrs["id"], model))
    closes = np.load(job["closes"])
    high, low = epoch["highest_price_sma"], epoch["lowest_price_sma"]
    out = {rid: [] for rid, _ in regressions}
    refused = []
    for start, end in job["windows"]:
        frame = pd.DataFrame({"c": closes[start:end].tolist()})
        frame["c"] = frame["c"].rolling(epoch["sma_window_size"]).mean()
        frame.dropna(inplace=True)
        if frame.shape[0] != epoch["regression_lookback"]:
            raise SystemExit(f"window {start}..{end}: {frame.shape[0]} SMA rows, lookback {epoch['regression_lookback']}")
        if frame["c"].max() >= high or frame["c"].min() <= low:
            refused.append([start, end])
            for rid, _ in regressions:
                out[rid].append(None)
            continue
        frame["c"] = frame["c"].apply(lambda x: (x - low) / (high - low))
        ds = np.array([frame["c"]])
        for rid, model in regressions:
            prediction = np.asarray(model.predict_on_batch(ds)).tolist()[0]
            out[rid].append(feature_of(percentage_change(ds[0, -1], prediction[-1])))
    return {"features": out, "refused": refused}


def main(argv):
    command, job_file, out_file = argv[1:4]
    with open(job_file) as fh:
        job = json.load(fh)
    result = {"load": load, "features": features}[command](job)
    with open(out_file, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(sys.argv)

"""Test oracle: a plain per-candle simulator of SEMANTICS §7, written straight from the text.

Deliberately slow and literal — one Python loop over every 1-minute candle, no
jumps, no precomputation — so the fast engine can be checked against it.
Shares only the §-notation helpers (``alter``, ``round_to``) with the project.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from epoch_builder.numbers import alter, round_to


def oracle_min_sums(features_sum: list[float], labels: Sequence[int], msf: str, msaf: float) -> tuple[float, float]:
    """§7.2-7.3: min sums from the successful increase / decrease sums."""
    successful_increase: list[float] = []
    successful_decrease: list[float] = []
    for i in range(min(len(features_sum), len(labels))):
        if features_sum[i] > 0 and labels[i] == 1:
            successful_increase.append(features_sum[i])
        elif features_sum[i] < 0 and labels[i] == -1:
            successful_decrease.append(features_sum[i])

    def stat(values: list[float]) -> float:
        if not values:
            return 0.0
        return float(np.mean(values) if msf == "mean" else np.median(values))

    return round_to(stat(successful_increase) * msaf, 6), round_to(stat(successful_decrease) * msaf, 6)


def oracle_intensity(s0: float, s5: float) -> int:
    if s0 > 0 and s5 > s0:
        return 2 if s5 >= alter(s0, 8) else (1 if s5 >= alter(s0, 4) else 0)
    if s0 > 0 and s5 < s0:
        return -2 if s5 <= alter(s0, -8) else (-1 if s5 <= alter(s0, -4) else 0)
    if s0 < 0 and s5 < s0:
        return -2 if s5 <= alter(s0, 8) else (-1 if s5 <= alter(s0, 4) else 0)
    if s0 < 0 and s5 > s0:
        return 2 if s5 >= alter(s0, -8) else (1 if s5 >= alter(s0, -4) else 0)
    return 0


def oracle_signal(s: list[float], min_inc: float, min_dec: float) -> int:
    s0, s1, s2, s3, s4, s5 = s
    increasing = s5 > s4 > s3 > s2
    strongly_increasing = increasing and s2 > s1 > s0
    decreasing = s5 < s4 < s3 < s2
    strongly_decreasing = decreasing and s2 < s1 < s0
    intensity = oracle_intensity(s0, s5)
    if (s5 >= min_inc and increasing and intensity >= 1) or (s5 <= min_dec and strongly_increasing and intensity >= 2):
        return 1
    if (s5 <= min_dec and decreasing and intensity <= -1) or (s5 >= min_inc and strongly_decreasing and intensity <= -2):
        return -1
    return 0


def oracle_simulate(
    candles: dict[str, Sequence[Any]],
    k: Sequence[int],
    features: dict[str, Sequence[float]],
    labels: dict[float, Sequence[int]],
    config: dict[str, Any],
    position_size: float,
    leverage: float,
    exchange_fee: float,
    idle_minutes: int,
) -> dict[str, Any]:
    """Evaluate one configuration candle by candle; returns the backtest essentials."""
    pcr = float(config["pcr"])
    ids = list(config["ri"])
    n_features = len(features[ids[0]])
    features_sum = []
    for i in range(n_features):
        total = 0.0
        for rid in ids:
            total += float(features[rid][i])
        features_sum.append(total)
    min_inc, min_dec = oracle_min_sums(features_sum, labels[pcr], config["msf"], float(config["msaf"]))

    balance = round_to(position_size * 1.5, 2)
    initial = balance
    equity = round_to(position_size * leverage, 2)
    open_fee = equity / 100 * exchange_fee
    gross_profit = alter(equity, pcr) - equity
    gross_loss = equity - alter(equity, -pcr)
    fee_success = open_fee + alter(equity, pcr) / 100 * exchange_fee
    fee_failure = open_fee + alter(equity, -pcr) / 100 * exchange_fee
    net_profit = gross_profit - fee_success
    net_loss = gross_loss + fee_failure

    fees = 0.0
    positions: list[dict[str, Any]] = []
    balances = [balance]
    active: dict[str, Any] | None = None
    idle_until = 0
    for j in range(len(k)):
        index = int(k[j])
        if not (index < n_features and balance >= position_size):
            break
        ot, ct = int(candles["ot"][j]), int(candles["ct"][j])
        o, h, l = float(candles["o"][j]), float(candles["h"][j]), float(candles["l"][j])
        if active is not None:
            outcome = None
            if active["t"] == 1:
                if l <= active["slp"]:
                    outcome, price = False, active["slp"]
                elif h >= active["tpp"]:
                    outcome, price = True, active["tpp"]
            else:
                if h >= active["slp"]:
                    outcome, price = False, active["slp"]
                elif l <= active["tpp"]:
                    outcome, price = True, active["tpp"]
            if outcome is not None:
                if outcome:
                    balance += net_profit
                    fees += fee_success
                else:
                    balance -= net_loss
                    fees += fee_failure
                active.update(ct=ct, cp=price, o=outcome, b=balance)
                positions.append(active)
                balances.append(balance)
                active = None
                idle_until = ct + idle_minutes * 60_000
        elif ot >= idle_until and index > 5:
            sums = features_sum[index - 5 : index + 1]
            signal = oracle_signal(sums, min_inc, min_dec)
            if signal != 0:
                up, down = alter(o, pcr), alter(o, -pcr)
                active = {
                    "t": signal,
                    "ot": ot,
                    "op": o,
                    "tpp": up if signal == 1 else down,
                    "slp": down if signal == 1 else up,
                    "p": {"r": signal, "t": ot, "s": list(sums), "f": [float(features[rid][index]) for rid in ids]},
                }

    longs = [p for p in positions if p["t"] == 1]
    shorts = [p for p in positions if p["t"] == -1]
    ok_longs = sum(1 for p in longs if p["o"])
    ok_shorts = sum(1 for p in shorts if p["o"])

    def pct(part: int, total: int) -> float:
        return round_to(part * 100 / total, 2) if total else 0.0

    return {
        "min_increase_sum": min_inc,
        "min_decrease_sum": min_dec,
        "initial_balance": initial,
        "final_balance": balance,
        "profit": balance - initial,
        "fees": fees,
        "positions": positions,
        "balance_history": balances,
        "increase_num": len(longs),
        "decrease_num": len(shorts),
        "increase_accuracy": pct(ok_longs, len(longs)),
        "decrease_accuracy": pct(ok_shorts, len(shorts)),
        "accuracy": pct(ok_longs + ok_shorts, len(positions)),
    }


def oracle_labels(one_ot: Sequence[int], one_h: Sequence[float], one_l: Sequence[float], pred_ot: Sequence[int],
                  pred_o: Sequence[float], pcr: float, start: int = 0) -> list[int]:
    """§5 labels read literally, for prediction candles from ``start`` on: walk the 1m candles with ot
    strictly after the prediction candle's ot, in order; the first with high >= alter(open, +pcr) (tested
    first) gives 1, low <= alter(open, -pcr) gives -1. Stop at the first candle with no outcome."""
    one_ot, one_h, one_l = np.asarray(one_ot), np.asarray(one_h), np.asarray(one_l)
    labels: list[int] = []
    for i in range(start, len(pred_ot)):
        up, down = alter(float(pred_o[i]), pcr), alter(float(pred_o[i]), -pcr)
        outcome = 0
        for j in range(int(np.searchsorted(one_ot, pred_ot[i], side="right")), len(one_ot)):
            if one_h[j] >= up:
                outcome = 1
                break
            if one_l[j] <= down:
                outcome = -1
                break
        if outcome == 0:
            break
        labels.append(outcome)
    return labels

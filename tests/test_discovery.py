"""Discovery payload (SEMANTICS §4): hand-checked cases and a plain-loop reference."""

from __future__ import annotations

import statistics

from hypothesis import given, settings
from hypothesis import strategies as st

from epoch_builder.discovery import LIST_NAMES, build_discovery


def test_hand_checked_regression_case() -> None:
    # (predicted, outcome): inc ok, inc bad, dec ok, neutral prediction, no outcome, dec bad
    predicted = [1.5, 0.5, -2.0, 0.0, 3.0, -1.0]
    outcomes = [1, -1, -1, 1, 0, 1]
    d = build_discovery(predicted, outcomes)
    assert (d["increase_num"], d["decrease_num"], d["neutral_num"]) == (2, 2, 1)
    assert d["neutral_outcome_num"] == 1
    # increase outcomes: inc ok + dec bad; decrease outcomes: dec ok + inc bad
    assert (d["increase_outcome_num"], d["decrease_outcome_num"]) == (2, 2)
    assert d["increase_list"] == [1.5, 0.5]
    assert d["decrease_list"] == [-2.0, -1.0]
    assert d["increase_successful_list"] == [1.5]
    assert d["increase_unsuccessful_list"] == [0.5]
    assert d["decrease_successful_list"] == [-2.0]
    assert d["decrease_unsuccessful_list"] == [-1.0]
    assert d["accuracy"] == 50.0 and d["increase_accuracy"] == 50.0 and d["decrease_accuracy"] == 50.0
    assert d["increase_mean"] == 1.0 and d["decrease_median"] == -1.5
    assert d["points"] == 0.0
    # 4 scored predictions: +1 -1 +1 -1; floor(4*q/10) predictions after q tenths
    assert d["points_hist"] == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]


def test_empty_and_all_neutral() -> None:
    d = build_discovery([], [])
    assert d["accuracy"] == 0 and d["points_hist"] == [0.0] * 10
    assert all(d[f"{name}_mean"] == 0 and d[f"{name}_list"] == [] for name in LIST_NAMES)
    d = build_discovery([0.0, 0.0], [1, -1])
    assert d["neutral_num"] == 2 and d["increase_outcome_num"] == 0


def test_pairs_up_to_the_shorter_sequence() -> None:
    d = build_discovery([1.0, 1.0, 1.0], [1, -1])
    assert d["increase_num"] == 2


def test_accuracy_rounding() -> None:
    d = build_discovery([1.0, 1.0, 1.0], [1, 1, -1])
    assert d["accuracy"] == 66.67


def _reference(predicted: list[float], outcomes: list[int]) -> dict:
    lists = {name: [] for name in LIST_NAMES}
    neutral = neutral_outcome = 0
    points = [0.0]
    for p, o in zip(predicted, outcomes):
        if o == 0:
            neutral_outcome += 1
            continue
        if p > 0:
            ok = o > 0
            lists["increase"].append(p)
            lists["increase_successful" if ok else "increase_unsuccessful"].append(p)
        elif p < 0:
            ok = o < 0
            lists["decrease"].append(p)
            lists["decrease_successful" if ok else "decrease_unsuccessful"].append(p)
        else:
            neutral += 1
            continue
        points.append(points[-1] + (1 if ok else -1))
    return {"lists": lists, "neutral": neutral, "neutral_outcome": neutral_outcome, "points": points}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-1.0, -0.25, 0.0, 0.5, 0.75, 2.0]), st.sampled_from([-1, 0, 1])),
                max_size=40))
def test_matches_a_plain_loop(pairs: list[tuple[float, int]]) -> None:
    predicted = [p for p, _ in pairs]
    outcomes = [o for _, o in pairs]
    ref = _reference(predicted, outcomes)
    d = build_discovery(predicted, outcomes)
    for name in LIST_NAMES:
        values = ref["lists"][name]
        assert d[f"{name}_list"] == values
        assert d[f"{name}_mean"] == (round(statistics.fmean(values), 6) if values else 0)
        assert d[f"{name}_median"] == (round(statistics.median(values), 6) if values else 0)
    assert d["neutral_num"] == ref["neutral"]
    assert d["neutral_outcome_num"] == ref["neutral_outcome"]
    n = len(ref["points"]) - 1
    assert d["points_hist"] == [ref["points"][(n * q) // 10] for q in range(1, 11)]
    assert d["points"] == ref["points"][-1]

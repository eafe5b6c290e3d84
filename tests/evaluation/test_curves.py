"""Curves (noisyclip_metrics.evaluation.curves) and the grouped statistics they use
(noisyclip_metrics.evaluation.stats.grouped)."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest
import torch

from noisyclip_metrics.errors import InputError, SchemaError
from noisyclip_metrics.evaluation.curves import CurveConfig, ScoreArrays, compute_curves, first_within, pivot_rows
from noisyclip_metrics.evaluation.results import ROW_SCHEMA
from noisyclip_metrics.evaluation.stats import (
    bootstrap_ci,
    bootstrap_ratio,
    pairwise_counts,
    spearman,
    spearman_rows,
    top1_agreement_rows,
    within_group_pairwise_accuracy,
)
from noisyclip_metrics.training.validation import within_group_pairwise_accuracy as training_import

FAST = CurveConfig(n_resamples=200)


def _naive_pairwise(gold, pred, groups):
    """The definition, one pair at a time."""
    correct = total = 0.0
    for i, j in itertools.permutations(range(len(gold)), 2):
        if groups[i] != groups[j] or np.isnan(gold[i] + gold[j] + pred[i] + pred[j]) or not gold[i] > gold[j]:
            continue
        total += 1
        correct += 1.0 if pred[i] > pred[j] else 0.5 if pred[i] == pred[j] else 0.0
    return correct / total if total else float("nan")


# ------------------------------------------------------------------------------------------------- grouped statistics
def test_within_group_pairwise_accuracy_matches_the_definition():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(2, 40))
        groups = rng.integers(0, 5, n).astype(str).tolist()
        gold = rng.integers(0, 4, n).astype(float)  # many gold ties
        pred = rng.integers(0, 3, n).astype(float)  # many pred ties
        gold[rng.random(n) < 0.1] = np.nan
        pred[rng.random(n) < 0.1] = np.nan
        want = _naive_pairwise(gold, pred, groups)
        got = within_group_pairwise_accuracy(gold, pred, groups)
        assert got == pytest.approx(want, nan_ok=True), trial


def test_within_group_pairwise_accuracy_shapes_and_torch():
    assert training_import is within_group_pairwise_accuracy
    g, p = torch.tensor([1.0, 0, 1, 0]), torch.tensor([0.9, 0.1, 0.2, 0.2])
    assert within_group_pairwise_accuracy(g, p, "aabb") == 0.75
    assert within_group_pairwise_accuracy([[1, 0], [1, 0]], [[0.9, 0.1], [0.2, 0.2]]) == 0.75
    assert within_group_pairwise_accuracy([1, 0, 2], [0.1, 0.2, 0.3]) == pytest.approx(2 / 3)  # 1-D: one group
    assert np.isnan(within_group_pairwise_accuracy([1, 1, 2], [1, 2, 3], "abc"))  # no same-group pair
    with pytest.raises(InputError, match="groups"):
        within_group_pairwise_accuracy([1, 2], [1, 2], "abc")


def test_pairwise_counts_broadcast_over_steps():
    gold = np.array([[1.0, 0.0, 2.0], [3.0, 1.0, np.nan]])
    pred = np.stack([gold, -gold, np.zeros_like(gold)])
    correct, pairs = pairwise_counts(gold, pred)
    assert pairs.tolist() == [[3, 1]] * 3
    assert correct.tolist() == [[3, 1], [0, 0], [1.5, 0.5]]


def test_top1_agreement_rows():
    gold = np.array([[0.1, 0.9, 0.5], [0.5, 0.5, 0.1], [1.0, 1.0, 1.0], [0.2, np.nan, np.nan]])
    assert top1_agreement_rows(gold, gold).tolist()[:2] == [1.0, 1.0]
    rows = top1_agreement_rows(gold, -gold)
    assert rows[0] == 0.0 and rows[1] == 0.0 and np.isnan(rows[2]) and np.isnan(rows[3])
    flat = top1_agreement_rows(gold, np.zeros_like(gold))  # chance: #judge-best / #candidates
    assert flat[:2].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert top1_agreement_rows(gold, np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0], [1, 0, 0]]))[:2].tolist() == [0.5, 1]


def test_spearman_rows_agree_with_stats_spearman():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 4, (12, 5)).astype(float)
    pred = rng.normal(size=(12, 5))
    gold[0, 1] = np.nan
    rows = spearman_rows(gold, pred)
    assert np.nanmean(rows) == pytest.approx(spearman(gold, pred))
    stacked = spearman_rows(gold, np.stack([pred, -pred]))
    np.testing.assert_allclose(stacked[1], -rows)


def test_bootstrap_ratio_value_interval_and_seed():
    rng = np.random.default_rng(2)
    values = rng.normal(0.6, 0.2, size=80)
    num, den = np.stack([values, 2 * values], 1), np.ones((80, 2))
    v, lo, hi = bootstrap_ratio(num, den, n_resamples=2000, seed=3)
    assert v.tolist() == pytest.approx([values.mean(), 2 * values.mean()])
    assert (lo < v).all() and (v < hi).all()
    _v2, lo2, hi2 = bootstrap_ratio(num, den, n_resamples=2000, seed=3)
    assert lo.tolist() == lo2.tolist() and hi.tolist() == hi2.tolist()
    (ref,) = bootstrap_ci(lambda g, p: float(np.mean(p)), values, values, n_resamples=2000)  # scipy's bootstrap
    assert hi[0] - lo[0] == pytest.approx(ref.high - ref.low, rel=0.15)
    _, lo1, hi1 = bootstrap_ratio([[1.0]], [[2.0]])  # one group: no interval
    assert np.isnan(lo1).all() and np.isnan(hi1).all()
    with pytest.raises(InputError, match="same shape"):
        bootstrap_ratio(np.ones((3, 2)), np.ones((3, 1)))


# ------------------------------------------------------------------------------------------------------------- curves
def _arrays(judge: np.ndarray, scorers: dict[str, np.ndarray], steps: int = 4) -> ScoreArrays:
    p, s = judge.shape
    full = {name: np.stack([f(judge, k, steps) for k in range(steps + 1)]) for name, f in scorers.items()}
    return ScoreArrays(
        tuple(f"p{i}" for i in range(p)), tuple(range(s)), steps, judge, (judge > 0.5).astype(float), full
    )


SCORERS = {
    "judge": lambda j, k, t: j,
    "negated": lambda j, k, t: -j,
    "constant": lambda j, k, t: np.full_like(j, 0.3),
    "improving": lambda j, k, t: j * k / t,  # constant at k = 0, exact afterwards
}


@pytest.fixture()
def judge() -> np.ndarray:
    rng = np.random.default_rng(4)
    return rng.permuted(np.tile(np.linspace(0.0, 1.0, 6), (10, 1)), axis=1)  # distinct scores within each prompt


def test_known_curves(judge):
    mc = compute_curves(_arrays(judge, SCORERS), FAST)
    c = mc.overall.curves
    assert c["judge"].value["pairwise_accuracy"].tolist() == [1.0] * 5
    assert c["judge"].low["pairwise_accuracy"].tolist() == [1.0] * 5  # no variance
    assert c["negated"].value["pairwise_accuracy"].tolist() == [0.0] * 5
    assert c["constant"].value["pairwise_accuracy"].tolist() == [0.5] * 5
    assert c["judge"].value["top1_agreement"].tolist() == [1.0] * 5
    assert c["negated"].value["top1_agreement"].tolist() == [0.0] * 5
    assert c["constant"].value["top1_agreement"].tolist() == pytest.approx([1 / 6] * 5)  # chance with 6 seeds
    assert c["constant"].chance["top1_agreement"] == pytest.approx(1 / 6)
    assert c["judge"].value["spearman"].tolist() == pytest.approx([1.0] * 5)
    assert c["negated"].value["spearman"].tolist() == pytest.approx([-1.0] * 5)
    assert np.isnan(c["constant"].value["spearman"]).all()
    assert c["improving"].value["pairwise_accuracy"].tolist() == [0.5, 1, 1, 1, 1]
    assert c["judge"].fractions.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert c["judge"].pairs.tolist() == [10 * 15] * 5
    assert mc.overall.judge_score.value == pytest.approx(judge.mean())
    assert mc.overall.aligned_rate.value == pytest.approx((judge > 0.5).mean())


def test_first_within(judge):
    c = compute_curves(_arrays(judge, SCORERS), FAST).overall.curves
    assert first_within(c["judge"]) == 0.0
    assert first_within(c["improving"]) == 0.25
    assert first_within(c["negated"]) is None and first_within(c["constant"]) is None  # not above chance


def test_pooled_over_pairs_not_prompts():
    judge = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, np.nan, np.nan]])  # 6 pairs and 1 pair
    pred = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, np.nan, np.nan]])  # right on 6, wrong on 1
    data = ScoreArrays(("a", "b"), (0, 1, 2, 3), 1, judge, np.full_like(judge, np.nan), {"s": np.stack([pred, pred])})
    curve = compute_curves(data, FAST).overall.curves["s"]
    assert curve.value["pairwise_accuracy"].tolist() == pytest.approx([6 / 7, 6 / 7])  # not (1 + 0) / 2
    assert curve.value["top1_agreement"].tolist() == [0.5, 0.5]
    assert compute_curves(data, FAST).overall.aligned_rate is None
    assert compute_curves(data, FAST).overall.mixed_rate is None


def test_mixed_rate_counts_prompts_with_both_verdicts():
    aligned = np.array(
        [[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, np.nan], [1.0, np.nan, np.nan], [np.nan, 0.0, 1.0]]
    )
    judge = np.where(np.isnan(aligned), np.nan, aligned)
    data = ScoreArrays(tuple("abcde"), (0, 1, 2), 1, judge, aligned, {"s": np.stack([judge, judge])})
    mixed = compute_curves(data, FAST, [["x"], ["x"], ["y"], ["y"], ["y"]])
    # a and e mixed; b and c one verdict only; d has a single judged seed and is left out
    assert mixed.overall.mixed_rate.value == pytest.approx(2 / 4)
    assert mixed.by_skill["x"].mixed_rate.value == pytest.approx(1 / 2)
    assert mixed.by_skill["y"].mixed_rate.value == pytest.approx(1 / 2)


def test_steps_without_scores_are_left_out(judge):
    data = _arrays(judge, {"final": lambda j, k, t: j if k == t else np.full_like(j, np.nan)})
    curve = compute_curves(data, FAST).overall.curves["final"]
    assert curve.steps.tolist() == [4] and curve.value["pairwise_accuracy"].tolist() == [1.0]
    assert first_within(curve) == 1.0


def test_skills_restrict_prompts(judge):
    data = _arrays(judge, {"mixed": lambda j, k, t: np.where(np.arange(10)[:, None] < 4, j, -j)})
    skills = [["counting"] if i < 4 else ["spatial", "object"] for i in range(10)]
    mc = compute_curves(data, FAST, skills)
    assert list(mc.by_skill) == ["counting", "object", "spatial"]
    assert mc.by_skill["counting"].prompts == 4
    assert mc.by_skill["counting"].curves["mixed"].value["pairwise_accuracy"][0] == 1.0
    assert mc.by_skill["spatial"].curves["mixed"].value["pairwise_accuracy"][0] == 0.0
    assert mc.overall.curves["mixed"].value["pairwise_accuracy"][0] == pytest.approx(0.4)
    with pytest.raises(InputError, match="skills"):
        compute_curves(data, FAST, skills[:3])


def test_confidence_interval_covers_and_is_seeded():
    rng = np.random.default_rng(5)
    judge = rng.random((40, 4))
    noisy = {"noisy": lambda j, k, t: j + rng.normal(0, 0.3, j.shape)}
    data = _arrays(judge, noisy, steps=1)
    a = compute_curves(data, CurveConfig(n_resamples=300, seed=1)).overall.curves["noisy"]
    b = compute_curves(data, CurveConfig(n_resamples=300, seed=1)).overall.curves["noisy"]
    v, lo, hi = (x["pairwise_accuracy"] for x in (a.value, a.low, a.high))
    assert (lo < v).all() and (v < hi).all() and (hi - lo < 0.3).all()
    assert b.low["pairwise_accuracy"].tolist() == lo.tolist()


def test_curve_config_validation():
    with pytest.raises(InputError, match="n_resamples"):
        CurveConfig(n_resamples=1)
    with pytest.raises(InputError, match="confidence_level"):
        CurveConfig(confidence_level=95)
    with pytest.raises(InputError, match="within"):
        CurveConfig(within=0)


# ---------------------------------------------------------------------------------------------------------- pivoting
def _rows(items: list[tuple]) -> pa.Table:
    cols = {f.name: [] for f in ROW_SCHEMA}
    for kind, pid, seed, step, scorer, score in items:
        row = {
            "kind": kind,
            "run_id": "r",
            "model": "m",
            "benchmark": "b",
            "prompt_id": pid,
            "seed": seed,
            "step": step,
            "num_steps": 2,
            "timestep": None,
            "scorer": scorer,
            "judge": "j" if kind == "judgment" else None,
            "score": score,
            "aligned": None,
        }
        for k in cols:
            cols[k].append(row[k])
    return pa.table(cols, schema=ROW_SCHEMA)


def test_pivot_rows():
    rows = _rows(
        [
            ("judgment", "a", 7, None, None, 0.5),
            ("judgment", "b", 3, None, None, 0.25),
            ("score", "a", 3, 2, "s", 0.1),
            ("score", "b", 7, 0, "t", 0.2),
        ]
    )
    data = pivot_rows(rows, ["a", "b"], [7, 3], 2, ["s", "t"])
    assert data.judge.tolist()[0][0] == 0.5 and data.judge.tolist()[1][1] == 0.25
    assert np.isnan(data.judge[0, 1])
    assert data.scores["s"][2, 0, 1] == 0.1 and data.scores["t"][0, 1, 0] == 0.2
    assert np.isnan(data.scores["s"]).sum() == 3 * 2 * 2 - 1


@pytest.mark.parametrize(
    ("item", "match"),
    [
        (("score", "zz", 7, 0, "s", 0.1), "prompt id"),
        (("score", "a", 9, 0, "s", 0.1), "seed"),
        (("score", "a", 7, 3, "s", 0.1), "steps outside 0..2"),
        (("score", "a", 7, 0, "x", 0.1), "scorer"),
        (("weird", "a", 7, 0, "s", 0.1), "unknown kind"),
    ],
)
def test_pivot_rows_rejects_foreign_rows(item, match):
    with pytest.raises(SchemaError, match=match):
        pivot_rows(_rows([("judgment", "a", 7, None, None, 0.5), item]), ["a"], [7], 2, ["s"])

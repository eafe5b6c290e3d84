"""Statistics against direct references: O(n^2) pair enumeration (pairwise accuracy) and scipy (correlations)."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.stats import (
    _pair_search,
    _pair_sources,
    agreement,
    bootstrap_ci,
    kendall_tau_b,
    kendall_tau_c,
    pairwise_accuracy,
    pearson,
    spearman,
)

# ----------------------------------------------------------------------------------------------------------------
# Direct reference: enumerate every pair, evaluate every candidate threshold from the definition, exact fractions.
# ----------------------------------------------------------------------------------------------------------------


def _rows_of_pairs(gold, pred):
    gold = np.asarray(gold, dtype=float)
    pred = np.asarray(pred, dtype=float)
    if gold.ndim == 1:
        gold, pred = gold[None], pred[None]
    rows = []
    for g, p in zip(gold.tolist(), pred.tolist(), strict=True):
        items = [(a, b) for a, b in zip(g, p, strict=True) if not (math.isnan(a) or math.isnan(b))]
        pairs = [(items[i], items[j]) for i in range(len(items)) for j in range(i + 1, len(items))]
        if pairs:
            rows.append(pairs)
    return rows


def _correct(pair, eps):
    (g1, p1), (g2, p2) = pair
    d = abs(p1 - p2)
    if g1 == g2:
        return d <= eps
    return d > eps and ((g1 < g2) == (p1 < p2))


def reference_accuracy_at(gold, pred, eps):
    rows = _rows_of_pairs(gold, pred)
    return sum(Fraction(sum(_correct(q, eps) for q in r), len(r)) for r in rows) / len(rows)


def reference_pairwise_accuracy(gold, pred):
    """Max over eps in {0} U {|dp|} of the mean per-row accuracy; the smallest eps wins ties."""
    rows = _rows_of_pairs(gold, pred)
    candidates = sorted({0.0} | {abs(a[1] - b[1]) for r in rows for a, b in r})
    best = None
    for eps in candidates:
        acc = sum(Fraction(sum(_correct(q, eps) for q in r), len(r)) for r in rows) / len(rows)
        if best is None or acc > best[0]:
            best = (acc, eps)
    return float(best[0]), best[1]


TRICKY = [0.1, 0.2, 0.3, 0.30000000000000004, 0.7, 1.0, 3.0, 1e-17, -0.1, 0.0]


@st.composite
def score_matrices(draw, max_rows=4, max_cols=8, one_d=None):
    one_d = draw(st.booleans()) if one_d is None else one_d
    rows = 1 if one_d else draw(st.integers(1, max_rows))
    cols = draw(st.integers(2, max_cols))
    levels = draw(st.integers(1, 4))
    gold = draw(st.lists(st.integers(0, levels), min_size=rows * cols, max_size=rows * cols))
    pred_values = st.one_of(
        st.sampled_from(TRICKY),
        st.floats(-3, 3, allow_nan=False, width=32),
        st.integers(-2, 2).map(float),
    )
    pred = draw(st.lists(pred_values, min_size=rows * cols, max_size=rows * cols))
    missing = draw(st.lists(st.booleans(), min_size=rows * cols, max_size=rows * cols))
    g = np.array(gold, dtype=float).reshape(rows, cols)
    p = np.array(pred, dtype=float).reshape(rows, cols)
    if draw(st.booleans()):
        g[np.array(missing).reshape(rows, cols) & (np.arange(cols) >= 2)] = np.nan  # keep >= 2 items per row
    return (g[0], p[0]) if one_d else (g, p)


SETTINGS = settings(
    max_examples=120,
    deadline=None,
    # the monkeypatched knobs below are meant to hold for every generated example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def force_branch_and_bound(monkeypatch):
    """Route every row through the large-row index and the threshold search, with tiny bins."""
    monkeypatch.setattr(_pair_search, "LARGE_ROW_ITEMS", 1)
    monkeypatch.setattr(_pair_search, "BIN_ENUMERATE_MAX", 2)
    monkeypatch.setattr(_pair_search, "SPLIT_SAMPLES", 4)
    monkeypatch.setattr(_pair_search, "SPLIT_EDGES", 2)
    monkeypatch.setattr(_pair_sources, "TABLE_MAX", 16)  # forces block-wise prefix tables
    monkeypatch.setattr(_pair_search, "BUCKET_MIN", 2)  # bins are bucketed before sorting
    monkeypatch.setattr(_pair_search, "BUCKETS", 3)


def _assert_same(got, expected):
    assert abs(got[0] - expected[0]) <= 1e-12, (got, expected)
    assert got[1] == expected[1], (got, expected)


@SETTINGS
@given(score_matrices())
def test_pairwise_accuracy_matches_direct_reference(data):
    gold, pred = data
    _assert_same(pairwise_accuracy(gold, pred), reference_pairwise_accuracy(gold, pred))


@SETTINGS
@given(data=score_matrices(), pick=st.integers(0, 10**6))
def test_fixed_epsilon_matches_definition(data, pick):
    gold, pred = data
    diffs = sorted({0.0} | {abs(a - b) for a in np.ravel(pred) for b in np.ravel(pred)})
    eps = diffs[pick % len(diffs)]
    got = pairwise_accuracy(gold, pred, tie_calibration=False, epsilon=eps)
    assert got.epsilon == eps
    assert abs(got.accuracy - float(reference_accuracy_at(gold, pred, eps))) <= 1e-12


@SETTINGS
@given(score_matrices(max_rows=3, max_cols=9))
def test_branch_and_bound_matches_direct_reference(force_branch_and_bound, data):
    gold, pred = data
    _assert_same(pairwise_accuracy(gold, pred), reference_pairwise_accuracy(gold, pred))


@SETTINGS
@given(score_matrices(max_rows=4, max_cols=7, one_d=False))
def test_mixed_small_and_large_rows(monkeypatch, data):
    monkeypatch.setattr(_pair_search, "LARGE_ROW_ITEMS", 4)
    monkeypatch.setattr(_pair_search, "BIN_ENUMERATE_MAX", 3)
    monkeypatch.setattr(_pair_search, "SPLIT_SAMPLES", 5)
    monkeypatch.setattr(_pair_search, "SPLIT_EDGES", 3)
    gold, pred = data
    _assert_same(pairwise_accuracy(gold, pred), reference_pairwise_accuracy(gold, pred))


@SETTINGS
@given(data=score_matrices(), buckets=st.integers(2, 5))
def test_bucketed_scan_matches_direct_reference(monkeypatch, data, buckets):
    monkeypatch.setattr(_pair_search, "BUCKET_MIN", 2)
    monkeypatch.setattr(_pair_search, "BUCKETS", buckets)
    gold, pred = data
    _assert_same(pairwise_accuracy(gold, pred), reference_pairwise_accuracy(gold, pred))


@SETTINGS
@given(score_matrices(max_rows=4, max_cols=7, one_d=False))
def test_float_weights_fallback(monkeypatch, data):
    monkeypatch.setattr(_pair_search, "EXACT_LIMIT", 1)  # as if the lcm of row sizes overflowed
    monkeypatch.setattr(_pair_search, "LARGE_ROW_ITEMS", 3)
    monkeypatch.setattr(_pair_search, "BUCKET_MIN", 2)
    monkeypatch.setattr(_pair_search, "BUCKETS", 3)
    gold, pred = data
    _assert_same(pairwise_accuracy(gold, pred), reference_pairwise_accuracy(gold, pred))


def _numpy_sort_scan(gold, pred):
    """Independent vectorised O(n^2) reference (one group) used for inputs too large for the fraction reference."""
    i, j = np.triu_indices(gold.size, 1)
    d = np.abs(pred[i] - pred[j])
    tie = gold[i] == gold[j]
    con = ((gold[i] < gold[j]) & (pred[i] < pred[j])) | ((gold[i] > gold[j]) & (pred[i] > pred[j]))
    base = int(con.sum() + (tie & (d == 0)).sum())
    moving = con | (tie & (d > 0))
    order = np.argsort(d[moving], kind="stable")
    ds = d[moving][order]
    gain = np.cumsum(np.where(tie[moving], 1, -1)[order])
    last = np.flatnonzero(np.append(ds[1:] != ds[:-1], True))
    vals, eps = np.append(0, gain[last]), np.append(0.0, ds[last])
    k = int(np.argmax(vals))
    return (base + int(vals[k])) / d.size, float(eps[k])


@pytest.mark.parametrize("kind", ["likert-vs-continuous", "near-ceiling", "lattice", "continuous-gold"])
def test_large_single_group_matches_sort_scan(kind):
    rng = np.random.default_rng(7)
    n = 1500
    gold = rng.integers(3, 16, n) / 3.0
    pred = {
        "likert-vs-continuous": gold * 0.2 + rng.normal(size=n),
        "near-ceiling": gold + rng.normal(size=n) * 0.25,
        "lattice": np.round(gold + rng.normal(size=n), 0) * 0.1,
        "continuous-gold": None,
    }[kind]
    if pred is None:
        gold = rng.random(n)
        gold[:300] = np.round(gold[:300], 1)  # a few gold ties
        pred = gold + rng.normal(size=n) * 0.1
    _assert_same(pairwise_accuracy(gold, pred), _numpy_sort_scan(gold, pred))


def test_pairwise_accuracy_known_values():
    assert pairwise_accuracy([1, 2, 3], [1, 2, 3]) == (1.0, 0.0)
    assert pairwise_accuracy([1, 2, 3], [3, 2, 1]) == (0.0, 0.0)
    # one pair tied in gold, metric difference 0.5: calibration ties it
    assert pairwise_accuracy([1, 1], [0.0, 0.5]) == (1.0, 0.5)
    assert pairwise_accuracy([1, 1], [0.0, 0.5], tie_calibration=False) == (0.0, 0.0)
    # accepts lists with None, torch-like and integer inputs
    assert pairwise_accuracy([1, None, 2], [0.1, 0.5, 0.2]) == (1.0, 0.0)


def test_rows_are_averaged_not_pooled():
    gold = [[1, 2, 3, np.nan], [1, 2, np.nan, np.nan]]
    pred = [[1, 2, 0, np.nan], [2, 1, np.nan, np.nan]]
    # row 1: 1 of 3 pairs correct; row 2: 0 of 1 -> mean 1/6 (pooling would give 1/4)
    acc, eps = pairwise_accuracy(gold, pred)
    assert eps == 0.0
    assert acc == pytest.approx(1 / 6)


def test_constant_inputs_are_defined():
    # constant gold: every pair is a gold tie; the best threshold ties every metric pair
    assert pairwise_accuracy([2, 2, 2], [0.1, 0.4, 0.2]) == (1.0, pytest.approx(0.3))
    # constant pred: every pair is a metric tie; correct exactly when gold ties
    acc, eps = pairwise_accuracy([1, 1, 2, 3], [0.5, 0.5, 0.5, 0.5])
    assert (acc, eps) == (pytest.approx(1 / 6), 0.0)
    for fn in (pearson, spearman, kendall_tau_b, kendall_tau_c):
        assert math.isnan(fn([1, 2, 3], [4, 4, 4]))
        assert math.isnan(fn([5, 5, 5], [1, 2, 3]))


def test_all_nan_rows_are_skipped():
    gold = [[1, 2, 3], [np.nan, np.nan, np.nan], [1, np.nan, np.nan]]
    pred = [[1, 2, 3], [1, 2, 3], [5, 6, 7]]
    assert pairwise_accuracy(gold, pred) == (1.0, 0.0)
    assert pearson(gold, pred) == pytest.approx(1.0)
    assert kendall_tau_b(gold, pred) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("gold", "pred", "message"),
    [
        ([1, 2, 3], [1, 2], "same shape"),
        ([[1, 2], [3, 4]], [1, 2, 3, 4], "same shape"),
        ([["a", "b"]], [[1, 2]], "numeric"),
        ([1, "2", 3], [1, 2, 3], "numeric"),
        (np.array([1, "x", None], dtype=object), [1, 2, 3], "only numbers or None"),
        ([1, 2, 3], [1, 2, float("inf")], "finite"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "1-D"),
        ([1, 2, 3], [1 + 1j, 2, 3], "numeric"),
        ([[np.nan, np.nan], [1, np.nan]], [[1, 2], [3, 4]], "no usable data"),
        ([1], [1], "no usable data"),
        ([[1, 2], [3]], [[1, 2], [3]], "rectangular"),
    ],
)
@pytest.mark.parametrize("fn", [pairwise_accuracy, pearson, spearman, kendall_tau_b, kendall_tau_c])
def test_bad_inputs_raise_clear_errors(fn, gold, pred, message):
    with pytest.raises(InputError, match=message):
        fn(gold, pred)


def test_negative_epsilon_is_rejected():
    with pytest.raises(InputError, match="epsilon"):
        pairwise_accuracy([1, 2], [1, 2], tie_calibration=False, epsilon=-0.1)


def _scipy_rowwise(fn, gold, pred, **kw):
    gold, pred = np.atleast_2d(gold), np.atleast_2d(pred)
    values = []
    for g, p in zip(gold, pred, strict=True):
        ok = ~np.isnan(g) & ~np.isnan(p)
        if ok.sum() < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values.append(fn(g[ok], p[ok], **kw)[0])
    values = np.array(values, dtype=float)
    return float(np.nanmean(values)) if (~np.isnan(values)).any() else float("nan")


def _exact_pearson(g: np.ndarray, p: np.ndarray) -> tuple[float]:
    """Pearson r in exact rational arithmetic on the float values (scipy's float64 centring loses rows that vary only
    in their last bits: [0.3, 0.3, 0.30000000000000004] against [0, 0, 1] is exactly 1, scipy says 0.816)."""
    from fractions import Fraction

    gf, pf = [Fraction(float(v)) for v in g], [Fraction(float(v)) for v in p]
    gm, pm = sum(gf) / len(gf), sum(pf) / len(pf)
    sxy = sum((a - gm) * (b - pm) for a, b in zip(gf, pf, strict=True))
    sxx, syy = sum((a - gm) ** 2 for a in gf), sum((b - pm) ** 2 for b in pf)
    return (float("nan") if sxx == 0 or syy == 0 else float(sxy) / math.sqrt(float(sxx) * float(syy)),)


@SETTINGS
@given(score_matrices(max_rows=5, max_cols=9))
def test_correlations_match_scipy_per_row_mean(data):
    gold, pred = data
    pairs = [
        (pearson, _exact_pearson, {}),
        (spearman, scipy.stats.spearmanr, {}),
        (kendall_tau_b, scipy.stats.kendalltau, {"variant": "b"}),
        (kendall_tau_c, scipy.stats.kendalltau, {"variant": "c"}),
    ]
    for ours, theirs, kw in pairs:
        expected = _scipy_rowwise(theirs, gold, pred, **kw)
        got = ours(gold, pred)
        if math.isnan(expected):
            assert math.isnan(got), ours.__name__
        else:
            assert got == pytest.approx(expected, abs=1e-9), ours.__name__


def test_kendall_long_rows_use_scipy_path():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 5, (3, 100)).astype(float)
    pred = gold + rng.normal(size=(3, 100))
    for variant, fn in (("b", kendall_tau_b), ("c", kendall_tau_c)):
        assert fn(gold, pred) == pytest.approx(_scipy_rowwise(scipy.stats.kendalltau, gold, pred, variant=variant))


def test_bootstrap_is_reproducible_and_resamples_rows():
    rng = np.random.default_rng(3)
    gold = rng.integers(1, 6, (40, 4)).astype(float)
    pred = gold + rng.normal(size=(40, 4))
    shapes = set()

    def stat(g, p):
        shapes.add(g.shape)
        return pearson(g, p)

    first = bootstrap_ci(stat, gold, pred, n_resamples=60, seed=5)
    second = bootstrap_ci(pearson, gold, pred, n_resamples=60, seed=5)
    assert first == second
    (est,) = first
    assert est.low <= est.value <= est.high
    assert shapes == {(40, 4)}  # whole rows are resampled


def test_agreement_summary():
    rng = np.random.default_rng(4)
    gold = rng.integers(1, 6, 80).astype(float)
    pred = gold + rng.normal(size=80)
    result = agreement(gold, pred, n_resamples=40)
    assert result.n_items == 80 and result.n_groups == 1
    assert result.pairwise_accuracy.value == pairwise_accuracy(gold, pred).accuracy
    assert result.epsilon == pairwise_accuracy(gold, pred).epsilon
    assert result.kendall_tau_b.value == pytest.approx(scipy.stats.kendalltau(gold, pred).statistic)
    row = result.as_dict()
    assert {"pearson", "pearson_low", "pearson_high", "epsilon"} <= set(row)


def test_bootstrap_rejects_too_few_units():
    with pytest.raises(InputError, match="at least 2 units"):
        bootstrap_ci(pearson, [[1, 2, 3]], [[1, 2, 3]], n_resamples=10)

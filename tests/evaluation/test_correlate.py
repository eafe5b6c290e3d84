"""``noisyclip correlate``: hand-checkable synthetic stores, judgments files, CLI, and a real evaluate run."""

from __future__ import annotations

import json
import math

import pytest

from noisyclip_metrics.cli import main
from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.evaluation.correlate import ROW_KEYS, correlate, format_table
from noisyclip_metrics.evaluation.judges import Judgment, PartialJudgmentsWarning, write_judgments
from noisyclip_metrics.evaluation.results import ROW_SCHEMA, ResultsStore, RunInfo

GOLD = {"p0": [1, 2, 3, 4], "p1": [4, 3, 2, 1]}
# noisyclip: step 0 reversed, step 1 one swap in p0, step 2 perfect; clip: only step 2, constant (undefined)
PRED = {
    ("noisyclip", 0): {"p0": [4, 3, 2, 1], "p1": [1, 2, 3, 4]},
    ("noisyclip", 1): {"p0": [1, 2, 4, 3], "p1": [4, 3, 2, 1]},
    ("noisyclip", 2): {"p0": [0.1, 0.2, 0.3, 0.4], "p1": [0.4, 0.3, 0.2, 0.1]},
    ("clip", 2): {"p0": [0.5] * 4, "p1": [0.5] * 4},
}


def _write_run(store: ResultsStore, run_id: str, model: str, judges=("oracle",), gold_shift: float = 0.0) -> None:
    store.write_run(
        RunInfo(
            run_id,
            model,
            "bench",
            {"num_inference_steps": 2},
            (0, 1, 2, 3),
            {"noisyclip": {}, "clip": {}},
            {"name": judges[0]},
        )
    )
    store.write_prompts(
        run_id, ["p0", "p1"], ["two red cubes", "a blue cube"], [["attribute", "counting"], ["attribute"]]
    )
    cols = {name: [] for name in ROW_SCHEMA.names}

    def add(*values):
        for key, value in zip(cols, values, strict=True):
            cols[key].append(value)

    for pid, gold in GOLD.items():
        for seed in range(4):
            for k, judge in enumerate(judges):
                score = gold[seed] + gold_shift if k == 0 else -gold[seed]
                add(
                    "judgment", run_id, model, "bench", pid, seed, None, None, None, None, judge, score, gold[seed] >= 3
                )
            for (scorer, step), pred in PRED.items():
                add(
                    "score",
                    run_id,
                    model,
                    "bench",
                    pid,
                    seed,
                    step,
                    2,
                    10.0 * (2 - step),
                    scorer,
                    None,
                    pred[pid][seed],
                    None,
                )
    store.append(run_id, cols, "chunk-0")


@pytest.fixture()
def store(tmp_path):
    store = ResultsStore.create(tmp_path / "results")
    _write_run(store, "run1", "model-a")
    return store


def _row(rows, **where):
    found = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]


def test_hand_checked_values_per_step_and_skill(store):
    rows = correlate(store)
    assert all(set(ROW_KEYS) <= set(r) for r in rows)
    assert {(r["scorer"], r["step"]) for r in rows} == set(PRED)
    assert {r["skill"] for r in rows} == {"overall", "attribute", "counting"}
    worst = _row(rows, scorer="noisyclip", step=0, skill="overall")
    assert (worst["pearson"], worst["spearman"], worst["kendall_tau_b"], worst["kendall_tau_c"]) == (-1, -1, -1, -1)
    assert (worst["pairwise_accuracy"], worst["n_prompts"], worst["n_items"], worst["fraction"]) == (0.0, 2, 8, 0.0)
    mid = _row(rows, scorer="noisyclip", step=1, skill="overall")
    # p0: one swapped pair of 6 -> tau_b 4/6, Spearman 1 - 6*2/(4*15) = 0.8, accuracy 5/6; p1 perfect; mean of rows
    assert mid["kendall_tau_b"] == pytest.approx((4 / 6 + 1) / 2)
    assert mid["spearman"] == pytest.approx(0.9) and mid["pearson"] == pytest.approx(0.9)
    assert mid["pairwise_accuracy"] == pytest.approx((5 / 6 + 1) / 2) and mid["epsilon"] == 0.0
    counting = _row(rows, scorer="noisyclip", step=1, skill="counting")  # p0 only
    assert counting["n_prompts"] == 1 and counting["kendall_tau_b"] == pytest.approx(4 / 6)
    best = _row(rows, scorer="noisyclip", step=2, skill="attribute")
    assert best["pearson"] == pytest.approx(1.0) and best["pairwise_accuracy"] == 1.0
    flat = _row(rows, scorer="clip", step=2, skill="overall")  # constant scores: correlations undefined
    assert math.isnan(flat["pearson"]) and math.isnan(flat["kendall_tau_b"])
    assert flat["pairwise_accuracy"] == 0.0  # every pair a metric tie, no gold tie


def test_ungrouped_steps_fractions_and_gold(store):
    pooled = correlate(store, scorer="noisyclip", steps=[2], group="none", per_skill=False)
    assert len(pooled) == 1 and pooled[0]["pearson"] == pytest.approx(1.0)
    assert pooled[0]["pairwise_accuracy"] == 1.0  # gold ties (e.g. 4 vs 4) are exact metric ties too
    by_fraction = correlate(store, scorer=["noisyclip"], fractions=[0.5, 0.6], per_skill=False)
    assert [(r["step"], r["fraction"]) for r in by_fraction] == [(1, 0.5)]  # both round to step 1
    assert correlate(store, scorer="clip", steps=[0, 1], per_skill=False) == []  # clip has rows at step 2 only
    aligned = correlate(store, scorer="noisyclip", steps=[2], gold="aligned", per_skill=False)[0]
    # binary gold [0, 0, 1, 1] vs scores 0.1..0.4: eps ~ 0.1 ties the two gold-tied pairs (right) and the middle
    # pair (wrong); the other three pairs are concordant -> 5/6 in each prompt
    assert aligned["judge"] == "oracle (aligned)" and aligned["pairwise_accuracy"] == pytest.approx(5 / 6)
    assert aligned["epsilon"] == pytest.approx(0.1)


def test_errors_name_the_argument(store):
    with pytest.raises(InputError, match=r"steps: \[3\] outside 0..2"):
        correlate(store, steps=[3])
    with pytest.raises(InputError, match="no scores of 'noisyclp'; did you mean 'noisyclip'"):
        correlate(store, scorer="noisyclp")
    with pytest.raises(InputError, match="fractions: expected values in"):
        correlate(store, fractions=[1.5])
    with pytest.raises(InputError, match="group: expected one of prompt, none, got 'seed'"):
        correlate(store, group="seed")
    with pytest.raises(InputError, match="no judgments of 'human'"):
        correlate(store, judge="human")
    with pytest.raises(InputError, match="no run of 'model-b'"):
        correlate(store, model="model-b")


def test_several_runs_and_judges(tmp_path):
    store = ResultsStore.create(tmp_path / "r")
    _write_run(store, "run1", "model-a", judges=("oracle", "anti"))
    _write_run(store, "run2", "model-b", gold_shift=1.0)
    with pytest.raises(InputError, match=r"several judges \(oracle, anti\)"):
        correlate(store, model="model-a")
    anti = correlate(store, model="model-a", judge="anti", steps=[2], scorer="noisyclip", per_skill=False)
    assert anti[0]["pearson"] == pytest.approx(-1.0)
    b = correlate(store, model="run2", steps=[2], scorer="noisyclip", per_skill=False)
    assert [r["model"] for r in b] == ["model-b"] and b[0]["pearson"] == pytest.approx(1.0)


def test_judgments_file(store, tmp_path):
    human = [
        Judgment(p, str(s), None, "human", -g, rater=r)
        for p, gold in GOLD.items()
        for s, g in enumerate(gold)
        for r in ("0", "1")
    ]
    path = write_judgments(tmp_path / "human.csv", human)
    rows = correlate(store, scorer="noisyclip", steps=[2], judgments=path, per_skill=False)
    assert rows[0]["judge"] == "human" and rows[0]["pearson"] == pytest.approx(-1.0)
    with pytest.raises(DataFileError, match="4 of 8 candidates have no judgment"):  # p0 only: refused by default
        correlate(store, scorer="noisyclip", steps=[2], judgments=human[:8], per_skill=False)
    with pytest.warns(PartialJudgmentsWarning, match="4 of 8 candidates have no judgment"):
        partial = correlate(
            store, scorer="noisyclip", steps=[2], judgments=human[:8], per_skill=False, allow_partial=True
        )
    assert partial[0]["n_prompts"] == 1 and partial[0]["n_items"] == 4
    wrong = [Judgment("p0", gen, gen, "human", 3.0) for gen in ("DALLE_3", "SDXL_Base")]
    with pytest.raises(
        InputError,
        match=r"2 of 2 .*match no stored trajectory, e.g. \('p0', 'DALLE_3'\), "
        r"\('p0', 'SDXL_Base'\); the store has prompt ids like 'p0' and candidate "
        r"ids = seeds 0, 1, 2, 3",
    ):
        correlate(store, judgments=wrong)
    extra = [*human, Judgment("p9", "0", None, "human", 1.0)]
    with pytest.raises(InputError, match=r"1 of 9 .*unmatched='ignore'"):
        correlate(store, judgments=extra)
    assert correlate(store, scorer="noisyclip", steps=[2], judgments=extra, unmatched="ignore", per_skill=False)
    with pytest.raises(InputError, match="several judges"):
        correlate(store, judgments=[*human, Judgment("p0", "0", None, "vqa", 1.0)])


def test_bootstrap_intervals(store):
    row = correlate(store, scorer="noisyclip", steps=[1], ci=True, per_skill=False, n_resamples=20)[0]
    for name in ("pearson", "kendall_tau_b", "pairwise_accuracy"):
        assert row[f"{name}_low"] <= row[name] + 1e-12 and row[name] <= row[f"{name}_high"] + 1e-12
    assert "[" in format_table([row])


def test_cli_table_and_json(store, tmp_path, capsys):
    out_json = tmp_path / "corr.json"
    code = main(["correlate", "--results", str(store.root), "--scorer", "noisyclip", "clip", "--json", str(out_json)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "step 2/2 (fraction 1.00)" in out and "counting" in out and "pair_acc" in out
    assert out.index("step 0/2") < out.index("step 1/2") < out.index("step 2/2")
    data = json.loads(out_json.read_text())
    assert len(data["rows"]) == 4 * 3 and data["group"] == "prompt"
    assert any(r["pearson"] is None for r in data["rows"])  # NaN is written as null
    code = main(["correlate", "--results", str(store.root), "--steps", "9"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "noisyclip correlate: error: steps: [9] outside 0..2" in err
    code = main(["correlate", "--results", str(tmp_path / "nowhere")])
    assert code == 2 and "results folder not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def evaluated_store(tmp_path_factory):
    """A real results store: a tiny SD pipeline, tiny CLIP checkpoints, judge clip-final."""
    from noisyclip_metrics.evaluation.runner import EvalConfig, evaluate
    from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
    from noisyclip_metrics.testing import tiny_pipeline

    root = tmp_path_factory.mktemp("evaluated")
    tiny_pipeline("sd", root / "pipe")
    for name, seed in (("noisyclip", 0), ("clip", 1)):
        NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=seed).save_pretrained(root / name)
    (root / "prompts.txt").write_text("a red circle\ntwo blue squares\na green triangle\n")
    evaluate(
        EvalConfig(
            model=str(root / "pipe"),
            out=str(root / "results"),
            benchmark=str(root / "prompts.txt"),
            seeds=(0, 1, 2),
            num_inference_steps=3,
            scorers=("noisyclip", "clip", "clip-final"),
            noisyclip=str(root / "noisyclip"),
            clip=str(root / "clip"),
            judge="clip-final",
            batch_size=9,
            progress=False,
            height=32,
            width=32,
        )
    )
    return root / "results"


def test_correlate_an_evaluated_store(evaluated_store, capsys):
    rows = correlate(evaluated_store)
    assert {r["skill"] for r in rows} == {"overall"}  # a plain prompt file has no skill tags
    assert {(r["scorer"], r["step"]) for r in rows} == {(s, k) for s in ("noisyclip", "clip") for k in range(4)} | {
        ("clip-final", 3)
    }
    final = _row(rows, scorer="clip-final")
    # the clip-final scorer and the clip-final judge read the same images with the same CLIP: perfect agreement
    assert final["judge"] == "clip-final" and final["n_prompts"] == 3 and final["n_items"] == 9
    assert final["pearson"] == pytest.approx(1.0) and final["kendall_tau_b"] == pytest.approx(1.0)
    assert final["pairwise_accuracy"] == 1.0
    assert all(-1 <= r["pearson"] <= 1 for r in rows if not math.isnan(r["pearson"]))
    assert main(["correlate", "--results", str(evaluated_store), "--fractions", "0", "1", "--group", "none"]) == 0
    out = capsys.readouterr().out
    assert "step 0/3 (fraction 0.00)" in out and "step 3/3 (fraction 1.00)" in out and "clip-final" in out


def test_settings_from_a_yaml_file_equal_the_flags(evaluated_store, tmp_path, capsys):
    flags = ["--fractions", "0", "1", "--group", "none", "--no-skills"]
    assert main(["correlate", "--results", str(evaluated_store), *flags, "--json", str(tmp_path / "a.json")]) == 0
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"results: {evaluated_store}\nfractions: [0, 1]\ngroup: none\nskills: false\njson: {tmp_path / 'b.json'}\n"
    )
    assert main(["correlate", "--config", str(config)]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["rows"] == b["rows"] and a["group"] == b["group"] == "none"
    # a flag overrides the file; a wrong value in the file is one line naming the setting
    assert main(["correlate", "--config", str(config), "--group", "prompt", "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["group"] == "prompt"
    config.write_text(f"results: {evaluated_store}\ngold: best\n")
    capsys.readouterr()
    assert main(["correlate", "--config", str(config)]) == 2
    assert "setting 'gold'" in capsys.readouterr().err


def test_steps_and_fractions_together_are_refused(evaluated_store, capsys):
    assert main(["correlate", "--results", str(evaluated_store), "--steps", "1", "--fractions", "0.5"]) == 2
    assert capsys.readouterr().err.strip().endswith("--steps / --fractions: expected one of them, got both")

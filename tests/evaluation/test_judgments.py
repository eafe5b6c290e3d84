"""Judgments: real human-judgment files, t2v-metrics outputs, CSV/JSONL round trips, and the Judge protocol."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.evaluation.benchmarks import Prompt, PromptSet, load_benchmark
from noisyclip_metrics.evaluation.judges import (
    GENAI_BENCH_MODELS,
    JUDGES,
    Judge,
    Judgment,
    PartialJudgmentsWarning,
    PrecomputedJudge,
    check_coverage,
    check_prompt_ids,
    mean_over_raters,
    merge_judgments,
    read_genai_bench_ratings,
    read_geneval_annotations,
    read_imagereward_rankings,
    read_judgments,
    read_t2v_metrics_per_skill,
    read_t2v_metrics_scores,
    read_tifa160_dsg_annotations,
    read_tifa_annotations,
    to_matrix,
    write_judgments,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real judgment files not found at {DATA}")


# ------------------------------------------------------------------------------------------------ real files


@needs_data
def test_genai_bench_ratings_and_off_scale_values():
    path = DATA / "genai-bench" / "genai_image_527.json"
    with pytest.warns(UserWarning) as caught:
        ratings = read_genai_bench_ratings(path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "genai_image_527.json:8549: field 'models.DALLE_3[1]': rating 41 of prompt 00232" in messages[0]
    assert "field 'models.DeepFloyd_I_XL_v1[2]': rating 33 of prompt 00253" in messages[1]
    assert len(ratings) == 527 * 6 * 3
    assert sum(math.isnan(j.score) for j in ratings) == 2
    first = [j.score for j in ratings if j.prompt_id == "00001" and j.model == "DALLE_3"]
    assert first == [5.0, 5.0, 5.0]
    check_prompt_ids(ratings, load_benchmark("genai-bench-527", path))
    kept = read_genai_bench_ratings(path, out_of_range="keep")
    assert max(j.score for j in kept) == 41.0
    with pytest.raises(DataFileError, match="rating 41 of prompt 00232 is outside 1-5"):
        read_genai_bench_ratings(path, out_of_range="error")
    matrix, rows, cols = to_matrix(ratings)
    assert matrix.shape == (527, 6) and cols == list(GENAI_BENCH_MODELS) and rows[0] == "00001"
    assert matrix[rows.index("00232"), 0] == pytest.approx(4.5)  # mean of the two valid ratings [5, 41, 4]


@needs_data
def test_tifa_annotations_and_dsg_reannotation():
    ann = read_tifa_annotations(DATA / "tifa" / "human_annotations" / "human_annotations.json")
    assert len(ann) == 1600 and {j.rater for j in ann} == {"0", "1"}
    assert [j.score for j in ann if j.candidate_id == "coco_669925_mini_dalle"] == [5.0, 5.0]
    assert Counter(j.model for j in ann)["stable_diffusion_v2_1"] == 320
    with_metrics = read_tifa_annotations(
        DATA / "tifa" / "human_annotations" / "human_annotations_with_scores.json", include_metrics=True
    )
    assert {"clipscore_vitb32", "tifa_blip2-flant5xl", "human"} <= {j.judge for j in with_metrics}
    assert check_prompt_ids(ann, load_benchmark("tifa-v1", DATA / "tifa")) == 160
    dsg = read_tifa160_dsg_annotations(DATA / "tifa" / "tifa160_t2v_metrics" / "dsg_tifa160_anns.csv")
    assert len(dsg) == 3995 and len({j.rater for j in dsg}) == 5
    assert {j.candidate_id for j in dsg} <= {j.candidate_id for j in ann}  # same 800 images, same names


@needs_data
def test_geneval_annotations_repairs_split_rows():
    for model in ("clip", "if-xl", "sdv2"):
        ann = read_geneval_annotations(DATA / "geneval" / "annotations" / f"annotations_{model}.csv")
        assert len(ann) == 2000 and {j.model for j in ann} == {model}
        assert set(Counter(j.candidate_id for j in ann).values()) == {5}
        assert {j.score for j in ann} <= {1.0, 2.0, 3.0, 4.0}
    first = read_geneval_annotations(DATA / "geneval" / "annotations" / "annotations_clip.csv")[0]
    assert (first.prompt_id, first.candidate_id, first.score, first.rater) == ("00220", "00220/00002", 3.0, "0")
    prompts = load_benchmark("geneval", DATA / "geneval")
    assert check_prompt_ids(ann, prompts) == 100
    assert prompts["00220"].text == "a photo of four donuts"


@needs_data
def test_imagereward_rankings():
    ranks = read_imagereward_rankings(DATA / "imagereward" / "test.json")
    assert len(ranks) == 2720
    first = [j.score for j in ranks if j.prompt_id == "005658-0040"]
    assert first == [-1.0, -2.0, -5.0, -3.0]


# --------------------------------------------------------------------------------------- malformed synthetic


def test_genai_non_numeric_rating(tmp_path):
    path = tmp_path / "genai_image.json"
    path.write_text(json.dumps({"00001": {"prompt": "p", "models": {"A": [5, "five", 4]}}}, indent=2))
    with pytest.raises(DataFileError, match=r"genai_image.json:2: field 'models.A\[1\] of prompt 00001': expected a"):
        read_genai_bench_ratings(path)
    path.write_text(json.dumps({"00001": {"prompt": "p"}}, indent=2))
    with pytest.raises(DataFileError, match="field 'models': missing or not an object"):
        read_genai_bench_ratings(path)


def test_tifa_inconsistent_average(tmp_path):
    path = tmp_path / "human_annotations.json"
    entry = {"text_id": "coco_1", "image_path": "coco_1_m.jpg", "text": "t", "human_scores": [5, 3], "human_avg": 5.0}
    path.write_text(json.dumps({"coco_1_m": entry}, indent=1))
    with pytest.raises(DataFileError, match=r"human_annotations.json:2: field 'human_avg': 5.0 is not the mean"):
        read_tifa_annotations(path)
    entry.update(human_avg=4.0, text_id="coco_2")
    path.write_text(json.dumps({"coco_1_m": entry}, indent=1))
    with pytest.raises(DataFileError, match="'coco_2' is not the prefix of the image name 'coco_1_m'"):
        read_tifa_annotations(path)


def test_dsg_duplicates_and_unknown_models(tmp_path):
    path = tmp_path / "dsg.csv"
    header = "data_type,model_type,item_id,source_id,worker_id,question,answer\n"
    row = "tifa160,mini-dalle,tifa160_1,coco_1,42,How consistent?,{}\n"
    path.write_text(header + row.format(4) + row.format(5))
    with pytest.raises(DataFileError, match=r"dsg.csv:3: field 'worker_id': worker rated coco_1_mini_dalle twice"):
        read_tifa160_dsg_annotations(path)
    path.write_text(header + row.replace("mini-dalle", "dalle-9").format(4))
    with pytest.raises(DataFileError, match=r"dsg.csv:2: field 'model_type': unknown model 'dalle-9'"):
        read_tifa160_dsg_annotations(path)
    path.write_text(header + row.format("good"))
    with pytest.raises(DataFileError, match=r"dsg.csv:2: field 'answer': expected a finite number, found 'good'"):
        read_tifa160_dsg_annotations(path)


def test_geneval_unrepairable_row_and_missing_column(tmp_path):
    path = tmp_path / "annotations_x.csv"
    path.write_text("Input.prompt_id,Input.image_id,Answer.task-quality,Answer.task-objects\n1,0,4,cat\n2,0\n")
    with pytest.raises(DataFileError, match=r"annotations_x.csv:3: expected 4 fields as in the header, found 2"):
        read_geneval_annotations(path)
    path.write_text("Input.prompt_id,Input.image_id,Answer.quality\n1,0,4\n")
    with pytest.raises(DataFileError, match=r"missing column\(s\) 'Answer.task-quality'"):
        read_geneval_annotations(path)
    path.write_text(
        'Input.prompt_id,Input.image_id,Answer.task-objects,Answer.task-quality\n1,0,"1.cat\n2,dog",4\n'
        "1,0,1.cat\n2.dog,3\n"
    )  # quoted line break is fine; the unquoted one is re-joined
    ann = read_geneval_annotations(path, model="m")
    assert [(j.score, j.rater) for j in ann] == [(4.0, "0"), (3.0, "1")]


def test_imagereward_bad_rank(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps([{"id": "a", "prompt": "p", "generations": ["x", "y"], "ranking": [1, 0]}], indent=1))
    with pytest.raises(DataFileError, match=r"test.json:2: field 'ranking': rank 0 is not a positive integer"):
        read_imagereward_rankings(path)


# ------------------------------------------------------------------------------------------- t2v-metrics files


def test_t2v_metrics_score_tensor_order_and_size(tmp_path):
    torch = pytest.importorskip("torch")
    prompt_ids = ["00001", "00002", "00003"]
    models = ["A", "B"]
    scores = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1) / 10  # model-major: A1 A2 A3 B1 B2 B3
    path = tmp_path / "clip-flant5-xxl_3_prompts.pt"
    torch.save(scores, path)
    js = read_t2v_metrics_scores(path, prompt_ids, models)
    assert {j.judge for j in js} == {"clip-flant5-xxl"}
    lookup = {(j.prompt_id, j.model): j.score for j in js}
    assert lookup[("00002", "A")] == pytest.approx(0.1) and lookup[("00001", "B")] == pytest.approx(0.3)
    np.save(tmp_path / "s.npy", scores.numpy().ravel())
    assert [j.score for j in read_t2v_metrics_scores(tmp_path / "s.npy", prompt_ids, models, judge="x")] == [
        j.score for j in js
    ]
    with pytest.raises(DataFileError, match=r"6 scores \(shape \(6,\)\), expected 6 generators x 3 prompts = 18"):
        read_t2v_metrics_scores(path, prompt_ids)
    (tmp_path / "broken.pt").write_bytes(b"not a tensor")
    with pytest.raises(DataFileError, match=r"broken.pt: not a readable torch file"):
        read_t2v_metrics_scores(tmp_path / "broken.pt", prompt_ids, models)


def test_t2v_metrics_per_skill(tmp_path):
    path = tmp_path / "clip-flant5-xxl_527_per_skill.json"
    data = {"counting": {"alignment": {"pearson": 45.0, "kendall_b": 0.31, "pairwise_acc": [0.62, 0.01]}}}
    path.write_text(json.dumps(data, indent=2))
    row = read_t2v_metrics_per_skill(path)["counting"]
    assert (row.pearson, row.kendall_b, row.pairwise_accuracy, row.epsilon) == (0.45, 0.31, 0.62, 0.01)
    data["negation"] = {"alignment": {"pearson": 1.0, "kendall_b": 0.1, "pairwise_acc": 0.6}}
    path.write_text(json.dumps(data, indent=2))
    with pytest.raises(DataFileError, match=r"per_skill.json:\d+: field 'negation.alignment'.pairwise_acc: expected"):
        read_t2v_metrics_per_skill(path)


# -------------------------------------------------------------------------------------- plain CSV / JSONL files


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_round_trip(tmp_path, suffix):
    js = [
        Judgment("p1", "img1", "sd", "vqa", 0.5),
        Judgment("p1", "img2", None, "vqa", float("nan"), rater="r1"),
    ]
    path = write_judgments(tmp_path / f"j{suffix}", js)
    back = read_judgments(path)
    assert back[0] == js[0] and back[1].model is None and back[1].rater == "r1" and math.isnan(back[1].score)


def test_plain_csv_errors(tmp_path):
    path = tmp_path / "j.csv"
    path.write_text("prompt_id,candidate_id,score\np1,a,0.3\n")
    with pytest.raises(DataFileError, match=r"missing column\(s\) 'judge'"):
        read_judgments(path)
    assert read_judgments(path, judge="clip")[0].judge == "clip"
    path.write_text("prompt_id,candidate_id,judge,score\np1,a,clip,0.3\np1,b,clip,high\n")
    with pytest.raises(DataFileError, match=r"j.csv:3: field 'score': expected a finite number, found 'high'"):
        read_judgments(path)
    path.write_text("prompt_id,candidate_id,judge,score\np1,a,clip,0.3\np1,a,clip,0.4\n")
    with pytest.raises(DataFileError, match=r"j.csv: conflicting judgments for \('clip', 'p1', 'a', None\)"):
        read_judgments(path)
    lines = ['{"prompt_id": "p", "candidate_id": "a", "score": 1, "judge": "x"}', '{"prompt_id": "p"}']
    (tmp_path / "j.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"j.jsonl:2: field 'candidate_id': missing"):
        read_judgments(tmp_path / "j.jsonl")
    with pytest.raises(InputError, match=r"unknown judgment file type '.txt'"):
        read_judgments(tmp_path / "j.txt")


def test_records_validation_and_helpers():
    with pytest.raises(InputError, match="score must be a number"):
        Judgment("p", "c", None, "j", "4")
    with pytest.raises(InputError, match="prompt_id must be a non-empty string"):
        Judgment("", "c", None, "j", 4)
    js = [Judgment("p", "c", "m", "h", s, rater=str(k)) for k, s in enumerate([1, 2, 3])]
    assert mean_over_raters(js)[0].score == 2.0
    prompts = PromptSet("t", (Prompt("p", "a cat"),))
    with pytest.raises(DataFileError, match=r"1 prompt id\(s\) not in t \(e.g. 'q'"):
        check_prompt_ids([Judgment("q", "c", None, "h", 1)], prompts)
    with pytest.raises(InputError, match="several judges"):
        to_matrix([*js, Judgment("p", "c", "m", "other", 1)])
    assert merge_judgments(js, js) == js  # identical duplicates collapse


# ------------------------------------------------------------------------------------------------------ judges


def test_precomputed_judge_protocol_and_lookups():
    prompts = PromptSet("t", (Prompt("00001", "a red cube"), Prompt("00002", "two cats")))
    stored = [Judgment("00001", "A", "A", "human", s, rater=str(r)) for r, s in enumerate([5, 4, 3])]
    stored.append(Judgment("00002", "A", "A", "human", 2.0))
    judge = JUDGES.get("precomputed")(stored, prompts=prompts)
    assert isinstance(judge, Judge) and judge.name == "human" and len(judge) == 2
    assert judge.judge(["00001", "two cats"], ["A", "A"]) == [4.0, 2.0]
    with pytest.raises(InputError, match="no score for prompt '00001', candidate 'AA'; did you mean 'A'"):
        judge.judge(["00001"], ["AA"])
    assert math.isnan(PrecomputedJudge(stored, missing="nan").judge(["00001"], ["B"])[0])
    with pytest.raises(InputError, match="same length"):
        judge.judge(["00001"], [])
    with pytest.raises(InputError, match="several judges"):
        PrecomputedJudge([*stored, Judgment("00001", "A", "A", "vqa", 0.9)])
    vqa = PrecomputedJudge([*stored, Judgment("00001", "A", "A", "vqa", 0.9)], judge="vqa")
    assert vqa.judge(["00001"], ["A"]) == [0.9]
    assert judge.as_array(["00001", "00002"], ["A", "B"]).tolist()[0][0] == 4.0


# --------------------------------------------------------------------------------------- coverage, hostile files


def test_partial_coverage_is_refused_unless_allowed():
    js = [Judgment("p0", "0", None, "human", 3.0), Judgment("p0", "1", None, "human", float("nan"))]
    wanted = [("p0", "0"), ("p0", "1"), ("p1", "0"), ("p1", "1")]
    refused = r"h.csv: 2 of 4 candidates have no judgment \(e.g. p1/0, p1/1\); pass --allow-partial"
    with pytest.raises(DataFileError, match=refused):
        check_coverage(js, wanted, source="h.csv")
    with pytest.warns(PartialJudgmentsWarning, match="2 of 4 candidates have no judgment"):
        assert check_coverage(js, wanted, source="h.csv", allow_partial=True) == [("p1", "0"), ("p1", "1")]
    assert check_coverage(js, wanted[:2]) == []  # a NaN score is a judgment given (explicitly missing)
    assert not issubclass(PartialJudgmentsWarning, UserWarning)  # the CLI silences libraries' UserWarnings only


def test_jsonl_nested_too_deeply_or_with_mistyped_fields(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"prompt_id": "p", "candidate_id": "0", "judge": "h", "score": 1}\n' + "[" * 100_000 + "\n")
    with pytest.raises(DataFileError, match=r"j.jsonl:2: (JSON nested too deeply|invalid JSON)"):
        read_judgments(path)
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataFileError, match=r"j.jsonl:1: JSON nested too deeply to read"):
        read_judgments(path)
    path.write_text('{"prompt_id": {"a": [[[[1]]]]}, "candidate_id": "0", "judge": "h", "score": 1}\n')
    mistyped = r"j.jsonl:1: field 'prompt_id': expected a string or an integer, found \{'a': \[\[\[...\]\]\]\}"
    with pytest.raises(DataFileError, match=mistyped):
        read_judgments(path)
    path.write_text('{"prompt_id": 7, "candidate_id": 0, "judge": "h", "score": [' + "[" * 50 + "]" * 50 + "]}\n")
    with pytest.raises(DataFileError, match=r"j.jsonl:1: field 'score': expected a finite number, found \[\[\["):
        read_judgments(path)

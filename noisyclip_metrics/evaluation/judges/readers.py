"""Readers of human judgments and t2v-metrics outputs into :class:`~noisyclip_metrics.evaluation.judges.Judgment` lists.

Each reader validates its file and raises :class:`~noisyclip_metrics.errors.DataFileError` naming file, line and
field. Source formats are described in ``adapters/*.yaml`` (``judgments:``) and in each function's docstring.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.evaluation.benchmarks._files import as_number, json_entry_line, read_json, read_table, where
from noisyclip_metrics.evaluation.judges.records import Judgment

__all__ = [
    "GENAI_BENCH_MODELS",
    "TIFA160_MODELS",
    "SkillCorrelation",
    "read_genai_bench_ratings",
    "read_geneval_annotations",
    "read_imagereward_rankings",
    "read_t2v_metrics_per_skill",
    "read_t2v_metrics_scores",
    "read_tifa160_dsg_annotations",
    "read_tifa_annotations",
]

GENAI_BENCH_MODELS: tuple[str, ...] = (
    "DALLE_3",
    "SDXL_Turbo",
    "DeepFloyd_I_XL_v1",
    "Midjourney_6",
    "SDXL_2_1",
    "SDXL_Base",
)
"""GenAI-Bench image generators, in t2v-metrics' order (the order of its cached score tensors)."""

TIFA160_MODELS: dict[str, str] = {
    "mini-dalle": "mini_dalle",
    "vq-diffusion": "vq_diffusion",
    "sd1dot1": "stable_diffusion_v1_1",
    "sd1dot5": "stable_diffusion_v1_5",
    "sd2dot1": "stable_diffusion_v2_1",
}
"""DSG ``model_type`` -> TIFA image-name model (as t2v-metrics' ``TIFA160_DSG`` maps them)."""


def read_genai_bench_ratings(
    path: str | Path,
    *,
    scale: tuple[float, float] = (1, 5),
    out_of_range: Literal["nan", "keep", "error"] = "nan",
    judge: str = "human",
) -> list[Judgment]:
    """Per-rater Likert ratings of GenAI-Bench ``genai_image.json`` (``models: {generator: [r1, r2, r3]}``).

    One judgment per (prompt, generator, rater): ``candidate_id`` and ``model`` are the generator, ``rater`` is the
    rating's position (``"0"``, ``"1"``, ...; the file has no rater identities).

    Args:
        path: the JSON file.
        scale: the valid rating range.
        out_of_range: what to do with a rating outside ``scale`` (the 527-prompt file has two, 41 and 33, clearly
            typos): ``"nan"`` (default) records it as missing and warns with its location; ``"keep"`` keeps the
            value (what t2v-metrics does, averaging it into the gold score); ``"error"`` raises.
        judge: the judge name to record.

    Raises:
        DataFileError: malformed file, non-numeric ratings, or (with ``out_of_range="error"``) a rating off scale.

    Examples:
        >>> import json, tempfile, pathlib
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "genai_image.json"
        >>> _ = path.write_text(json.dumps({"00001": {"prompt": "a cat", "models": {"DALLE_3": [5, 4, 5]}}}))
        >>> [(j.candidate_id, j.rater, j.score) for j in read_genai_bench_ratings(path)]
        [('DALLE_3', '0', 5.0), ('DALLE_3', '1', 4.0), ('DALLE_3', '2', 5.0)]
        >>> tmp.cleanup()
    """
    if out_of_range not in ("nan", "keep", "error"):
        raise InputError(f"out_of_range must be 'nan', 'keep' or 'error', got {out_of_range!r}")
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFileError(f"{where(path, 1)}: expected a JSON object keyed by prompt index")
    out = []
    for k, (key, entry) in enumerate(data.items()):
        models = entry.get("models") if isinstance(entry, dict) else None
        if not isinstance(models, dict):
            raise DataFileError(f"{where(path, json_entry_line(path, k), 'models')}: missing or not an object ({key})")
        for model, ratings in models.items():
            field = f"models.{model}"
            if not isinstance(ratings, list):
                raise DataFileError(f"{where(path, json_entry_line(path, k), field)}: expected a list of ratings")
            for r, value in enumerate(ratings):
                try:
                    score = as_number(value, path, None, f"{field}[{r}]")
                except DataFileError:
                    as_number(value, path, json_entry_line(path, k), f"{field}[{r}] of prompt {key}")
                if not scale[0] <= score <= scale[1] and out_of_range != "keep":
                    message = (
                        f"{where(path, json_entry_line(path, k), f'{field}[{r}]')}: rating {value!r} of prompt "
                        f"{key} is outside {scale[0]}-{scale[1]}"
                    )
                    if out_of_range == "error":
                        raise DataFileError(message)
                    warnings.warn(f"{message}; recorded as missing (NaN)", stacklevel=2)
                    score = float("nan")
                out.append(Judgment(key, model, model, judge, score, rater=str(r)))
    return out


def read_tifa_annotations(path: str | Path, *, include_metrics: bool = False, judge: str = "human") -> list[Judgment]:
    """TIFA ``human_annotations.json`` (or ``..._with_scores.json``): 800 images, two 1-5 ratings each.

    Keys are image names ``<text id>_<model>``; entries hold ``text_id, image_path, text, human_scores, human_avg``
    (+ automatic metric scores in the ``with_scores`` file). ``prompt_id`` is the text id, ``candidate_id`` the
    image name, ``model`` the rest of the key. With ``include_metrics`` the automatic scores (``clipscore_vitb32``,
    ``tifa_blip2-flant5xl``, ...) are returned too, one judge per metric.

    Raises:
        DataFileError: malformed entries, non-numeric ratings, or ``human_avg`` disagreeing with the ratings.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFileError(f"{where(path, 1)}: expected a JSON object keyed by image name")
    base = {"text_id", "image_path", "text", "human_scores", "human_avg"}
    out = []
    for k, (key, entry) in enumerate(data.items()):
        at = lambda field, k=k: where(path, json_entry_line(path, k), field)  # noqa: E731 (error paths only)
        if not isinstance(entry, dict) or not isinstance(entry.get("text_id"), str):
            raise DataFileError(f"{at('text_id')}: missing in entry {key!r}")
        text_id = entry["text_id"]
        if not key.startswith(text_id + "_"):
            raise DataFileError(f"{at('text_id')}: {text_id!r} is not the prefix of the image name {key!r}")
        model = key[len(text_id) + 1 :]
        scores = entry.get("human_scores")
        if not isinstance(scores, list) or not scores:
            raise DataFileError(f"{at('human_scores')}: expected a non-empty list in entry {key!r}")
        values = []
        for r, value in enumerate(scores):
            try:
                values.append(as_number(value, path, None, "human_scores"))
            except DataFileError:
                as_number(value, path, json_entry_line(path, k), f"human_scores[{r}] of {key}")
            out.append(Judgment(text_id, key, model, judge, values[-1], rater=str(r)))
        average = as_number(entry["human_avg"], path, None, "human_avg") if "human_avg" in entry else None
        if average is not None and abs(average - np.mean(values)) > 1e-9:
            raise DataFileError(f"{at('human_avg')}: {entry['human_avg']} is not the mean of {scores} ({key})")
        if include_metrics:
            for name, value in entry.items():
                if name not in base and isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.append(Judgment(text_id, key, model, name, float(value)))
    return out


def read_tifa160_dsg_annotations(path: str | Path, *, judge: str = "human-dsg") -> list[Judgment]:
    """DSG's re-annotation of TIFA160 (``dsg_tifa160_anns.csv`` in t2v-metrics): 1-5 answers by identified workers.

    Columns ``data_type, model_type, item_id, source_id, worker_id, question, answer``. ``prompt_id`` is the TIFA
    text id (``source_id``), ``candidate_id`` the TIFA image name ``<source_id>_<model>`` (models mapped by
    :data:`TIFA160_MODELS`), ``rater`` the worker id.
    """
    path = Path(path)
    _, rows = read_table(path, ["model_type", "source_id", "worker_id", "answer"])
    out = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        model = TIFA160_MODELS.get(row["model_type"])
        if model is None:
            raise DataFileError(
                f"{where(path, line, 'model_type')}: unknown model {row['model_type']!r} "
                f"(known: {', '.join(TIFA160_MODELS)})"
            )
        candidate = f"{row['source_id']}_{model}"
        key = (candidate, row["worker_id"])
        if key in seen:
            raise DataFileError(f"{where(path, line, 'worker_id')}: worker rated {candidate} twice (line {seen[key]})")
        seen[key] = line
        score = as_number(row["answer"], path, line, "answer")
        out.append(Judgment(row["source_id"], candidate, model, judge, score, rater=row["worker_id"]))
    return out


def read_geneval_annotations(
    path: str | Path,
    *,
    model: str | None = None,
    answer: str = "task-quality",
    judge: str | None = None,
) -> list[Judgment]:
    """GenEval MTurk annotations (``annotations_<model>.csv``): 5 workers per image.

    ``prompt_id`` is ``Input.prompt_id`` as 5 digits (the GenEval prompt index), ``candidate_id`` is
    ``<prompt_id>/<image_id:05d>`` (the image URL's folder and file), ``rater`` the assignment's position among the
    image's 5 rows (the export has no worker ids). The score is the numeric answer column ``Answer.<answer>``:
    ``task-quality`` is the 1-4 "how well does the image fit the caption" rating (default); ``task-real-0`` is the 1-3
    realism of the first object. Records cut in two by a line break in the free-text object list (four in
    ``annotations_if-xl.csv``) are re-joined.

    Args:
        path: the CSV file.
        model: generator name (default: from the file name ``annotations_<model>.csv``).
        answer: which answer column to use.
        judge: judge name (default ``"human-<answer>"``).

    Raises:
        DataFileError: missing columns, short rows that cannot be repaired, non-numeric answers.
    """
    path = Path(path)
    if model is None:
        match = re.fullmatch(r"annotations_(.+)\.csv", path.name)
        if match is None:
            raise InputError(f"{path}: cannot infer the model from the file name; pass model=...")
        model = match.group(1)
    column = f"Answer.{answer}"
    _, rows = read_table(path, ["Input.prompt_id", "Input.image_id", column], rejoin_split_rows=True)
    judge = judge or f"human-{answer}"
    counter: dict[str, int] = {}
    out = []
    for line, row in rows:
        try:
            prompt = f"{int(row['Input.prompt_id']):05d}"
            image = int(row["Input.image_id"])
        except ValueError:
            raise DataFileError(
                f"{where(path, line, 'Input.prompt_id')}: ids must be integers, found "
                f"{row['Input.prompt_id']!r} / {row['Input.image_id']!r}"
            ) from None
        candidate = f"{prompt}/{image:05d}"
        raw = row[column]
        score = float("nan") if not raw.strip() else as_number(raw, path, line, column)
        rater = counter.get(candidate, 0)
        counter[candidate] = rater + 1
        out.append(Judgment(prompt, candidate, model, judge, score, rater=str(rater)))
    return out


def read_imagereward_rankings(path: str | Path, *, judge: str = "human-rank") -> list[Judgment]:
    """ImageReward ``test.json`` rankings: one judgment per generated image, ``score = -rank`` (1 = best -> -1).

    ``candidate_id`` is the image path; ties in the ranking stay ties.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFileError(f"{where(path, 1)}: expected a JSON list")
    out = []
    for k, record in enumerate(data):
        ok = (
            isinstance(record, dict)
            and isinstance(record.get("generations"), list)
            and isinstance(record.get("ranking"), list)
            and isinstance(record.get("id"), str)
        )
        if not ok or len(record["generations"]) != len(record["ranking"]):
            raise DataFileError(
                f"{where(path, json_entry_line(path, k), 'ranking')}: expected id, and generations and ranking lists "
                "of equal length"
            )
        for image, rank in zip(record["generations"], record["ranking"], strict=True):
            value = as_number(rank, path, None, "ranking") if isinstance(rank, (int, float)) else None
            if value is None or value < 1 or value != int(value):
                raise DataFileError(
                    f"{where(path, json_entry_line(path, k), 'ranking')}: rank {rank!r} is not a positive integer"
                )
            out.append(Judgment(record["id"], str(image), None, judge, -value))
    return out


def _load_array(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataFileError(f"{path}: not a readable .npy array ({exc})") from None
    import torch  # a dependency of the package; imported here to keep this module light

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataFileError(f"{path}: not a readable torch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, torch.Tensor):
        raise DataFileError(f"{path}: expected a tensor of scores, found {type(value).__name__}")
    return value.detach().double().numpy()


def read_t2v_metrics_scores(
    path: str | Path,
    prompt_ids: Sequence[str],
    models: Sequence[str] = GENAI_BENCH_MODELS,
    *,
    judge: str | None = None,
) -> list[Judgment]:
    """A t2v-metrics cached score tensor (``<result_dir>/<model>_<N>_prompts.pt``) as judgments.

    t2v-metrics' GenAI-Bench evaluation scores items in model-major order (for each generator, every prompt) and
    saves a tensor of shape (items, images per item, texts per item), here (M x P, 1, 1). ``.npy`` files are read too.
    The image axis is averaged and text 0 taken, as t2v-metrics' ``evaluate_scores`` does.

    Args:
        path: the ``.pt`` / ``.npy`` file.
        prompt_ids: prompt ids in the dataset's order (e.g. ``load_benchmark("genai-bench-527", ...).ids``).
        models: generators in t2v-metrics' order (default :data:`GENAI_BENCH_MODELS`).
        judge: judge name (default: the file name without ``_<N>_prompts``).

    Raises:
        DataFileError: unreadable file, or a number of scores that is not ``len(models) * len(prompt_ids)``.
    """
    path = Path(path)
    scores = _load_array(path)
    if scores.ndim == 3:
        scores = scores.mean(axis=1)[:, 0]
    elif scores.ndim == 2:
        scores = scores[:, 0]
    if scores.ndim != 1 or scores.size != len(models) * len(prompt_ids):
        raise DataFileError(
            f"{path}: {scores.size} scores (shape {scores.shape}), expected {len(models)} generators x "
            f"{len(prompt_ids)} prompts = {len(models) * len(prompt_ids)}"
        )
    name = judge or re.sub(r"_\d+_prompts$", "", path.stem)
    out = []
    for m, model in enumerate(models):
        for p, prompt in enumerate(prompt_ids):
            out.append(Judgment(prompt, model, model, name, float(scores[m * len(prompt_ids) + p])))
    return out


@dataclass(frozen=True)
class SkillCorrelation:
    """One row of a t2v-metrics ``<model>_<N>_per_skill.json``.

    ``pearson`` is converted to [-1, 1] (t2v-metrics stores 100 x r); ``pairwise_accuracy`` / ``epsilon`` are the
    tie-calibrated accuracy and its threshold.
    """

    skill: str
    pearson: float
    kendall_b: float
    pairwise_accuracy: float
    epsilon: float


def read_t2v_metrics_per_skill(path: str | Path) -> dict[str, SkillCorrelation]:
    """Read ``{skill: {"alignment": {"pearson", "kendall_b", "pairwise_acc": [acc, eps]}}}`` written by t2v-metrics."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFileError(f"{where(path, 1)}: expected a JSON object keyed by skill")
    out = {}
    for k, (skill, entry) in enumerate(data.items()):
        at = where(path, json_entry_line(path, k), f"{skill}.alignment")
        block = entry.get("alignment") if isinstance(entry, dict) else None
        if not isinstance(block, dict) or not {"pearson", "kendall_b", "pairwise_acc"} <= set(block):
            raise DataFileError(f"{at}: expected an object with pearson, kendall_b and pairwise_acc")
        acc = block["pairwise_acc"]
        if not isinstance(acc, (list, tuple)) or len(acc) != 2:
            raise DataFileError(f"{at}.pairwise_acc: expected [accuracy, epsilon], found {acc!r}")
        nums = [as_number(v, path, None, f"{skill}.alignment") for v in (block["pearson"], block["kendall_b"], *acc)]
        out[skill] = SkillCorrelation(skill, nums[0] / 100.0, nums[1], nums[2], nums[3])
    return out

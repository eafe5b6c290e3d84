"""Loader functions, one per file format, registered in
:data:`~noisyclip_metrics.evaluation.benchmarks.adapters.LOADERS`.

Each loader has the signature ``loader(spec, source, **options) -> list[Prompt]``; keyword-only parameters are the
options users may pass to :func:`~noisyclip_metrics.evaluation.benchmarks.load_benchmark`. Field names, categories and
skill
mappings come from the spec, so a new benchmark in a known format needs only a YAML file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.evaluation.benchmarks._files import (
    json_entry_line,
    read_json,
    read_jsonl,
    read_lines,
    read_table,
    require,
    short_repr,
    where,
)
from noisyclip_metrics.evaluation.benchmarks.adapters import LOADERS, BenchmarkSpec, Source
from noisyclip_metrics.evaluation.benchmarks.promptset import SKILLS, Prompt
from noisyclip_metrics.io.safepath import name_problem
from noisyclip_metrics.registry import did_you_mean

__all__ = [
    "load_delimited",
    "load_genai_bench",
    "load_geneval",
    "load_imagereward",
    "load_t2i_compbench",
    "load_tifa",
    "read_tifa_questions",
]


def _unique(prompts: list[Prompt], path: Path, line_of: Callable[[int], int | None]) -> list[Prompt]:
    """Check ids are unique; ``line_of(k)`` gives the line of the k-th record (only called on error)."""
    seen: dict[str, int] = {}
    for k, prompt in enumerate(prompts):
        if prompt.id in seen:
            first = line_of(seen[prompt.id])
            raise DataFileError(f"{where(path, line_of(k), 'id')}: duplicate id {prompt.id!r} (first at line {first})")
        seen[prompt.id] = k
    return prompts


def _checked_id(value: str, path: Path, line_of: Callable[[], int | None], field: str = "id") -> str:
    """A prompt id read from a file, refused when it cannot be a file name (ids name the folders of
    ``--save-images``): separators, ``..``, absolute paths, NUL/control characters, over-long ids."""
    problem = name_problem(value)
    if problem is not None:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise DataFileError(
            f"{where(path, line_of(), field)}: prompt id {shown} {problem}; prompt ids must be usable as file names"
        )
    return value


def _field(record: Any, name: str, kind: type | tuple[type, ...], path: Path, index: int) -> Any:
    """``record[name]`` of the ``index``-th JSON entry; the error names the entry's line (found only on error)."""
    try:
        return require(record, name, kind, path, None)
    except DataFileError:
        return require(record, name, kind, path, json_entry_line(path, index))


def _as_list(value: str | Sequence[str] | None, allowed: Sequence[str], what: str, spec: BenchmarkSpec) -> list[str]:
    values = list(allowed) if value is None else [value] if isinstance(value, str) else list(value)
    for v in values:
        if v not in allowed:
            raise InputError(
                f"{spec.name}: unknown {what} {v!r}{did_you_mean(str(v), allowed)} Known: {', '.join(allowed)}"
            )
    return values


@LOADERS.register("genai_bench")
def load_genai_bench(spec: BenchmarkSpec, source: Source) -> list[Prompt]:
    """GenAI-Bench ``genai_image.json`` (+ optional ``genai_skills.json``).

    ``genai_image.json`` maps a 5-digit prompt index to ``{"id", "prompt", ["prompt in Chinese"], ["models"]}``;
    the key is the prompt id. ``genai_skills.json`` maps each skill to 1-based prompt indices.
    """
    path = source.files["prompts"]
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFileError(f"{where(path, 1)}: expected an object keyed by prompt index, found {type(data).__name__}")
    prompts_by_id: dict[str, dict[str, Any]] = {}
    for k, (key, entry) in enumerate(data.items()):
        if not (key.isascii() and key.isdigit()):
            raise DataFileError(f"{where(path, json_entry_line(path, k), 'key')}: prompt index {key!r} is not a number")
        text = _field(entry, "prompt", str, path, k)
        inner = entry.get("id")
        if inner is not None and (not (str(inner).isascii() and str(inner).isdigit()) or int(inner) != int(key)):
            raise DataFileError(
                f"{where(path, json_entry_line(path, k), 'id')}: id {inner!r} does not match its key {key!r}"
            )
        extra: dict[str, Any] = {}
        if "prompt in Chinese" in entry:
            extra["prompt_zh"] = entry["prompt in Chinese"]
        if isinstance(entry.get("models"), dict):
            extra["models"] = tuple(entry["models"])
        prompts_by_id[key] = {"text": text, "extra": extra, "skills": []}
    skills_path = source.files.get("skills")
    if skills_path is not None:
        tags = read_json(skills_path)
        if not isinstance(tags, dict):
            raise DataFileError(f"{where(skills_path, 1)}: expected a JSON object {{skill: [prompt index, ...]}}")
        for k, (skill, indices) in enumerate(tags.items()):

            def at(k: int = k, skill: str = skill) -> str:  # location, computed only for an error message
                return where(skills_path, json_entry_line(skills_path, k), skill)

            if skill not in SKILLS:
                raise DataFileError(f"{at()}: unknown skill{did_you_mean(skill, SKILLS)}")
            if not isinstance(indices, list):
                raise DataFileError(f"{at()}: expected a list of prompt indices")
            for index in indices:
                if isinstance(index, bool) or not isinstance(index, int):
                    raise DataFileError(f"{at()}: prompt index {index!r} is not an integer")
                key = f"{index:05d}"
                if key not in prompts_by_id:
                    raise DataFileError(
                        f"{at()}: prompt index {index} is not in {path.name} "
                        f"({len(prompts_by_id)} prompts): the two files do not belong together"
                    )
                prompts_by_id[key]["skills"].append(skill)
    return [
        Prompt(key, item["text"], tuple(item["skills"]), spec.name, extra=item["extra"])
        for key, item in prompts_by_id.items()
    ]


@LOADERS.register("t2i_compbench")
def load_t2i_compbench(
    spec: BenchmarkSpec,
    source: Source,
    *,
    categories: str | Sequence[str] | None = None,
    split: str | Sequence[str] = "val",
) -> list[Prompt]:
    """T2I-CompBench one-prompt-per-line files ``<category>_<split>.txt`` (``full`` = ``<category>.txt``).

    Args:
        categories: categories to load (default: all eight).
        split: ``"val"`` (default; the split the benchmark's metrics use), ``"train"``, ``"full"`` or a sub-split
            such as ``"val_seen"``; or a list of them. Sub-splits exist for some categories only: the others are
            skipped.

    Prompt ids are ``<category>_<split>_<line-1:04d>``.
    """
    cats = _as_list(categories, spec.categories, "category", spec)
    splits = _as_list(split, spec.splits, "split", spec)
    optional = set(spec.fields.get("optional_splits", ()))
    prompts: list[Prompt] = []
    for s in splits:
        for cat in cats:
            name = f"{cat}.txt" if s == "full" else f"{cat}_{s}.txt"
            if name_problem(name) is not None:  # categories and splits come from the spec: files of the folder only
                raise DataFileError(f"{spec.origin or spec.name}: file name {name!r} {name_problem(name)}")
            path = source.folder / name
            if not path.is_file():
                if s in optional:
                    continue
                raise DataFileError(f"{path}: not found ({spec.name} category {cat!r}, split {s!r}). {spec.obtain}")
            for line, text in read_lines(path):
                prompts.append(
                    Prompt(f"{cat}_{s}_{line - 1:04d}", text, spec.skills_for(cat), spec.name, cat, s, {"file": name})
                )
    if not prompts:
        raise DataFileError(f"{source.folder}: no {spec.name} files for categories {cats} and splits {splits}")
    return prompts


def read_tifa_questions(path: str | Path, text_ids: set[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """TIFA ``tifa_v1.0_question_answers.json``: ``{text id: [question records]}`` in file order.

    Each record has ``id, caption, question, choices, answer, element_type, element``. With ``text_ids``, an id not
    among them is an error (the QA file does not belong to those text inputs).
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFileError(f"{where(path, 1)}: expected a JSON list of question records")
    out: dict[str, list[dict[str, Any]]] = {}
    for k, record in enumerate(data):
        for fld in ("id", "question", "element_type"):
            _field(record, fld, str, path, k)
        _field(record, "choices", list, path, k)
        _field(record, "answer", (str, int, float), path, k)
        if text_ids is not None and record["id"] not in text_ids:
            raise DataFileError(
                f"{where(path, json_entry_line(path, k), 'id')}: text id {record['id']!r} is not in the text inputs"
            )
        out.setdefault(record["id"], []).append(record)
    return out


@LOADERS.register("tifa")
def load_tifa(spec: BenchmarkSpec, source: Source, *, subsets: str | Sequence[str] | None = None) -> list[Prompt]:
    """TIFA v1.0 text inputs (list of ``{id, caption, [coco_val_id]}``), skills from the optional QA file.

    Args:
        subsets: source subsets to keep (``coco``, ``partiprompt``, ``paintskill``, ``drawbench``; default all).

    The category is the subset (the id prefix). With the question-answer file, each prompt's skills are its
    questions' element types mapped through the spec, and ``extra`` holds ``element_types`` and ``n_questions``.
    """
    keep = set(_as_list(subsets, spec.categories, "subset", spec))
    path = source.files["text_inputs"]
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFileError(f"{where(path, 1)}: expected a JSON list of {{id, caption}} records")
    for k, record in enumerate(data):
        _checked_id(_field(record, "id", str, path, k), path, lambda k=k: json_entry_line(path, k))
        _field(record, "caption", str, path, k)
    ids = {r["id"] for r in data}
    qa_path = source.files.get("question_answers")
    questions = read_tifa_questions(qa_path, ids) if qa_path is not None else {}
    prompts, kept = [], []
    for k, record in enumerate(data):
        subset = record["id"].split("_", 1)[0]
        if subset not in spec.categories:
            raise DataFileError(
                f"{where(path, json_entry_line(path, k), 'id')}: unknown subset prefix in {record['id']!r} "
                f"(known: {', '.join(spec.categories)})"
            )
        if subset not in keep:
            continue
        extra: dict[str, Any] = {}
        if "coco_val_id" in record:
            extra["coco_val_id"] = record["coco_val_id"]
        skills: tuple[str, ...] = ()
        if qa_path is not None:
            types = tuple(dict.fromkeys(q["element_type"] for q in questions.get(record["id"], [])))
            extra.update(element_types=types, n_questions=len(questions.get(record["id"], [])))
            skills = spec.skills_for(*types)
        prompts.append(Prompt(record["id"], record["caption"], skills, spec.name, subset, extra=extra))
        kept.append(k)
    return _unique(prompts, path, lambda k: json_entry_line(path, kept[k]))


@LOADERS.register("delimited")
def load_delimited(spec: BenchmarkSpec, source: Source) -> list[Prompt]:
    """CSV / TSV with a header (DrawBench, PartiPrompts); columns named in the spec's ``fields``.

    ``fields``: ``delimiter``, ``text`` (column), ``category`` (column or null), ``skill_columns`` (columns whose
    values are mapped through ``skill_map``), ``extra`` (columns kept verbatim) and ``id_format`` (default
    ``"{index:04d}"``, index = 0-based record number).
    """
    f = spec.fields
    path = source.files["prompts"]
    text_col, cat_col = f["text"], f.get("category")
    skill_cols = list(f.get("skill_columns", ()))
    extra_cols = list(f.get("extra", ()))
    required = [text_col, *([cat_col] if cat_col else []), *skill_cols, *extra_cols]
    _, rows = read_table(path, list(dict.fromkeys(required)), delimiter=f.get("delimiter", ","))
    id_format = f.get("id_format", "{index:04d}")
    prompts, lines = [], []
    for index, (line, row) in enumerate(rows):
        text = row[text_col].strip()
        if not text:
            raise DataFileError(f"{where(path, line, text_col)}: empty prompt")
        category = row[cat_col].strip() if cat_col else None
        if category is not None and spec.categories and category not in spec.categories:
            raise DataFileError(
                f"{where(path, line, cat_col)}: unknown category {category!r}{did_you_mean(category, spec.categories)}"
            )
        skills = spec.skills_for(*(row[c].strip() for c in skill_cols))
        extra = {c: row[c] for c in extra_cols}
        try:
            prompt_id = id_format.format(index=index)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise DataFileError(
                f"{spec.origin or spec.name}: field 'fields.id_format': {id_format!r} cannot format a record index "
                f"({type(exc).__name__}: {exc}); use e.g. '{{index:04d}}'"
            ) from None
        _checked_id(prompt_id, path, lambda line=line: line)
        prompts.append(Prompt(prompt_id, text, skills, spec.name, category, extra=extra))
        lines.append(line)
    return _unique(prompts, path, lines.__getitem__)


@LOADERS.register("geneval")
def load_geneval(spec: BenchmarkSpec, source: Source) -> list[Prompt]:
    """GenEval ``evaluation_metadata.jsonl``: ``{tag, include, [exclude], prompt}`` per line.

    Prompt ids are the 0-based line index as 5 digits (GenEval's output folder names and the ``Input.prompt_id``
    of its MTurk annotations). With ``generation_prompts.txt`` beside it, both files must list the same prompts.
    """
    path = source.files["metadata"]
    prompts, lines = [], []
    for index, (line, record) in enumerate(read_jsonl(path)):
        text = require(record, "prompt", str, path, line)
        tag = require(record, "tag", str, path, line)
        include = require(record, "include", list, path, line)
        if tag not in spec.categories:
            raise DataFileError(f"{where(path, line, 'tag')}: unknown tag {tag!r}{did_you_mean(tag, spec.categories)}")
        exclude = record.get("exclude", [])
        if not isinstance(exclude, list):
            raise DataFileError(f"{where(path, line, 'exclude')}: expected list, found {short_repr(exclude)}")
        extra = {"include": tuple(include), "exclude": tuple(exclude)}
        prompts.append(Prompt(f"{index:05d}", text, spec.skills_for(tag), spec.name, tag, extra=extra))
        lines.append(line)
    check = source.files.get("prompts_txt")
    if check is not None:
        listed = read_lines(check)
        if len(listed) != len(prompts):
            raise DataFileError(f"{check}: {len(listed)} prompts, but {path.name} has {len(prompts)}")
        for (line, text), prompt in zip(listed, prompts, strict=True):
            if text != prompt.text.strip():
                raise DataFileError(
                    f"{where(check, line)}: {text!r} differs from {path.name} prompt {prompt.id} {prompt.text!r}"
                )
    return _unique(prompts, path, lines.__getitem__)


@LOADERS.register("imagereward")
def load_imagereward(spec: BenchmarkSpec, source: Source) -> list[Prompt]:
    """ImageReward ``test.json`` / ``benchmark-prompts.json``: a list of ``{id, prompt, [generations, ranking]}``."""
    path = source.files["prompts"]
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFileError(f"{where(path, 1)}: expected a JSON list of {{id, prompt}} records")
    prompts = []
    for k, record in enumerate(data):
        _checked_id(_field(record, "id", str, path, k), path, lambda k=k: json_entry_line(path, k))
        text = _field(record, "prompt", str, path, k)
        extra: dict[str, Any] = {}
        if "generations" in record or "ranking" in record:
            gens = _field(record, "generations", list, path, k)
            ranking = _field(record, "ranking", list, path, k)
            if len(gens) != len(ranking):
                raise DataFileError(
                    f"{where(path, json_entry_line(path, k), 'ranking')}: {len(ranking)} ranks for {len(gens)} images"
                )
            extra["n_images"] = len(gens)
        prompts.append(Prompt(record["id"], text, (), spec.name, extra=extra))
    return _unique(prompts, path, lambda k: json_entry_line(path, k))

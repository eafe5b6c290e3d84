"""Render a leaderboard document (:func:`~noisyclip_metrics.leaderboard.build.leaderboard_document`) to files.

- ``index.html`` from ``templates/index.html.j2`` through a jinja2 environment with ``autoescape=True``: every user
  string (model, benchmark, prompt, scorer, provenance) is escaped; charts are inline SVG built with escaped labels
  (:mod:`.charts`); the drill-down data is JSON with ``<``, ``>`` and ``&`` as ``\\u`` escapes inside a
  ``<script type="application/json">`` block, which the page's script renders with ``textContent`` only.
- ``README.md``: Markdown tables (user strings escaped for Markdown and HTML) and ``charts/*.png`` (matplotlib).
- ``leaderboard.json``, ``leaderboard.csv`` (one row per model and scorer) and ``curves.csv`` (every curve point).

Examples:
    >>> md_escape("a|b <script>*x*</script>")
    'a\\\\|b &lt;script&gt;\\\\*x\\\\*&lt;/script&gt;'
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from noisyclip_metrics.io.files import atomic_write_text
from noisyclip_metrics.leaderboard.charts import Series, png_chart, svg_chart
from noisyclip_metrics.provenance import consecutive_runs

__all__ = [
    "compare_matrices",
    "environment",
    "fmt",
    "md_escape",
    "ranking_rows",
    "render_html",
    "render_markdown",
    "write_outputs",
]

METRIC_LABELS = {"pairwise_accuracy": "pairwise accuracy", "top1_agreement": "top-1 agreement", "spearman": "Spearman"}


def fmt(value: Any, digits: int = 3) -> str:
    """A number for display (``–`` for missing).

    Examples:
        >>> fmt(0.71234), fmt(None), fmt(float("nan"))
        ('0.712', '–', '–')
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ci(obj: dict[str, Any], key: str) -> str:
    if obj.get(key) is None:
        return "–"
    return f"{fmt(obj[key])} [{fmt(obj.get(key + '_low'))}, {fmt(obj.get(key + '_high'))}]"


def md_escape(text: Any) -> str:
    """Escape a user string for a Markdown table cell (HTML-escaped, Markdown punctuation backslashed)."""
    s = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]|#])", r"\\\1", s)


def environment() -> Environment:
    """The jinja2 environment of the templates (autoescape on, undefined names are errors)."""
    env = Environment(
        loader=PackageLoader("noisyclip_metrics.leaderboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["ci"] = _ci
    return env


def _scorers(doc: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(s for m in doc["models"] for s in m["scorers"]))


def _point(model_or_skill: dict[str, Any], scorer: str, fraction: float) -> dict[str, Any] | None:
    points = model_or_skill["curves"].get(scorer) or []
    if not points:
        return None
    return min(points, key=lambda p: (abs(p["fraction"] - fraction), p["fraction"]))


def _sort(value: Any) -> str:
    return "" if value is None else str(value)


def seed_text(seeds: list[int]) -> str:
    """How many evaluation seeds and which, runs of consecutive seeds as ranges.

    Examples:
        >>> seed_text([0, 1, 2, 3, 4, 5]), seed_text([100, 101, 7])
        ('6 (0-5)', '3 (7, 100-101)')
    """
    runs = consecutive_runs(seeds)
    return f"{len(seeds)} ({', '.join(str(a) if a == b else f'{a}-{b}' for a, b in runs)})"


def ranking_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[dict[str, str]]]]:
    """Header and cells (``text``, ``sort``) of the ranking table (also the first rows of ``leaderboard.csv``)."""
    ref = doc["settings"]["reference_fraction"]
    level = f"{100 * doc['settings']['confidence_level']:g}%"
    header = [
        "Rank",
        "Model",
        "Benchmark",
        "Judge",
        f"Judge score [{level} CI]",
        "Aligned",
        "Prompts",
        "Seeds",
        "Steps",
    ]
    scorers = _scorers(doc)
    for s in scorers:
        header += [f"{s}: pairwise acc. @ {ref:g}", f"{s}: earliest fraction"]
    rows = []
    for m in doc["models"]:
        cells = [
            {"text": str(m["rank"]), "sort": str(m["rank"])},
            {"text": m["name"], "sort": m["name"]},
            {"text": m["benchmark"], "sort": m["benchmark"]},
            {"text": m["judge"], "sort": m["judge"]},
            {"text": _ci(m, "final_judge_score"), "sort": _sort(m["final_judge_score"])},
            {"text": fmt(m["aligned_rate"]), "sort": _sort(m["aligned_rate"])},
            {"text": str(m["num_prompts"]), "sort": str(m["num_prompts"])},
            {"text": seed_text(m["seeds"]), "sort": str(len(m["seeds"]))},
            {"text": str(m["num_steps"]), "sort": str(m["num_steps"])},
        ]
        for s in scorers:
            p = _point(m, s, ref)
            acc = None if p is None else p["pairwise_accuracy"]
            cells.append(
                {"text": "–" if p is None else f"{_ci(p, 'pairwise_accuracy')} (k={p['step']})", "sort": _sort(acc)}
            )
            early = m["earliest_fraction"].get(s)
            cells.append({"text": fmt(early, 2), "sort": _sort(early)})
        rows.append(cells)
    return header, rows


#: Columns of :func:`ranking_rows` the page's ranking keeps (the rest, and the intervals, are on demand).
_COMPACT_COLUMNS = 5


def compact_ranking(
    header: list[str], rows: list[list[dict[str, str]]]
) -> tuple[list[str], list[list[dict[str, str]]]]:
    """The page's ranking, narrow enough for a laptop screen: rank, model, benchmark, judge, judge score, then each
    scorer's pairwise accuracy at the reference fraction as a bare number (its interval and step in ``title``);
    aligned rate, prompts, seeds, steps and earliest fractions stay in the full table.

    Examples:
        >>> head = ["Rank", "Model", "Benchmark", "Judge", "Judge score", "Aligned", "Prompts", "Seeds", "Steps",
        ...         "s: pairwise acc. @ 0.5", "s: earliest fraction"]
        >>> cells = [{"text": t, "sort": t} for t in ["1", "m", "b", "j", "0.8", "0.5", "9", "0-5", "20"]]
        >>> cells += [{"text": "0.812 [0.790, 0.830] (k=10)", "sort": "0.812"}, {"text": "0.25", "sort": "0.25"}]
        >>> h, r = compact_ranking(head, [cells])
        >>> h[5:], r[0][5]
        (['s @ 0.5'], {'text': '0.812', 'sort': '0.812', 'title': '0.812 [0.790, 0.830] (k=10)'})
    """
    keep = [i for i in range(len(header)) if i < _COMPACT_COLUMNS or ": pairwise acc. @ " in header[i]]
    compact = [header[i].replace(": pairwise acc. @ ", " @ ") for i in keep]
    out = []
    for row in rows:
        cells = [dict(row[i], title="") for i in keep[:_COMPACT_COLUMNS]]
        cells += [
            {"text": row[i]["text"].split(" ")[0], "sort": row[i]["sort"], "title": row[i]["text"]}
            for i in keep[_COMPACT_COLUMNS:]
        ]
        out.append(cells)
    return compact, out


def _curve_series(block: dict[str, Any], metric: str, label: str | None = None) -> list[Series]:
    out = []
    for scorer, pts in block["curves"].items():
        out.append(
            Series(
                label or scorer,
                [p["fraction"] for p in pts],
                [p[metric] for p in pts],
                [p[f"{metric}_low"] for p in pts],
                [p[f"{metric}_high"] for p in pts],
            )
        )
    return out


def _overlay_series(doc: dict[str, Any], scorer: str, metric: str = "pairwise_accuracy") -> list[Series]:
    return [
        s
        for m in doc["models"]
        if scorer in m["curves"]
        for s in _curve_series({"curves": {scorer: m["curves"][scorer]}}, metric, m["name"])
    ]


def _bon_label(row: dict[str, Any]) -> str:
    """A Best-of-N line's label: the scorer and its policy, or the reference's name (``random``, ``oracle``)."""
    return row["scorer"] if row["scorer"] == row["policy"] else f"{row['scorer']} ({row['policy']})"


def _bon_series(rows: list[dict[str, Any]], n: int) -> list[Series]:
    """One line per (scorer, policy) at ``N = n``, in order of cost; no cascades (``m > 1``: the table lists them)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["n"] == n and r.get("m", 1) == 1:
            label = _bon_label(r)
            groups.setdefault(label, []).append(r)
    return [
        Series(k, [r["cost_fraction"] for r in v], [r["judge_score"] for r in v])
        for k, v in ((k, sorted(v, key=lambda r: r["cost_fraction"] or 0)) for k, v in groups.items())
    ]


#: Lines in one Best-of-N chart at most, the references (``random``, ``oracle``) included.
MAX_BON_SERIES = 6


def bon_panels(rows: list[dict[str, Any]], n: int) -> list[tuple[str, list[Series]]]:
    """:func:`_bon_series` at ``N = n`` as small multiples: one chart per policy (split further when its scorers
    would pass :data:`MAX_BON_SERIES` lines), each with the references (policies without a scorer: ``random``,
    ``oracle``) drawn in it too; (caption, series) per chart.

    Examples:
        >>> rows = [{"n": 6, "scorer": s, "policy": p, "cost_fraction": 0.5, "judge_score": 0.8}
        ...         for s, p in [("random", "random"), ("oracle", "oracle")] + [(f"s{i}", "one-shot") for i in range(5)]
        ...         + [("s0", "halving")]]
        >>> for caption, series in bon_panels(rows, 6):
        ...     print(caption, [s.label for s in series])
        one-shot (1/2) ['s0 (one-shot)', 's1 (one-shot)', 's2 (one-shot)', 's3 (one-shot)', 'random', 'oracle']
        one-shot (2/2) ['s4 (one-shot)', 'random', 'oracle']
        halving ['s0 (halving)', 'random', 'oracle']
    """
    series = {s.label: s for s in _bon_series(rows, n)}
    policy = {_bon_label(r): str(r["policy"]) for r in rows if r["n"] == n and r.get("m", 1) == 1}
    references = [s for label, s in series.items() if policy[label] == label]
    room = max(1, MAX_BON_SERIES - len(references))
    panels = []
    for name in dict.fromkeys(p for label, p in policy.items() if p != label):
        mine = [s for label, s in series.items() if policy[label] == name]
        chunks = [mine[i : i + room] for i in range(0, len(mine), room)]
        for j, chunk in enumerate(chunks):
            caption = name if len(chunks) == 1 else f"{name} ({j + 1}/{len(chunks)})"
            panels.append((caption, chunk + references))
    return panels or ([("references", references)] if references else [])


def bon_summary(rows: list[dict[str, Any]], fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)) -> list[dict]:
    """The rows README.md shows: the largest N of each model, k nearest to ``fractions`` of T, and policies without
    a k (``random``, ``oracle``); no cascades (``m > 1``). T is taken as the largest k of the model's rows."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        n, steps = max(r["n"] for r in mine), max(r["k"] for r in mine) or 1
        ks = {round(f * steps) for f in fractions}
        out += [r for r in mine if r["n"] == n and r.get("m", 1) == 1 and (r["k"] in ks or r["scorer"] == r["policy"])]
    return out


#: Columns of :func:`search_summary`'s tables.
SEARCH_HEADER = [
    "Budget",
    "Best-of-B (clip-final)",
    "Best pruned search",
    "Plan (most chosen)",
    "Spent",
    "Search - Best-of-B",
    "Search / Best-of-{ref}",
    "Oracle best of B",
]


def search_summary(document: dict[str, Any]) -> list[list[str]]:
    """One budget-matched search document (``noisyclip bon search``) as table rows, one per budget: full-cost
    Best-of-B, the cross-fitted best pruned search over every scorer and family (its most chosen plan, what it
    spends, its difference to Best-of-B and ratio to Best-of-``reference_n`` with 95% paired intervals) and the
    oracle's best of B."""

    def interval(r: dict[str, Any], key: str, low: str, high: str) -> str:
        return "–" if r.get(key) is None else f"{fmt(r[key])} [{fmt(r.get(low))}, {fmt(r.get(high))}]"

    table = []
    rows = document["rows"]
    for budget in dict.fromkeys(r["budget"] for r in rows):
        here = [r for r in rows if r["budget"] == budget]
        best = next((r for r in here if r["row"] == "best-of-b"), None)
        search = next((r for r in here if r["row"] == "search" and r["scorer"] == r["family"] == "*"), None)
        oracle = next((r for r in here if r["row"] == "oracle"), None)
        if best is None and search is None:
            continue
        table.append(
            [
                f"{budget:g}",
                fmt(best and best["judge_score"]),
                fmt(search and search["judge_score"]),
                str(search["plan"]) if search else "–",
                fmt(search and search["spent"], 2),
                interval(search, "vs_best_of_b", "vs_best_of_b_low", "vs_best_of_b_high") if search else "–",
                interval(search, "ratio_to_reference", "ratio_low", "ratio_high") if search else "–",
                fmt(oracle and oracle["judge_score"]),
            ]
        )
    return table


def search_caption(document: dict[str, Any]) -> str:
    """What a search table is measured on: prompts, seeds, N, the judge, and the ceiling of all candidates."""
    seeds = document["seeds"]
    ceiling = next((r for r in document["rows"] if r["row"] == "oracle" and r["n"] == document["max_n"]), None)
    return (
        f"{document['prompts']} prompts, seeds {seeds[0]}–{seeds[-1]} ({len(seeds)} per prompt: a search starts up to "
        f"{document['max_n']}), judge {document['judge']}, T = {document['num_steps']}; plans chosen on half the "
        f"prompts and scored on the other half ({document['settings']['repeats']} random halvings); oracle best of "
        f"{document['max_n']}: {fmt(ceiling and ceiling['judge_score'])}."
    )


def _chance(block: dict[str, Any], metric: str) -> float | None:
    return block.get("chance", {}).get(metric)


def _charts(doc: dict[str, Any], draw: Any) -> dict[str, Any]:
    """Every chart of the page (or README), drawn by ``draw(series, key, **labels)``."""
    charts: dict[str, Any] = {"model": [], "overlay": [], "bon": []}
    for i, m in enumerate(doc["models"]):
        charts["model"].append(
            {
                metric: draw(
                    _curve_series(m, metric),
                    f"model-{i}-{metric}",
                    title=f"{m['name']}: {METRIC_LABELS[metric]}",
                    x_label="step fraction k/T",
                    y_label=METRIC_LABELS[metric],
                    reference=_chance(m, metric),
                )
                for metric in doc["metrics"]
            }
        )
    for j, s in enumerate(_scorers(doc)):
        charts["overlay"].append(
            draw(
                _overlay_series(doc, s),
                f"overlay-{j}",
                title=f"{s}: pairwise accuracy by model",
                x_label="step fraction k/T",
                y_label="pairwise accuracy",
                reference=0.5,
            )
        )
    for i, m in enumerate(doc["models"]):
        for n in sorted({r["n"] for r in m["bon"]}, reverse=True):  # the largest N first (README draws it only)
            for j, (caption, series) in enumerate(bon_panels(m["bon"], n)):
                charts["bon"].append(
                    draw(
                        series,
                        f"bon-{i}-n{n}-{j}",
                        title=f"{m['name']}: Best-of-{n}, {caption}",
                        x_label="cost fraction",
                        y_label="judge score",
                        reference=None,
                    )
                )
    return charts


def thumbnail_uri(path: Path, size: int) -> str | None:
    """A PNG ``data:`` URI of the image at ``path`` scaled to at most ``size`` pixels a side; None when it is missing
    or not an image."""
    import base64

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            small = img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    small.thumbnail((size, size))
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _images(folder: Path, prompt_id: str, seeds: Sequence[int], size: int) -> list[str | None]:
    """Each seed's ``<folder>/<prompt_id>/<seed>.png`` as a thumbnail URI (None: none saved; a prompt id that would
    lead out of ``folder`` has none)."""
    from noisyclip_metrics.errors import InputError
    from noisyclip_metrics.io.safepath import safe_join

    try:
        paths = [safe_join(folder, prompt_id, f"{s}.png", what="prompt id") for s in seeds]
    except InputError:
        return [None] * len(seeds)
    return [thumbnail_uri(p, size) if p.is_file() else None for p in paths]


def _previews(folder: Path, prompt_id: str, seeds: Sequence[int], size: int) -> tuple[list[int], list[list[Any]]]:
    """The x̂0 previews ``evaluate --save-previews`` saved for a prompt (``<seed>.step<k>.png``): their steps, and per
    seed one thumbnail URI (or None) per step. None found (or a prompt id that would lead out of ``folder``): no
    steps."""
    import re

    from noisyclip_metrics.errors import InputError
    from noisyclip_metrics.io.safepath import safe_join

    try:
        prompt_folder = safe_join(folder, prompt_id, what="prompt id")
    except InputError:
        return [], []
    if not prompt_folder.is_dir():
        return [], []
    wanted = {str(s) for s in seeds}
    found: dict[tuple[str, int], Path] = {}
    for path in prompt_folder.glob("*.step*.png"):
        match = re.fullmatch(r"(-?\d+)\.step(\d+)\.png", path.name)
        if match and match.group(1) in wanted:
            found[(match.group(1), int(match.group(2)))] = path
    steps = sorted({k for _, k in found})
    return steps, [
        [thumbnail_uri(found[(str(s), k)], size) if (str(s), k) in found else None for k in steps] for s in seeds
    ]


def _drill(
    doc: dict[str, Any],
    entries: list[Any],
    fractions: tuple[float, ...],
    images: dict[str, Path] | None = None,
    thumbnail: int = 96,
) -> dict[str, Any]:
    by_name = {e.name: e for e in entries}
    images = images or {}
    models = []
    for m in doc["models"]:
        e = by_name[m["name"]]
        columns, arrays = [], []
        for scorer, arr in e.data.scores.items():
            steps = np.flatnonzero(~np.isnan(arr).all(axis=(1, 2)))
            if not len(steps):
                continue
            chosen = dict.fromkeys(int(steps[np.argmin(np.abs(steps / e.data.num_steps - f))]) for f in fractions)
            for k in chosen:
                columns.append(f"{scorer} @ {k / e.data.num_steps:.2f} (k={k})")
                arrays.append(arr[k])
        prompts = []
        for i, (pid, text, skills) in enumerate(zip(e.data.prompt_ids, e.prompts, e.skills, strict=True)):
            judge = e.data.judge[i]
            prompts.append(
                {
                    "id": pid,
                    "text": text,
                    "skills": list(skills),
                    "judge": _round(judge),
                    "mean_judge": _round([np.nanmean(judge)])[0],
                    "aligned": _round(e.data.aligned[i]),
                    "scores": [_round(a[i]) for a in arrays],
                }
            )
            if m["name"] in images:
                prompts[-1]["images"] = _images(images[m["name"]], pid, e.data.seeds, thumbnail)
                steps, previews = _previews(images[m["name"]], pid, e.data.seeds, thumbnail)
                if steps:
                    prompts[-1]["preview_columns"] = [f"x̂0 at {k / e.data.num_steps:.2f} (k={k})" for k in steps]
                    prompts[-1]["previews"] = previews
        models.append({"name": m["name"], "seeds": list(e.data.seeds), "columns": columns, "prompts": prompts})
    return {"models": models}


def _round(values: Any) -> list[float | None]:
    return [round(float(v), 4) if np.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


def compare_matrices(doc: dict[str, Any]) -> list[tuple[str, list[str], list[list[dict[str, str]]]]]:
    """The ``compare`` key as matrices, models in rank order: (title, names, rows of cells), one for the judge score
    and one per scorer's pairwise accuracy; a cell is the row model minus the column model with its paired interval
    (``text``) and ``verdict``: ``better`` / ``worse`` when the interval excludes 0, ``unclear``, ``self`` or ``none``
    (no shared prompts).

    Examples:
        >>> doc = {"models": [{"name": "a"}, {"name": "b"}], "compare": {"reference_fraction": 0.5, "pairs": [
        ...     {"a": "b", "b": "a", "prompts": 9, "judge_score": {"difference": -0.1, "low": -0.2, "high": -0.05},
        ...      "pairwise_accuracy": {}}]}}
        >>> title, names, rows = compare_matrices(doc)[0]
        >>> title, [[c["text"] for c in r] for r in rows], rows[0][1]["verdict"]
        ('judge score', [['–', '+0.100 [+0.050, +0.200]'], ['-0.100 [-0.200, -0.050]', '–']], 'better')
    """
    compare = doc.get("compare")
    if not compare:
        return []
    names = [m["name"] for m in doc["models"]]
    by_pair: dict[tuple[str, str], dict[str, Any]] = {}
    for pair in compare["pairs"]:
        by_pair[pair["a"], pair["b"]] = pair
        by_pair[pair["b"], pair["a"]] = dict(pair, sign=-1)
    scorers = list(dict.fromkeys(s for p in compare["pairs"] for s in p["pairwise_accuracy"]))

    def cell(row: str, col: str, pick: Any) -> dict[str, str]:
        pair = by_pair.get((row, col))
        est = pick(pair) if pair else None
        if row == col or est is None:
            return {"text": "–", "verdict": "self" if row == col else "none", "prompts": ""}
        sign = pair.get("sign", 1)
        value, low, high = (round(sign * est[k], 3) + 0.0 for k in ("difference", "low", "high"))  # no "-0.000"
        low, high = min(low, high), max(low, high)
        verdict = "better" if low > 0 else "worse" if high < 0 else "unclear"
        return {"text": f"{value:+.3f} [{low:+.3f}, {high:+.3f}]", "verdict": verdict, "prompts": str(pair["prompts"])}

    metrics: list[tuple[str, Any]] = [("judge score", lambda p: p["judge_score"])]
    ref = compare["reference_fraction"]
    metrics += [
        (f"{s}: pairwise accuracy at k/T ≈ {ref:g}", lambda p, s=s: p["pairwise_accuracy"].get(s)) for s in scorers
    ]
    return [(title, names, [[cell(r, c, pick) for c in names] for r in names]) for title, pick in metrics]


def script_json(data: Any) -> Markup:
    """JSON safe inside a ``<script type="application/json">`` element (no ``<``, ``>``, ``&`` characters)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


def render_html(
    doc: dict[str, Any],
    entries: list[Any],
    fractions: tuple[float, ...],
    images: dict[str, Path] | None = None,
    thumbnail: int = 96,
) -> str:
    """The self-contained ``index.html``; ``images``: entry name -> its ``--save-images`` folder (thumbnails of the
    final images are embedded in the drill-down)."""
    header, rows = ranking_rows(doc)
    charts = _charts(doc, lambda series, key, **kw: svg_chart(series, **kw))
    ref = doc["settings"]["reference_fraction"]
    skill_tables = []
    for m in doc["models"]:
        table = []
        for skill, block in m["skills"].items():
            cells = []
            for s in m["scorers"]:
                p, last = _point(block, s, ref), (block["curves"].get(s) or [None])[-1]
                cells.append(
                    (
                        _ci(p, "pairwise_accuracy") if p else "–",
                        fmt(last and last["pairwise_accuracy"]),
                        fmt(block["earliest_fraction"].get(s), 2),
                    )
                )
            table.append(
                {
                    "skill": skill,
                    "prompts": block["num_prompts"],
                    "judge": fmt(block["final_judge_score"]),
                    "cells": cells,
                }
            )
        skill_tables.append(table)
    return (
        environment()
        .get_template("index.html.j2")
        .render(
            doc=doc,
            header=header,
            rows=rows,
            compact=compact_ranking(header, rows),
            charts=charts,
            skill_tables=skill_tables,
            metric_labels=METRIC_LABELS,
            drill=script_json(_drill(doc, entries, fractions, images, thumbnail)),
            provenance=[_provenance(r) for r in doc["provenance"]],
            compare=compare_matrices(doc),
            bon=doc.get("bon", []),
            search=[
                (d, search_caption(d), [h.format(ref=d["reference_n"]) for h in SEARCH_HEADER], search_summary(d))
                for d in doc.get("search", [])
            ],
            ref=ref,
        )
    )


def _provenance(run: dict[str, Any]) -> list[tuple[str, str]]:
    keys = [
        "run_id",
        "source",
        "model",
        "benchmark",
        "model_info",
        "sampler",
        "seeds",
        "scorers",
        "judge",
        "num_prompts",
        "package_version",
        "git_revision",
        "created",
        "timing",
    ]
    return [
        (k, v if isinstance(v, str) else json.dumps(v, sort_keys=True))
        for k in keys
        if (v := run.get(k)) not in (None, "", {}, [])
    ]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(doc: dict[str, Any], pngs: dict[str, Path] | None, out: Path) -> str:
    """``README.md``: ranking, charts (when drawn), earliest fractions, per-skill and BoN tables, provenance."""
    header, rows = ranking_rows(doc)
    ref = doc["settings"]["reference_fraction"]
    level = round(100 * doc["settings"]["confidence_level"])
    parts = [
        f"# {md_escape(doc['title'])}",
        "",
        f"Generated {doc['generated']} by `noisyclip leaderboard build` (noisyclip-metrics "
        f"{doc['package_version']}). Within-prompt pairwise accuracy of each scorer at step k against the "
        f"judge's score of the final image; {level}% bootstrap intervals over prompts "
        f"({doc['settings']['n_resamples']} resamples). Earliest fraction: first k/T reaching "
        f"{doc['settings']['within']:.0%} of the final step's improvement over chance.",
        "",
        "## Ranking",
        "",
        _md_table(header, [[c["text"] for c in r] for r in rows]),
        "",
    ]
    compare = compare_matrices(doc)
    if compare:
        _, names, matrix = compare[0]
        parts += [
            "## Compare models",
            "",
            f"Mean judge score of the row model minus the column model on the prompts both were evaluated on, with "
            f"paired {level}% bootstrap intervals (the prompts resampled for both together); each scorer's accuracy "
            "difference: `leaderboard.json`, key `compare`.",
            "",
            _md_table(
                ["Model", *names], [[name, *(c["text"] for c in row)] for name, row in zip(names, matrix, strict=True)]
            ),
            "",
        ]
    if pngs:
        parts += ["## Timestep-versus-accuracy curves", ""]
        for key, path in pngs.items():
            if not key.startswith("bon"):
                parts += [f"![{key}]({path.relative_to(out).as_posix()})", ""]
    parts += ["## Per skill", ""]
    for m in doc["models"]:
        parts += [f"### {md_escape(m['name'])}", ""]
        head = ["Skill", "Prompts", "Judge score"] + [f"{s} @ {ref:g}" for s in m["scorers"]]
        body = [
            [skill, str(b["num_prompts"]), fmt(b["final_judge_score"])]
            + [_ci(p, "pairwise_accuracy") if (p := _point(b, s, ref)) else "–" for s in m["scorers"]]
            for skill, b in m["skills"].items()
        ]
        parts += [_md_table(head, body) if body else "No skill tags.", ""]
    if doc.get("bon"):
        parts += [
            "## Best-of-N cost and quality",
            "",
            "Largest N of each model, k near 1/4, 1/2, 3/4 and all of T "
            "(every row, cascades included: `leaderboard.json`, key `bon`).",
            "",
        ]
        parts += [
            _md_table(
                ["Model", "Scorer", "Policy", "N", "k", "Cost fraction", "Judge score", "Prompts"],
                [
                    [
                        r["model"],
                        r["scorer"],
                        str(r["policy"]),
                        str(r["n"]),
                        str(r["k"]),
                        fmt(r["cost_fraction"]),
                        fmt(r["judge_score"]),
                        str(r["prompts"]),
                    ]
                    for r in bon_summary(doc["bon"])
                ],
            ),
            "",
        ]
        parts += [f"![{k}]({p.relative_to(out).as_posix()})\n" for k, p in (pngs or {}).items() if k.startswith("bon")]
    if doc.get("search"):
        parts += [
            "## Budget-matched search",
            "",
            "Judge score of the pick at a budget of B full trajectories (scorings counted): full-cost Best-of-B "
            "against a search that starts more candidates and prunes early (`leaderboard.json`, key `search`).",
            "",
        ]
        for d in doc["search"]:
            head = [h.format(ref=d["reference_n"]) for h in SEARCH_HEADER]
            parts += [f"### {md_escape(d['model'])}", "", md_escape(search_caption(d)), ""]
            parts += [_md_table(head, search_summary(d)), ""]
    parts += ["## Provenance", ""]
    parts += [
        _md_table(
            ["Run", "Model", "Benchmark", "Seeds", "Sampler", "Judge", "Version", "Git", "Created"],
            [
                [
                    r["run_id"],
                    r["model"],
                    r["benchmark"],
                    " ".join(map(str, r["seeds"])),
                    json.dumps(r["sampler"], sort_keys=True),
                    str(r["judge"].get("name", "")),
                    r.get("package_version", ""),
                    r.get("git_revision", ""),
                    r.get("created", ""),
                ]
                for r in doc["provenance"]
            ],
        ),
        "",
    ]
    return "\n".join(parts)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([["" if v is None else v for v in r] for r in rows])
    return buf.getvalue()


def _tables_csv(doc: dict[str, Any]) -> tuple[str, str]:
    ref = doc["settings"]["reference_fraction"]
    lb_head = [
        "rank",
        "name",
        "model",
        "benchmark",
        "judge",
        "final_judge_score",
        "final_judge_score_low",
        "final_judge_score_high",
        "aligned_rate",
        "num_prompts",
        "num_seeds",
        "num_steps",
        "scorer",
        "reference_step",
        "pairwise_accuracy",
        "pairwise_accuracy_low",
        "pairwise_accuracy_high",
        "top1_agreement",
        "spearman",
        "final_pairwise_accuracy",
        "earliest_fraction",
    ]
    lb_rows, curve_rows = [], []
    metrics = [c for m in doc["metrics"] for c in (m, f"{m}_low", f"{m}_high")]
    for m in doc["models"]:
        for s in m["scorers"]:
            p, pts = _point(m, s, ref), m["curves"].get(s) or []
            lb_rows.append(
                [
                    m["rank"],
                    m["name"],
                    m["model"],
                    m["benchmark"],
                    m["judge"],
                    m["final_judge_score"],
                    m["final_judge_score_low"],
                    m["final_judge_score_high"],
                    m["aligned_rate"],
                    m["num_prompts"],
                    len(m["seeds"]),
                    m["num_steps"],
                    s,
                    p and p["step"],
                    p and p["pairwise_accuracy"],
                    p and p["pairwise_accuracy_low"],
                    p and p["pairwise_accuracy_high"],
                    p and p["top1_agreement"],
                    p and p["spearman"],
                    pts[-1]["pairwise_accuracy"] if pts else None,
                    m["earliest_fraction"].get(s),
                ]
            )
        for skill, block in [("", m), *m["skills"].items()]:
            for s, pts in block["curves"].items():
                curve_rows += [
                    [
                        m["name"],
                        m["benchmark"],
                        skill,
                        s,
                        p["step"],
                        p["fraction"],
                        *(p[c] for c in metrics),
                        p["pairs"],
                    ]
                    for p in pts
                ]
    curve_head = ["name", "benchmark", "skill", "scorer", "step", "fraction", *metrics, "pairs"]
    return _csv(lb_head, lb_rows), _csv(curve_head, curve_rows)


def write_outputs(
    doc: dict[str, Any], entries: list[Any], out: Path, config: Any, images: dict[str, Path] | None = None
) -> list[Path]:
    """Write every output file into ``out`` (which exists); returns the paths."""
    page = render_html(doc, entries, config.drill_fractions, images, config.thumbnail)
    files = [atomic_write_text(out / "index.html", page)]
    pngs: dict[str, Path] | None = None
    if config.charts:
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # optional dependency: README without charts
            pngs = None
        else:
            specs = _charts(doc, lambda series, key, **kw: (key, series, kw))
            largest = {i: max(r["n"] for r in m["bon"]) for i, m in enumerate(doc["models"]) if m["bon"]}
            first_n = [
                spec for spec in specs["bon"] if spec[0].startswith(tuple(f"bon-{i}-n{n}-" for i, n in largest.items()))
            ]
            wanted = [m["pairwise_accuracy"] for m in specs["model"]] + specs["overlay"] + first_n
            pngs = {key: png_chart(series, out / "charts" / f"{key}.png", **kw) for key, series, kw in wanted}
            files += list(pngs.values())
    files.append(atomic_write_text(out / "README.md", render_markdown(doc, pngs, out)))
    files.append(atomic_write_text(out / "leaderboard.json", json.dumps(doc, indent=1, allow_nan=False) + "\n"))
    lb, curves = _tables_csv(doc)
    files.append(atomic_write_text(out / "leaderboard.csv", lb))
    files.append(atomic_write_text(out / "curves.csv", curves))
    umask = os.umask(0o022)
    os.umask(umask)
    for path in files:  # atomic writes create private files; a published page is world-readable like the PNGs
        path.chmod(0o666 & ~umask)
    return files

"""``noisyclip bon``: early-stopping Best-of-N, live (``run``), from recorded results (``offline``), the threshold
policy's calibration (``calibrate``), a policy's settings for a budget (``fit``) and budget-matched search
(``search``; ``run --budget`` runs the plan it chooses)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noisyclip_metrics.cli import COMMANDS, Command, OneLineParser
from noisyclip_metrics.cli.core import add_dataclass_arguments, dataclass_from_args, settings_command
from noisyclip_metrics.errors import InputError


@dataclass(frozen=True)
class RunSettings:
    """Settings of ``noisyclip bon run``; :func:`run_settings` adds one setting per field of the registered policies.

    Args:
        pipeline: diffusers pipeline folder or registered id (world:sd-base).
        out: folder for the chosen image(s) and account.json.
        prompt: one prompt, or n prompts (one per candidate); or --prompts-file.
        prompts_file: text file, one prompt per line: a Best-of-N each, batched (see --batch-prompts); the results
            go to OUT/NNNN/ and a rerun resumes where it stopped.
        batch_prompts: with --prompts-file: prompts whose candidates share one batch.
        progress: with --prompts-file: show a progress bar.
        n: candidates N (default: 6, or the plan's with --budget).
        seeds: one seed per candidate (default: 0..n-1).
        budget: budget-matched search: full trajectories to spend (B = 6: the denoiser calls of full-cost
            Best-of-6); with --plan-from the scorer and plan are chosen for it, else the policy must fit it.
        plan_from: with --budget: a results store of recorded runs of this pipeline to choose the plan on (noisyclip
            bon search); its scorer, N and policy replace --scorer, --n and --policy.
        max_batch: at most this many candidates per denoiser call (large N on a small GPU; default: all at once).
        policy: early-stopping policy (a registered name: one-shot, halving, funnel, threshold...).
        scorer: scorer that ranks the candidates (a registered name).
        model: the scorer's CLIP (model id or folder; world ids by default).
        final_scorer: cascade: this scorer picks one of the m finished survivors at the last step (e.g. clip-final).
        final_model: the final scorer's CLIP (default: as for --model).
        steps: denoising steps T (the pipeline's default).
        guidance_scale: classifier-free guidance scale (the pipeline's default).
        negative_prompt: negative prompt.
        height: image height in pixels.
        width: image width in pixels.
        device: torch device of the pipeline and scorers (cpu, cuda, cuda:1...).
        dtype: pipeline dtype: float32, float16 or bfloat16 (scorers stay float32).
    """

    pipeline: str
    out: Path
    prompt: tuple[str, ...] | None = None
    prompts_file: Path | None = None
    batch_prompts: int = 8
    progress: bool = True
    n: int | None = None
    seeds: tuple[int, ...] | None = None
    budget: float | None = None
    plan_from: Path | None = None
    max_batch: int | None = None
    policy: str = "one-shot"
    scorer: str = "noisyclip"
    model: str | None = None
    final_scorer: str | None = None
    final_model: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    height: int | None = None
    width: int | None = None
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        from noisyclip_metrics.bon.policies import POLICIES
        from noisyclip_metrics.scoring.scorers import list_scorers

        if (self.prompt is None) == (self.prompts_file is None):
            raise InputError("--prompt / --prompts-file: expected exactly one of them")
        if self.batch_prompts < 1:
            raise InputError(f"--batch-prompts: expected >= 1, got {self.batch_prompts}")
        if self.policy not in POLICIES:
            raise InputError(f"--policy: expected one of {', '.join(sorted(POLICIES))}, got {self.policy!r}")
        for flag, name in (("--scorer", self.scorer), ("--final-scorer", self.final_scorer)):
            if name is not None and name not in list_scorers():
                raise InputError(f"{flag}: expected one of {', '.join(list_scorers())}, got {name!r}")


def run_settings() -> type[RunSettings]:
    """:class:`RunSettings` with one optional setting per field of every registered policy dataclass (its type, and
    its ``help`` metadata as the description), so that a policy a plugin registers gets its flags and ``--config``
    keys too (built anew on each call: the registry may have grown). A setting left unset takes the policy's default
    (:func:`_policy`)."""
    import inspect
    import typing

    from noisyclip_metrics.bon.policies import POLICIES

    names = sorted(POLICIES)
    fields, docs = [], []
    for name, owners in _policy_fields().items():
        policy, f = owners[0]
        hint = typing.get_type_hints(POLICIES.get(policy)).get(name)
        kind = Path if f.metadata.get("path") else hint
        fields.append((name, kind | None, dataclasses.field(default=None)))
        default = "" if f.default is dataclasses.MISSING else f" (default: {f.default})"
        users = ", ".join(o for o, _ in owners) if len(owners) < len(names) else "every policy"
        docs.append(f"    {name}: {users}: {f.metadata.get('help', name)}{default}.")
    doc = inspect.cleandoc(RunSettings.__doc__ or "") + "\n" + "\n".join(docs)
    return dataclasses.make_dataclass(
        "RunSettings", fields, bases=(RunSettings,), frozen=True, namespace={"__doc__": doc, "__module__": __name__}
    )


def _save(result: Any, out: Path, extra: dict[str, Any]) -> None:
    """The chosen images as PNGs and the account (written last, atomically: it marks the prompt as done)."""
    from PIL import Image

    from noisyclip_metrics.io.files import write_json

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("chosen-*.png"):  # of an interrupted or earlier run
        stale.unlink()
    files = []
    for rank, (seed, img) in enumerate(zip(result.seeds, result.images, strict=True)):
        path = out / f"chosen-{rank}-seed{seed}.png"
        Image.fromarray((img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
        files.append(path.name)
    write_json(out / "account.json", {**result.to_json(), "images": files, **extra})


def _todo(out: Path, prompts: list[str], same: dict[str, Any]) -> list[int]:
    """Indices of the prompts without a finished account in ``out``.

    Refuses an ``out`` written for another prompt file or with other settings ``same`` (account keys and values).
    """
    import json

    todo = []
    for i, prompt in enumerate(prompts):
        path = out / f"{i:04d}" / "account.json"
        if not path.is_file():
            todo.append(i)
            continue
        try:
            done = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"--out: unreadable {path} ({err}); remove that folder to rerun the prompt") from None
        if done.get("prompt") != prompt:
            raise InputError(
                f"--out: {path} is the result of prompt {done.get('prompt')!r}, not line {i + 1} of "
                f"--prompts-file ({prompt!r}); use another --out"
            )
        for key, value in same.items():
            if done.get(key) != value:
                raise InputError(
                    f"--out: {path} was run with {key} = {done.get(key)!r}, this run has {value!r}; use "
                    "another --out to change settings"
                )
    return todo


def _default_model(pipeline: str, scorer: str) -> str:
    """The scorer's model the pipeline's plugin declares (``world:clip`` for the world's frozen scorers)."""
    from noisyclip_metrics.plugins import run_defaults
    from noisyclip_metrics.scoring.scorers import scorer_spec

    models = run_defaults(pipeline).models
    model = models.get(scorer) if scorer_spec(scorer).fine_tuned else models.get("clip")
    if model is None:
        raise InputError(f"--model: {pipeline} declares no model for {scorer!r}; pass the CLIP checkpoint folder or id")
    return model


def _policy_fields() -> dict[str, list[tuple[str, Any]]]:
    """Each field of a registered policy dataclass (but ``name``) -> the (policy, field) pairs that have it."""
    from noisyclip_metrics.bon.policies import POLICIES

    found: dict[str, list[tuple[str, Any]]] = {}
    for policy in POLICIES:
        factory = POLICIES.get(policy)
        if dataclasses.is_dataclass(factory):
            for f in dataclasses.fields(factory):
                if f.name != "name":
                    found.setdefault(f.name, []).append((policy, f))
    return found


def _policy(args: RunSettings, steps: int | None) -> Any:
    """The policy ``--policy`` names, from its fields' flags: a flag not given takes the field's default, or its
    ``fallback`` from T; a required field without one is a one-line error naming the flag."""
    from noisyclip_metrics.bon.policies import build_policy

    params: dict[str, Any] = {}
    for name, owners in _policy_fields().items():
        f = dict(owners).get(args.policy)
        if f is None:
            continue
        value = getattr(args, name)
        if value is None and "fallback" in f.metadata:
            value = f.metadata["fallback"](steps or 20)
        if value is None and f.default is dataclasses.MISSING:
            need = f.metadata.get("missing", f"a value for {name}")
            raise InputError(f"--{name.replace('_', '-')}: the {args.policy} policy needs {need}")
        if value is not None:
            params[name] = tuple(value) if isinstance(value, list) else value
    return build_policy(args.policy, **params)


def _run_run(args: RunSettings) -> int:
    from noisyclip_metrics.bon.early import EarlyBestOfN
    from noisyclip_metrics.diffusion.pipelines import load_pipeline
    from noisyclip_metrics.io.files import read_prompt_file
    from noisyclip_metrics.plugins import run_defaults
    from noisyclip_metrics.scoring.factory import resolve_model
    from noisyclip_metrics.scoring.scorers import build_scorer

    prompts = None if args.prompts_file is None else read_prompt_file(args.prompts_file)  # before the slow loads
    pipe = load_pipeline(args.pipeline, args.device, args.dtype)
    steps, guidance = args.steps, args.guidance_scale
    defaults = run_defaults(args.pipeline)  # the plugin's sampler for its pipelines (the world's), none for a folder
    steps = steps or defaults.num_inference_steps
    guidance = guidance if guidance is not None else defaults.guidance_scale
    plan: dict[str, Any] = {}
    if args.plan_from is not None:
        fit, recorded = _choose_plan(args, steps)
        n, policy = fit.plan.n, fit.plan.policy()
        args = dataclasses.replace(
            args,
            scorer=fit.scorer,
            final_scorer="clip-final" if fit.plan.cascade else None,
            # the CLIPs the plan was chosen with, unless others are named
            model=args.model or recorded.scorers.get(fit.scorer, {}).get("model"),
            final_model=args.final_model or recorded.scorers.get("clip-final", {}).get("model"),
        )
        plan = {
            "budget": args.budget,
            "plan": fit.plan.label,
            "planned_spent": round(fit.spent, 6),
            "plan_from": {"run_id": recorded.run_id, "prompts": fit.prompts, "judge_score": fit.judge_score},
        }
    else:
        n, policy = args.n or 6, _policy(args, steps)
        if args.budget is not None:
            plan = {"budget": args.budget, "planned_spent": _check_budget(policy, n, steps, args.budget)}
    device = pipe.device if args.device else None
    model = resolve_model(args.model or _default_model(args.pipeline, args.scorer), device)
    scorer = build_scorer(args.scorer, model=model, vae=pipe.vae)
    final = None
    if args.final_scorer is not None:
        final_model = resolve_model(args.final_model or _default_model(args.pipeline, args.final_scorer), device)
        final = build_scorer(args.final_scorer, model=final_model, vae=pipe.vae)
    bon = EarlyBestOfN(pipe, scorer, policy, final_scorer=final, max_batch=args.max_batch)
    kwargs = {
        "n": n,
        "seeds": args.seeds,
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "height": args.height,
        "width": args.width,
        "negative_prompt": args.negative_prompt,
    }
    extra = {"pipeline_id": args.pipeline, "model": args.model, "final_model": args.final_model, **plan}
    if prompts is None:
        result = bon(args.prompt[0] if len(args.prompt) == 1 else list(args.prompt), **kwargs)
        _save(result, args.out, extra)
        print(
            f"chose seed(s) {list(result.seeds)} of {result.n}: {result.denoiser_evals} denoiser calls "
            f"({result.cost_fraction:.2f} of full BoN), {result.scorer_evals} scorings"
            + (f" + {result.final_scorer_evals} by {result.final_scorer}" if result.final_scorer else "")
            + f" -> {args.out}"
        )
        return 0
    from tqdm.auto import tqdm

    todo = _todo(args.out, prompts, {"n": n, "policy": policy.name, "scorer": scorer.name})
    calls = full = 0
    with tqdm(total=len(todo), desc="bon run", unit="prompt", disable=not args.progress) as bar:
        for start in range(0, len(todo), args.batch_prompts):
            chunk = todo[start : start + args.batch_prompts]
            batch = bon.run_batch([prompts[i] for i in chunk], **kwargs)
            for i, result in zip(chunk, batch, strict=True):
                _save(result, args.out / f"{i:04d}", {**extra, "prompt": prompts[i], "prompt_index": i})
            calls, full = calls + batch.denoiser_evals, full + batch.full_cost
            bar.update(len(chunk))
    done = len(prompts) - len(todo)
    print(
        f"{len(todo)} prompt(s) run"
        + (f", {done} already done" if done else "")
        + (f": {calls} denoiser calls ({calls / full:.2f} of full BoN)" if full else "")
        + f" -> {args.out}"
    )
    return 0


def _choose_plan(args: RunSettings, steps: int | None) -> Any:
    """The fit (:func:`~noisyclip_metrics.bon.search.fit_search`) for ``--budget`` on the recorded runs of
    ``--pipeline`` in ``--plan-from`` (the run with the most seeds), and that run's record; ``--n`` caps N."""
    import numpy as np

    from noisyclip_metrics.bon.offline import load_run
    from noisyclip_metrics.bon.search import SearchSpace, fit_search
    from noisyclip_metrics.evaluation.results import ResultsStore

    if args.budget is None:
        raise InputError("--plan-from: a plan is chosen for a budget; give --budget too")
    store = ResultsStore.open(args.plan_from)
    runs = [r for r in store.runs() if args.pipeline in (r.model_info.get("id"), r.model)]
    if not runs:
        raise InputError(
            f"--plan-from: {args.plan_from} has no run of {args.pipeline}; record one with "
            f"`noisyclip evaluate --model {args.pipeline} --out {args.plan_from}` and the scorers to prune with"
        )
    arrays = max((load_run(store, r.run_id) for r in runs), key=lambda a: len(a.seeds))
    if steps is not None and arrays.num_steps != steps:
        raise InputError(f"--steps: the recorded run has T = {arrays.num_steps} steps, this run {steps}")
    judged = (~np.isnan(arrays.judge)).sum(axis=1)
    max_n = min(int(judged.max()), args.n or int(judged.max()))
    space = SearchSpace(arrays, max_n=max_n, costs=_scorer_costs(getattr(args, "scorer_cost", None)))
    return fit_search(space, args.budget), arrays.info


def _check_budget(policy: Any, n: int, steps: int | None, budget: float) -> float:
    """Full trajectories of denoiser calls the policy spends on ``n`` candidates (scorings not counted: their cost
    is known from a recorded run only, see ``--plan-from``); an error when they exceed ``budget``."""
    from noisyclip_metrics.bon.policies import halving_counts, schedule_cost

    t = steps or 20
    if policy.name == "one-shot":
        decisions = [(policy.k, policy.m)]
    elif policy.name == "halving":
        # a --schedule may be shorter than the halvings to m (the survivors finish) or longer (alive = m already):
        # the cost is that of its first len(halving_counts) decisions
        decisions = list(zip(policy.schedule, halving_counts(n, policy.m), strict=False))
    elif policy.name == "funnel":
        decisions = list(zip(policy.schedule, policy.survivors, strict=True))
    else:
        raise InputError(f"--budget: the {policy.name} policy's cost depends on the prompt; use --plan-from")
    spent = schedule_cost(n, t, decisions)[0] / t
    if spent > budget + 1e-9:
        raise InputError(f"--budget: the {policy.name} policy on {n} candidates spends {spent:g} > {budget:g}")
    return round(spent, 6)


@dataclass(frozen=True)
class OfflineSettings:
    """Settings of ``noisyclip bon offline``.

    Args:
        results: results folder (noisyclip evaluate --out).
        run: one run id (default: every run).
        n: values of N.
        scorer_cost: scorer cost per scoring in denoiser-call equivalents, as SCORER=EQ (default: from the run's
            timing).
        final_scorer: final judge of the cascade rows (top-m, then this scorer; 'none': off).
    """

    results: Path
    run: str | None = None
    n: tuple[int, ...] = (2, 4, 6, 8)
    scorer_cost: tuple[str, ...] | None = None
    final_scorer: str = "clip-final"

    def __post_init__(self) -> None:
        _scorer_costs(self.scorer_cost)


def _scorer_costs(items: tuple[str, ...] | list[str] | None) -> dict[str, float]:
    """``SCORER=EQ`` items (``--scorer-cost``) as a mapping."""
    costs = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            costs[name] = float(value)
        except ValueError:
            raise InputError(f"--scorer-cost: expected SCORER=NUMBER, got {item!r}") from None
    return costs


def _run_offline(args: OfflineSettings) -> int:
    from noisyclip_metrics.bon.offline import compute_bon

    costs = _scorer_costs(args.scorer_cost)
    final = None if args.final_scorer.lower() == "none" else args.final_scorer
    table = compute_bon(args.results, args.run, ns=list(args.n), costs=costs, final_scorer=final)
    rows = table.to_pylist()
    runs = sorted({r["run_id"] for r in rows})
    # a scorer of the final image alone (clip-final) has rows at k = T only: its one-shot row is the full-cost pick
    last = {r["scorer"] for r in rows if r["k"] == r["num_steps"]}
    final_only = last - {r["scorer"] for r in rows if r["k"] != r["num_steps"]}
    print(f"{len(rows)} BoN rows for {len(runs)} run(s) -> {Path(args.results) / 'bon'}")
    for r in rows:
        if r["policy"] in ("random", "oracle") or (r["scorer"] in final_only and r["policy"] == "one-shot"):
            print(
                f"  {r['run_id']}  N={r['n']}  {r['scorer']:<12} cost {r['cost_fraction']:.2f}  "
                f"judge {r['judge_score']:.4f}"
            )
    return 0


@dataclass(frozen=True)
class CalibrateSettings:
    """Settings of ``noisyclip bon calibrate``.

    Args:
        results: results folder to fit on.
        out: calibration JSON to write.
        scorer: scorer the threshold policy will use.
        n: candidates per group.
        quantile: chance to drop the eventual best per step.
        run: one run id (default: every run with the same T).
    """

    results: Path
    out: Path
    scorer: str = "noisyclip"
    n: int = 6
    quantile: float = 0.1
    run: str | None = None


def _run_calibrate(args: CalibrateSettings) -> int:
    from noisyclip_metrics.bon.fitting import fit_threshold_calibration

    cal = fit_threshold_calibration(args.results, args.scorer, n=args.n, quantile=args.quantile, run_id=args.run)
    cal.save(args.out)
    print(json.dumps({"out": str(args.out), "groups": cal.groups, "num_steps": cal.num_steps}))
    return 0


@dataclass(frozen=True)
class FitSettings:
    """Settings of ``noisyclip bon fit``.

    Args:
        results: results folder to fit on.
        budget: cost budget, a fraction of N·T denoiser calls.
        policy: policy to fit (halving or threshold).
        scorer: scorer the policy will use.
        n: candidates N.
        run: one run id (default: every run).
        scorer_cost: scorer cost per scoring in denoiser-call equivalents, as SCORER=EQ (default: from the run's
            timing).
        crossfit: also estimate the policy on held-out prompts: this many random halvings averaged (0: off).
        out: threshold: write the fitted calibration JSON here (one run: use --run on a multi-run store).
    """

    results: Path
    budget: float
    policy: str = "halving"
    scorer: str = "noisyclip-x0"
    n: int = 6
    run: str | None = None
    scorer_cost: tuple[str, ...] | None = None
    crossfit: int = 20
    out: Path | None = None

    def __post_init__(self) -> None:
        from noisyclip_metrics.bon.fitting import FITTERS

        if self.policy not in FITTERS:
            raise InputError(f"--policy: expected one of {', '.join(sorted(FITTERS))}, got {self.policy!r}")
        _scorer_costs(self.scorer_cost)


def _run_fit(args: FitSettings) -> int:
    from noisyclip_metrics.bon.fitting import FITTERS
    from noisyclip_metrics.bon.offline import load_run
    from noisyclip_metrics.evaluation.results import ResultsStore

    store = ResultsStore.open(args.results)
    costs = _scorer_costs(args.scorer_cost)
    runs = [store.run(args.run)] if args.run else store.runs()
    if args.out is not None and (args.policy != "threshold" or len(runs) != 1):
        raise InputError(
            f"--out: writes one threshold calibration; got policy {args.policy!r} and {len(runs)} runs "
            "(use --policy threshold and --run)"
        )
    fit_fn, cross_fn = FITTERS[args.policy]
    for info in runs:
        arrays = load_run(store, info.run_id)
        fit = fit_fn(arrays, args.scorer, args.n, args.budget, costs=costs)
        out: dict[str, Any] = {
            "run_id": info.run_id,
            "model": info.model,
            "policy": args.policy,
            "scorer": fit.scorer,
            "n": fit.n,
            "budget": fit.budget,
        }
        if args.policy == "halving":
            out["schedule"] = list(fit.schedule)
        else:
            out.update(quantile=fit.calibration.quantile, min_step=fit.min_step, every=fit.every)
            if args.out is not None:
                out["calibration"] = str(fit.calibration.save(args.out))
        out.update(
            cost_fraction=round(fit.cost_fraction, 4), judge_score=round(fit.judge_score, 4), prompts=fit.prompts
        )
        if args.crossfit > 0:
            cross = cross_fn(arrays, args.scorer, args.n, args.budget, costs=costs, repeats=args.crossfit)
            out.update(
                crossfit_judge_score=round(cross.judge_score, 4), crossfit_cost_fraction=round(cross.cost_fraction, 4)
            )
        print(json.dumps(out))
    return 0


@dataclass(frozen=True)
class SearchSettings:
    """Settings of ``noisyclip bon search``.

    Args:
        results: results folder (noisyclip evaluate --out).
        run: one run id (default: every run).
        budgets: budgets in full trajectories (default: 1 2 3 4 6 8).
        max_n: candidates a search may start per prompt (default: the most judged seeds every prompt has).
        scorers: pruning scorers (default: every one the run recorded).
        reference_n: the ratios' reference: full-cost Best-of-this.
        repeats: random halvings of the prompts to cross-fit.
        scorer_cost: scorer cost per scoring in denoiser-call equivalents, as SCORER=EQ (default: from the run's
            timing).
    """

    results: Path
    run: str | None = None
    budgets: tuple[float, ...] | None = None
    max_n: int | None = None
    scorers: tuple[str, ...] | None = None
    reference_n: int = 6
    repeats: int = 20
    scorer_cost: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        bad = [b for b in self.budgets or () if not 0 < b < float("inf")]
        if bad:
            raise InputError(f"--budgets: expected numbers of full trajectories > 0, got {bad}")
        _scorer_costs(self.scorer_cost)


def _run_search(args: SearchSettings) -> int:
    from noisyclip_metrics.bon.search import BUDGETS, search_document
    from noisyclip_metrics.evaluation.results import ResultsStore

    budgets = tuple(args.budgets or BUDGETS)
    store = ResultsStore.open(args.results)
    runs = [store.run(args.run)] if args.run else store.runs()
    costs = _scorer_costs(args.scorer_cost)
    for info in runs:
        doc = search_document(
            store,
            info.run_id,
            budgets=budgets,
            max_n=args.max_n,
            scorers=list(args.scorers) if args.scorers else None,
            reference_n=args.reference_n,
            repeats=args.repeats,
            costs=costs,
        )
        print(f"## {info.model} (run {info.run_id}, {doc['prompts']} prompts, N up to {doc['max_n']})\n")
        print(_search_markdown(doc["rows"], args.reference_n) + "\n")
    print(f"-> {Path(args.results) / 'search'}")
    return 0


def _search_markdown(rows: list[dict[str, Any]], reference_n: int) -> str:
    from noisyclip_metrics.benchmarking import markdown_table

    def num(x: Any, digits: int = 3) -> str:
        return "" if x is None or x != x else f"{x:.{digits}f}"

    table = []
    for r in rows:
        what = {"best-of-b": f"clip-final Best-of-{r['n']}", "oracle": f"oracle best of {r['n']}"}.get(r["row"])
        if what is None:
            what = f"search {r['scorer']} / {r['family']}"
        interval = f"{num(r['vs_best_of_b'])} [{num(r['vs_best_of_b_low'])}, {num(r['vs_best_of_b_high'])}]"
        table.append(
            [
                num(r["budget"], 0),
                what,
                r["plan"] or "",
                num(r["spent"], 2),
                num(r["judge_score"], 4),
                interval if r["vs_best_of_b"] == r["vs_best_of_b"] else "",
                f"{num(r['ratio_to_reference'])} [{num(r['ratio_low'])}, {num(r['ratio_high'])}]",
            ]
        )
    head = ["B", "row", "plan (most chosen)", "spent", "judge", "vs Best-of-B", f"/ Best-of-{reference_n}"]
    return markdown_table(head, table)


_SUBCOMMANDS = {
    "run": Command(
        "run",
        "early-stopping BoN on a pipeline; saves the chosen image(s) and account.json",
        lambda p: add_dataclass_arguments(p, run_settings()),
        lambda args: _run_run(dataclass_from_args(run_settings(), args)),
    ),
    "offline": settings_command(
        "offline",
        "BoN outcomes from a results store into <results>/bon/<run_id>.parquet",
        OfflineSettings,
        _run_offline,
    ),
    "calibrate": settings_command(
        "calibrate", "fit the threshold policy's calibration on a results store", CalibrateSettings, _run_calibrate
    ),
    "fit": settings_command(
        "fit",
        "the best halving schedule or threshold settings within a cost budget, fitted on a results store",
        FitSettings,
        _run_fit,
    ),
    "search": settings_command(
        "search",
        "budget-matched search from a results store: judge score against budget for full-cost Best-of-B and "
        "cross-fitted pruned searches, into <results>/search/<run_id>.json",
        SearchSettings,
        _run_search,
    ),
}


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bon_command", metavar="{run,offline,calibrate,fit,search}", parser_class=OneLineParser)
    for name, command in _SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(sp)
        sp.set_defaults(_bon_run=command.run)
    p.epilog = (
        "Examples: noisyclip bon run --pipeline world:sd-base --prompt 'two red circles' --n 6 "
        "--policy one-shot --k 8 --scorer noisyclip --out runs/bon;  "
        "noisyclip bon offline --results runs/results;  "
        "noisyclip bon fit --results runs/results --policy halving --scorer noisyclip-x0 "
        "--budget 0.5;  noisyclip bon search --results runs/results --budgets 3 6"
    )


def _run(args: argparse.Namespace) -> int:
    run = getattr(args, "_bon_run", None)
    if run is None:
        sys.stderr.write("noisyclip bon: error: choose a subcommand: run, offline, calibrate, fit or search\n")
        return 2
    return int(run(args) or 0)


COMMANDS.register(
    "bon", Command("bon", "early-stopping Best-of-N: live on a pipeline, or from recorded results", _configure, _run)
)

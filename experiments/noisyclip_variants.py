"""Which NoisyCLIP recipe ranks world candidates best early? Training targets and step windows, compared side by side.

    python experiments/noisyclip_variants.py --work runs/world-build --out runs/variants [--models sd-base]
        [--replicates benchmark fresh-seeds fresh-prompts] [--steps 600]

Uses a finished world build's work folder (its world CLIP and its training trajectories). Trains one NoisyCLIP per
variant on the build's training trajectories; then, for each model and replicate, records trajectories (the world
*benchmark* prompts, held out from all training, with the benchmark seeds or fresh ones; or as many fresh prompts
outside the benchmark and the training pool), labels every final image with the oracle, and prints the pairwise accuracy
against the oracle's TIFA score at each step fraction (bootstrap 95% CI over prompts), next to frozen CLIP on the same
previews; then the Best-of-seeds judge score of the pick when choosing at each fraction, with its ratio to choosing by
frozen CLIP on the final images (``clip-final``). Variants: the training targets (prompt = the paper's InfoNCE,
filtered = oracle-aligned trajectories + hard-negative captions, distill = the frozen CLIP's judgment of the final
image; with ``--targets``, judged = distill plus the oracle's ranking of seeds by TIFA score, judged-aligned = the same
with 1/0 labels, listwise = distill plus the oracle's choice of the best of 4 seeds read at one step,
judged-curriculum = judged with the window reached from the clean latent over training, judged-noise = judged with a
noise-conditioned tower) at one window,
then step windows and controls for the best target. Every run is resumable; rerunning prints the table from the
finished runs. The benchmark seeds (``--seed-start``, ``--seeds``) are disjoint from the build's training seeds (10^9
and up). The window study picks its target on the data it reports (``--best-target`` fixes it beforehand;
``--targets-only`` compares the targets alone, with nothing chosen). ``study.json`` records what ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from noisyclip_metrics.diffusion.trajectory_store import TrajectoryStore, record_trajectories
from noisyclip_metrics.evaluation.stats import bootstrap_ci, bootstrap_ratio, group_matrix, pairwise_counts
from noisyclip_metrics.io.files import write_json
from noisyclip_metrics.provenance import TRAINING_SEEDS, git_revision
from noisyclip_metrics.scoring.model import NoisyCLIPModel
from noisyclip_metrics.training.dataset import TrajectorySource
from noisyclip_metrics.training.trainer import TrainConfig, train
from noisyclip_metrics.training.validation import embed_at_step
from noisyclip_metrics.world.benchmark import fresh_world_prompts, world_promptset
from noisyclip_metrics.world.build.presets import LABEL_FILES
from noisyclip_metrics.world.build.stages import load_world_pipeline
from noisyclip_metrics.world.oracle import judge_trajectories

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


#: ``--targets`` choices -> (variant name, TrainConfig overrides; ``labels`` names a world build label file kind).
TARGETS = {
    "prompt": ("target=prompt", {"target": "prompt"}),
    "filtered": ("target=filtered", {"target": "filtered"}),
    "distill": ("target=distill", {"target": "distill"}),
    "judged": ("target=judged", {"target": "judged", "labels": "tifa"}),
    "judged-aligned": ("target=judged labels=aligned", {"target": "judged", "labels": "aligned"}),
    "listwise": ("target=listwise", {"target": "listwise", "labels": "tifa"}),
    # TTSnap's clean-to-noisy curriculum on the shipped recipe: the window reached from the clean latent
    "judged-curriculum": (
        "target=judged curriculum",
        {"target": "judged", "labels": "tifa", "step_sampling": "curriculum:4-10"},
    ),
    # LRM's timestep-conditioned tower on the shipped recipe: the tower also reads each step's noise level
    "judged-noise": (
        "target=judged noise-conditioned",
        {"target": "judged", "labels": "tifa", "noise_conditioned": True},
    ),
}
TARGET_NAMES = ("prompt", "filtered", "distill")


def variants(best_target: str, targets: tuple[str, ...] = TARGET_NAMES) -> dict[str, dict[str, object]]:
    """Name -> TrainConfig overrides."""
    out: dict[str, dict[str, object]] = {
        TARGETS[t][0]: {"step_sampling": "window:4-10", **TARGETS[t][1]} for t in targets
    }
    for window in ("window:2-6", "window:8-14", "uniform", "final"):
        out[f"{best_target} {window}"] = {"target": best_target, "step_sampling": window}
    out[f"{best_target} window:4-10 read=x0"] = {"target": best_target, "step_sampling": "window:4-10", "read": "x0"}
    return out


#: ``--replicates`` choices: which prompts and seeds an evaluation records (``benchmark``: the world benchmark's
#: prompts with ``--seed-start``...; ``fresh-seeds``: the same prompts with ``--fresh-seed-start``...;
#: ``fresh-prompts``: as many new prompts, outside the benchmark and the training pool, with ``--seed-start``...).
REPLICATES = ("benchmark", "fresh-seeds", "fresh-prompts")


@dataclasses.dataclass
class Evaluation:
    """One (model, replicate): its recorded trajectories, the oracle's scores and every scorer's results on them."""

    model: str
    replicate: str
    seeds: list[int]
    source: TrajectorySource
    reference: np.ndarray
    resamples: int
    pairwise: dict[str, list[tuple[float, float, float]]] = dataclasses.field(default_factory=dict)
    picks: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)  # judge score of each prompt's pick

    def add(self, name: str, scores: dict[float, np.ndarray]) -> None:
        self.pairwise[name] = curve(scores, self.source, self.reference, self.resamples)
        self.picks[name] = [picked(scores[f], self.source, self.reference) for f in FRACTIONS]

    @property
    def n_prompts(self) -> int:
        return len({r.prompt_id for r in self.source.records})


def record_evaluation(
    work: Path,
    out: Path,
    model: str,
    replicate: str,
    prompts: tuple[list[str], list[str]],
    seeds: list[int],
    steps: int,
    guidance: float,
    resamples: int,
) -> Evaluation:
    """Record (resumably) and label one evaluation's trajectories into ``out/eval/<model>/<replicate>``."""
    folder = out / "eval" / model / replicate
    texts, ids = prompts
    store = record_trajectories(
        load_world_pipeline(work / f"unet-{model}" / "pipeline"),
        folder / "traj",
        texts,
        seeds,
        prompt_ids=ids,
        batch_size=64,
        num_inference_steps=steps,
        guidance_scale=guidance,
        height=32,
        width=32,
    )
    labels_path = folder / "labels.json"
    if labels_path.is_file():
        labels = json.loads(labels_path.read_text())
    else:
        labels = {key: float(res.score) for key, res in judge_trajectories(store.root).items()}
        write_json(labels_path, labels)
    source = TrajectorySource([store])
    reference = np.array([labels[r.key] for r in source.records])
    return Evaluation(model, replicate, seeds, source, reference, resamples)


@torch.no_grad()
def step_scores(model: NoisyCLIPModel, source: TrajectorySource, read_x0: bool) -> dict[float, np.ndarray]:
    """Every candidate's score at each fraction; ``read_x0`` previews the x̂0 estimate instead of the latent."""
    src = TrajectorySource(source.stores, read="x0") if read_x0 else source
    idx = list(range(len(src)))
    text = model.encode_text([r.prompt for r in src.records])
    return {
        f: (embed_at_step(model, src, idx, round(f * src.num_steps), 512) * text).sum(-1).numpy() for f in FRACTIONS
    }


@torch.no_grad()
def final_image_scores(model: NoisyCLIPModel, source: TrajectorySource) -> np.ndarray:
    """Frozen CLIP on every candidate's final image (the ``clip-final`` scorer)."""
    idx = list(range(len(source)))
    text = model.encode_text([r.prompt for r in source.records])
    return torch.cat(
        [
            (model.encode_images(source.images(idx[lo : lo + 512])) * text[lo : lo + 512]).sum(-1)
            for lo in range(0, len(idx), 512)
        ]
    ).numpy()


def curve(
    scores: dict[float, np.ndarray], source: TrajectorySource, reference: np.ndarray, resamples: int
) -> list[tuple[float, float, float]]:
    """(pairwise accuracy, lo, hi) against ``reference`` per fraction, within prompts (candidates = seeds)."""
    groups = [r.prompt_id for r in source.records]
    gold_m, _ = group_matrix(reference, groups)
    rows = []
    for f in FRACTIONS:
        pred_m, _ = group_matrix(scores[f], groups)
        correct, total = pairwise_counts(gold_m, pred_m)
        acc, lo, hi = (float(x[0]) for x in bootstrap_ratio(correct[:, None], total[:, None], n_resamples=resamples))
        rows.append((acc, lo, hi))
    return rows


def picked(scores: np.ndarray, source: TrajectorySource, reference: np.ndarray) -> np.ndarray:
    """Reference score of each prompt's highest-scoring candidate (ties: the first seed), in prompt order."""
    gold_m, _ = group_matrix(reference, [r.prompt_id for r in source.records])
    pred_m, _ = group_matrix(scores, [r.prompt_id for r in source.records])
    pred_m = np.where(np.isnan(pred_m), -np.inf, pred_m)
    return gold_m[np.arange(len(gold_m)), np.argmax(pred_m, axis=1)]


def mean_difference(a: np.ndarray, b: np.ndarray, resamples: int) -> list[float]:
    """Mean of ``a - b`` over prompts with its paired 95% bootstrap interval: [value, low, high]."""
    (est,) = bootstrap_ci(lambda x, y: float(np.mean(x - y)), a, b, n_resamples=resamples)
    return [est.value, est.low, est.high]


def print_tables(ev: Evaluation, final: np.ndarray, steps: int) -> None:
    """The pairwise-accuracy and Best-of-N tables of one evaluation, as markdown."""
    print(
        f"\nbenchmark trajectories: {ev.model} ({ev.replicate}), {len(ev.source)} candidates, {ev.n_prompts}"
        f" prompts, seeds {ev.seeds[0]}-{ev.seeds[-1]}; reference: oracle TIFA score; fine-tuning: {steps} steps"
        " per variant\n"
    )
    print("| scorer | " + " | ".join(f"{f:.1f}" for f in FRACTIONS) + " | mean 0.2-0.5 |")
    print("|---|" + "---:|" * (len(FRACTIONS) + 1))
    for name, rows in ev.pairwise.items():
        mid = np.mean([a for a, _, _ in rows[1:5]])
        cells = " | ".join(f"{a:.3f} [{lo:.2f}, {hi:.2f}]" for a, lo, hi in rows)
        print(f"| {name} | {cells} | {mid:.3f} |")
    final_bon = float(np.mean(final))
    print(f"\nBest-of-{len(ev.seeds)} judge score of the pick when choosing at each fraction (no cost counted; ")
    print(f"`clip-final` = frozen CLIP on the final images: {final_bon:.3f})\n")
    print("| scorer | " + " | ".join(f"{f:.1f}" for f in FRACTIONS) + " |")
    print("|---|" + "---:|" * len(FRACTIONS))
    for name, values in ev.picks.items():
        print(f"| {name} | " + " | ".join(f"{v.mean():.3f} ({v.mean() / final_bon:.3f})" for v in values) + " |")


def published(ev: Evaluation, final: np.ndarray) -> dict[str, object]:
    """One evaluation as the results page reads it: curves, Best-of-N picks and their paired differences."""
    groups, _ = group_matrix(ev.reference, [r.prompt_id for r in ev.source.records])
    x0 = ev.picks["frozen CLIP (x0 preview)"]
    return {
        "model": ev.model,
        "replicate": ev.replicate,
        "prompts": ev.n_prompts,
        "seeds": [ev.seeds[0], ev.seeds[-1]],
        "pairwise": {n: [list(r) for r in rows] for n, rows in ev.pairwise.items()},
        "best_of_n": {
            "clip-final": float(np.mean(final)),
            "random": float(np.nanmean(np.nanmean(groups, axis=1))),
            "oracle": float(np.nanmean(np.nanmax(groups, axis=1))),
            "scorers": {n: [float(v.mean()) for v in values] for n, values in ev.picks.items()},
            # pick's judge score minus frozen CLIP's (x̂0 preview, same fraction) and clip-final's, paired over prompts
            "vs_clip_x0": {
                n: [mean_difference(v, x, ev.resamples) for v, x in zip(values, x0, strict=True)]
                for n, values in ev.picks.items()
            },
            "vs_clip_final": {
                n: [mean_difference(v, final, ev.resamples) for v in values] for n, values in ev.picks.items()
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="a world build's work folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["sd-base"],
        help="world diffusion models whose trajectories to rank (the window study uses the first)",
    )
    parser.add_argument(
        "--replicates",
        nargs="+",
        default=["benchmark"],
        choices=REPLICATES,
        help="prompts and seeds of each model's evaluations (the window study uses the first)",
    )
    parser.add_argument("--prompts", type=int, default=None, help="prompts per evaluation (default: all 400)")
    parser.add_argument("--seeds", type=int, default=6, help="candidates per prompt")
    parser.add_argument(
        "--seed-start",
        type=int,
        default=0,
        help="first seed (seeds start..start+seeds-1; the build's training seeds are 10^9 and up)",
    )
    parser.add_argument("--fresh-seed-start", type=int, default=100, help="first seed of the fresh-seeds replicate")
    parser.add_argument("--steps", type=int, default=600, help="fine-tuning steps per variant")
    parser.add_argument("--best-target", default=None, help="target for the window study (default: best of three)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--targets-only", action="store_true", help="compare the targets, skip the window study")
    parser.add_argument(
        "--targets",
        nargs="+",
        default=list(TARGET_NAMES),
        choices=list(TARGETS),
        help="training targets to compare (default: prompt filtered distill)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the build's)")
    parser.add_argument(
        "--publish",
        type=Path,
        default=None,
        help="also write the study as one JSON document (for the results page), rewritten after every evaluation",
    )
    parser.add_argument(
        "--read",
        choices=("latents", "x0"),
        default="latents",
        help="what the target runs read (the window study keeps its own setting)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    build_cfg = json.loads((args.work / "build_config.json").read_text())
    sampler = build_cfg["sampler"]
    noisy = build_cfg["noisy"]
    training = [args.work / "trajectories" / m for m in noisy["models"]]
    bench = world_promptset(args.prompts)
    trained_prompts = {r.prompt for r in TrajectorySource([TrajectoryStore.open(t) for t in training]).records}
    fresh = fresh_world_prompts(len(bench.texts), frozenset(trained_prompts))
    plain = list(range(args.seed_start, args.seed_start + args.seeds))
    replicate_inputs = {
        "benchmark": ((bench.texts, bench.ids), plain),
        "fresh-seeds": (
            (bench.texts, bench.ids),
            list(range(args.fresh_seed_start, args.fresh_seed_start + args.seeds)),
        ),
        "fresh-prompts": ((fresh, [f"f{i:05d}" for i in range(len(fresh))]), plain),
    }
    if set(replicate_inputs["fresh-seeds"][1]) & set(plain) and "fresh-seeds" in args.replicates:
        parser.error("--fresh-seed-start: the fresh seeds overlap --seed-start's")

    def evaluation(model: str, replicate: str) -> Evaluation:
        prompts, seeds = replicate_inputs[replicate]
        return record_evaluation(
            args.work,
            args.out,
            model,
            replicate,
            prompts,
            seeds,
            sampler["num_inference_steps"],
            sampler["guidance_scale"],
            args.resamples,
        )

    recipe = noisy["runs"][0]  # batch size and learning rate of the build's first NoisyCLIP run
    base = TrainConfig(
        init=str(args.work / "clip" / "model"),
        trajectories=tuple(str(t) for t in training),
        out_dir="",
        steps=args.steps,
        batch_size=recipe["train_batch_size"],
        lr=recipe["lr"],
        warmup_steps=max(1, args.steps // 10),
        negatives="world",
        labels=str(args.work / "trajectories" / "labels.json"),
        val_fraction=0.0,
        checkpoint_every=args.steps // 3,
        num_threads=args.threads or build_cfg["threads"],
    )
    frozen = NoisyCLIPModel.from_pretrained(args.work / "clip" / "model")
    trained: dict[str, tuple[NoisyCLIPModel, bool]] = {}  # variant -> (model, reads x̂0)

    def train_variant(name: str, overrides: dict[str, object]) -> None:
        folder = args.out / name.replace(" ", "_").replace("=", "-").replace(":", "")
        overrides = dict(overrides)
        labels = str(args.work / "trajectories" / LABEL_FILES[str(overrides.pop("labels", "aligned"))])
        cfg = dataclasses.replace(base, out_dir=str(folder), labels=labels, **overrides)
        if not (folder / "model" / "model.safetensors").is_file():
            train(cfg, progress=False)
        trained[name] = (NoisyCLIPModel.from_pretrained(folder / "model"), cfg.read == "x0")

    def score(ev: Evaluation, names: list[str]) -> None:
        for name in names:
            model, read_x0 = trained[name]
            ev.add(name, step_scores(model, ev.source, read_x0))
            print(f"{ev.model} {ev.replicate} {name}: " + " ".join(f"{a:.3f}" for a, _, _ in ev.pairwise[name]))

    targets = variants("prompt", tuple(args.targets))
    suffix = " read=x0" if args.read == "x0" else ""
    for name in [n for n in targets if n.startswith("target=")]:
        train_variant(name + suffix, {**targets[name], "read": args.read})
    order = [(m, r) for m in args.models for r in args.replicates]
    finals: dict[tuple[str, str], np.ndarray] = {}
    evaluations: dict[tuple[str, str], Evaluation] = {}

    def start(key: tuple[str, str]) -> Evaluation:
        ev = evaluation(*key)
        ev.add("frozen CLIP (preview)", step_scores(frozen, ev.source, False))
        ev.add("frozen CLIP (x0 preview)", step_scores(frozen, ev.source, True))
        finals[key] = picked(final_image_scores(frozen, ev.source), ev.source, ev.reference)
        return ev

    first = evaluations[order[0]] = start(order[0])
    score(first, list(trained))
    if not args.targets_only:  # the window study: its target is chosen on the first evaluation
        early = {n: float(np.mean([a for a, _, _ in first.pairwise[n][1:5]])) for n in trained}
        best = args.best_target or max(early, key=early.get).split()[0].split("=")[1]
        windows = {n: o for n, o in variants(best).items() if not n.startswith("target=")}
        for name, overrides in windows.items():
            train_variant(name, overrides)
        score(first, list(windows))
    study = {
        "models": list(args.models),
        "replicates": list(args.replicates),
        "training_seeds": [TRAINING_SEEDS.start, TRAINING_SEEDS.stop - 1],
        "training_prompts": len(trained_prompts),
        "fine_tuning_steps": args.steps,
        "read": args.read,
        "targets": list(args.targets),
        "git_revision": git_revision(),
    }
    for key in order:
        ev = evaluations.get(key) or start(key)
        if key not in evaluations:
            score(ev, list(trained))
            evaluations[key] = ev
        print_tables(ev, finals[key], args.steps)
        docs = [published(evaluations[k], finals[k]) for k in order if k in evaluations]
        write_json(args.out / "study.json", study)
        if args.publish is not None:  # one document for the results page (tools/world_report.py)
            write_json(args.publish, {"study": study, "fractions": list(FRACTIONS), "evaluations": docs})


if __name__ == "__main__":
    main()

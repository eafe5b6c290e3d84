"""Which NoisyCLIP recipe ranks world candidates best early? Training targets and step windows, compared side by side.

    python experiments/noisyclip_variants.py --work runs/world-build --out runs/variants [--model sd-base] [--steps 600]

Uses a finished world build's work folder (its world CLIP and its training trajectories). Records trajectories of the
world *benchmark* prompts for one model (held out from all training), labels every final image with the oracle,
trains one NoisyCLIP per variant on the build's training trajectories, and prints the within-prompt pairwise accuracy
against the oracle's TIFA score at each step fraction (bootstrap 95% CI over prompts), next to frozen CLIP on the same
previews; then the Best-of-seeds judge score of the pick when choosing at each fraction, with its ratio to choosing by
frozen CLIP on the final images (``clip-final``). Variants: the training targets (prompt = the paper's InfoNCE,
filtered = oracle-aligned trajectories + hard-negative captions, distill = the frozen CLIP's judgment of the final
image; with ``--targets``, judged = distill plus the oracle's ranking of seeds by TIFA score, judged-aligned = the same
with 1/0 labels, listwise = distill plus the oracle's choice of the best of 4 seeds read at one step) at one window,
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
from noisyclip_metrics.evaluation.stats import bootstrap_ratio, group_matrix, pairwise_counts
from noisyclip_metrics.io.files import write_json
from noisyclip_metrics.provenance import TRAINING_SEEDS, git_revision
from noisyclip_metrics.scoring.model import NoisyCLIPModel
from noisyclip_metrics.training.dataset import TrajectorySource
from noisyclip_metrics.training.trainer import TrainConfig, train
from noisyclip_metrics.training.validation import embed_at_step
from noisyclip_metrics.world.benchmark import world_promptset
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
}
TARGET_NAMES = ("prompt", "filtered", "distill")


def variants(best_target: str, targets: tuple[str, ...] = TARGET_NAMES) -> dict[str, dict[str, object]]:
    """Name -> TrainConfig overrides."""
    out: dict[str, dict[str, object]] = {
        TARGETS[t][0]: {**TARGETS[t][1], "step_sampling": "window:4-10"} for t in targets
    }
    for window in ("window:2-6", "window:8-14", "uniform", "final"):
        out[f"{best_target} {window}"] = {"target": best_target, "step_sampling": window}
    out[f"{best_target} window:4-10 read=x0"] = {"target": best_target, "step_sampling": "window:4-10", "read": "x0"}
    return out


def record_benchmark(
    work: Path, out: Path, model: str, n_prompts: int | None, seeds: list[int], steps: int, guidance: float
) -> tuple[TrajectoryStore, dict[str, float]]:
    prompts = world_promptset(n_prompts)
    store = record_trajectories(
        load_world_pipeline(work / f"unet-{model}" / "pipeline"),
        out / "bench-traj",
        prompts.texts,
        seeds,
        prompt_ids=prompts.ids,
        batch_size=64,
        num_inference_steps=steps,
        guidance_scale=guidance,
        height=32,
        width=32,
    )
    labels_path = out / "bench-labels.json"
    if labels_path.is_file():
        return store, json.loads(labels_path.read_text())
    labels = {key: float(res.score) for key, res in judge_trajectories(store.root).items()}
    write_json(labels_path, labels)
    return store, labels


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


def best_of_n(scores: np.ndarray, source: TrajectorySource, reference: np.ndarray) -> float:
    """Mean reference score of each prompt's highest-scoring candidate (ties: the first seed)."""
    gold_m, _ = group_matrix(reference, [r.prompt_id for r in source.records])
    pred_m, _ = group_matrix(scores, [r.prompt_id for r in source.records])
    pred_m = np.where(np.isnan(pred_m), -np.inf, pred_m)
    return float(np.nanmean(gold_m[np.arange(len(gold_m)), np.argmax(pred_m, axis=1)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="a world build's work folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="sd-base", help="world diffusion model whose benchmark trajectories to rank")
    parser.add_argument("--prompts", type=int, default=None, help="benchmark prompts (default: all 400)")
    parser.add_argument("--seeds", type=int, default=6, help="candidates per benchmark prompt")
    parser.add_argument(
        "--seed-start",
        type=int,
        default=0,
        help="first benchmark seed (seeds start..start+seeds-1; the build's training seeds are 10^9 and up)",
    )
    parser.add_argument("--steps", type=int, default=600, help="fine-tuning steps per variant")
    parser.add_argument("--best-target", default=None, help="target for the window study (default: best of three)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--targets-only", action="store_true", help="compare the three targets, skip the window study")
    parser.add_argument(
        "--targets",
        nargs="+",
        default=list(TARGET_NAMES),
        choices=list(TARGETS),
        help="training targets to compare (default: prompt filtered distill)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the build's)")
    parser.add_argument(
        "--publish", type=Path, default=None, help="also write the study as one JSON document (for the results page)"
    )
    parser.add_argument(
        "--read",
        choices=("latents", "x0"),
        default="latents",
        help="what the three target runs read (the window study keeps its own setting)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    build_cfg = json.loads((args.work / "build_config.json").read_text())
    sampler = build_cfg["sampler"]
    store, labels = record_benchmark(
        args.work,
        args.out,
        args.model,
        args.prompts,
        list(range(args.seed_start, args.seed_start + args.seeds)),
        sampler["num_inference_steps"],
        sampler["guidance_scale"],
    )
    source = TrajectorySource([store])
    reference = np.array([labels[r.key] for r in source.records])
    noisy = build_cfg["noisy"]
    recipe = noisy["runs"][0]  # batch size and learning rate of the build's first NoisyCLIP run
    base = TrainConfig(
        init=str(args.work / "clip" / "model"),
        trajectories=tuple(str(args.work / "trajectories" / m) for m in noisy["models"]),
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
    results: dict[str, list[tuple[float, float, float]]] = {}
    bon: dict[str, list[float]] = {}  # Best-of-seeds judge score of the pick at each fraction

    def add(name: str, scores: dict[float, np.ndarray]) -> None:
        results[name] = curve(scores, source, reference, args.resamples)
        bon[name] = [best_of_n(scores[f], source, reference) for f in FRACTIONS]

    frozen = NoisyCLIPModel.from_pretrained(args.work / "clip" / "model")
    add("frozen CLIP (preview)", step_scores(frozen, source, False))
    add("frozen CLIP (x0 preview)", step_scores(frozen, source, True))
    final_bon = best_of_n(final_image_scores(frozen, source), source, reference)

    def run(name: str, overrides: dict[str, object]) -> None:
        folder = args.out / name.replace(" ", "_").replace("=", "-").replace(":", "")
        overrides = dict(overrides)
        labels = str(args.work / "trajectories" / LABEL_FILES[str(overrides.pop("labels", "aligned"))])
        cfg = dataclasses.replace(base, out_dir=str(folder), labels=labels, **overrides)
        if not (folder / "model" / "model.safetensors").is_file():
            train(cfg, progress=False)
        model = NoisyCLIPModel.from_pretrained(folder / "model")
        add(name, step_scores(model, source, cfg.read == "x0"))
        print(f"{name}: " + " ".join(f"{a:.3f}" for a, _, _ in results[name]), flush=True)

    targets = variants("prompt", tuple(args.targets))
    suffix = " read=x0" if args.read == "x0" else ""
    for name in [n for n in targets if n.startswith("target=")]:
        run(name + suffix, {**targets[name], "read": args.read})
    early = {n: float(np.mean([a for a, _, _ in results[n][1:5]])) for n in results if n.startswith("target=")}
    best = args.best_target or max(early, key=early.get).split()[0].split("=")[1]
    for name, overrides in variants(best).items():
        if not name.startswith("target=") and not args.targets_only:
            run(name, overrides)

    n_prompts = len({r.prompt_id for r in source.records})
    print(
        f"\nbenchmark trajectories: {args.model}, {len(source)} candidates, {n_prompts}"
        f" prompts; reference: oracle TIFA score; fine-tuning: {args.steps} steps per variant\n"
    )
    print("| scorer | " + " | ".join(f"{f:.1f}" for f in FRACTIONS) + " | mean 0.2-0.5 |")
    print("|---|" + "---:|" * (len(FRACTIONS) + 1))
    for name, rows in results.items():
        mid = np.mean([a for a, _, _ in rows[1:5]])
        cells = " | ".join(f"{a:.3f} [{lo:.2f}, {hi:.2f}]" for a, lo, hi in rows)
        print(f"| {name} | {cells} | {mid:.3f} |")
    groups, _ = group_matrix(reference, [r.prompt_id for r in source.records])
    random_bon, oracle_bon = float(np.nanmean(np.nanmean(groups, axis=1))), float(np.nanmean(np.nanmax(groups, axis=1)))
    print(
        f"\nBest-of-{args.seeds} judge score of the pick when choosing at each fraction (no cost accounting; "
        f"`clip-final` = frozen CLIP on the final images: {final_bon:.3f}, random {random_bon:.3f}, oracle-best "
        f"{oracle_bon:.3f})\n"
    )
    print("| scorer | " + " | ".join(f"{f:.1f}" for f in FRACTIONS) + " |")
    print("|---|" + "---:|" * len(FRACTIONS))
    for name, values in bon.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f} ({v / final_bon:.3f})" for v in values) + " |")
    write_json(args.out / "variants.json", {n: [list(r) for r in rows] for n, rows in results.items()})
    study = {
        "model": args.model,
        "benchmark_prompts": n_prompts,
        "benchmark_seeds": [args.seed_start, args.seed_start + args.seeds - 1],
        "training_seeds": [TRAINING_SEEDS.start, TRAINING_SEEDS.stop - 1],
        "fine_tuning_steps": args.steps,
        "read": args.read,
        "targets": list(args.targets),
        "git_revision": git_revision(),
    }
    write_json(args.out / "study.json", study)
    if args.publish is not None:  # one document for the results page (tools/world_report.py)
        write_json(
            args.publish,
            {
                "study": study,
                "fractions": list(FRACTIONS),
                "pairwise": {n: [list(r) for r in rows] for n, rows in results.items()},
                "best_of_n": {"clip-final": final_bon, "random": random_bon, "oracle": oracle_bon, "scorers": bon},
            },
        )


if __name__ == "__main__":
    main()

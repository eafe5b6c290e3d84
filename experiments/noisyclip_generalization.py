"""Does a NoisyCLIP's Best-of-N edge over frozen CLIP carry over to prompts unlike the ones it was fine-tuned on?

    python experiments/noisyclip_generalization.py --out runs/generalization [--fresh 200]
        [--scorers world:noisyclip-x0 DIR] [--wise 0.3 0.5 0.7]

The world's NoisyCLIPs are fine-tuned on the trajectories of the build's prompts (``noisy_training_prompts``: 250 of
the training split, then 250 drawn from the whole grammar, none of them a benchmark prompt); frozen CLIP
(``clip-final``, the reference of the Best-of-N tables) was trained on renders of thousands. This script records, for
every world model, the trajectories of two prompt sets, 6 seeds each, and judges every final image with the oracle
(TIFA score):

* ``fresh``: prompts drawn from the training split like the build's first 250, none of them among the build's prompts
  (unseen prompts of a distribution the NoisyCLIPs were trained on);
* ``benchmark``: the 400 benchmark prompts, reported in two parts, those built from training compositions only and
  those that use a colour-shape pair or relation combination held out from the UNets' training
  (``extra["heldout"]``; the build's coverage prompts use such compositions too, never the benchmark's prompts), and
  whole.

It then prints, per model and prompt set, the judge score of the Best-of-6 pick of each scorer (a NoisyCLIP reading the
x̂0 preview at step k of T, or the latent for one that reads latents) as a ratio to ``clip-final``'s pick, with 95%
paired bootstrap intervals over prompts. Stores and judgments are kept in ``--out`` and reused by a rerun (trajectory
stores resume; the benchmark's are the ones ``noisyclip evaluate`` would record: same pipelines, seeds and sampler).

``--wise A ...`` adds, for each scorer, its WiSE-FT interpolations with frozen ``world:clip`` at image-tower weight
``A`` (:func:`noisyclip_metrics.training.wise.interpolate_image_tower`; 0 is frozen CLIP reading the same input, 1
the scorer itself): the standard remedy when fine-tuning costs generalisation.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from noisyclip_metrics.diffusion.pipelines import load_pipeline
from noisyclip_metrics.diffusion.trajectory_store import record_trajectories
from noisyclip_metrics.evaluation.stats import bootstrap_ratio
from noisyclip_metrics.io.files import write_json
from noisyclip_metrics.scoring.factory import resolve_model
from noisyclip_metrics.scoring.model import NoisyCLIPModel
from noisyclip_metrics.training.dataset import TrajectorySource
from noisyclip_metrics.training.validation import embed_at_step
from noisyclip_metrics.training.wise import interpolate_image_tower
from noisyclip_metrics.world.assets import world_sampler
from noisyclip_metrics.world.benchmark import world_promptset
from noisyclip_metrics.world.build.presets import PRESETS
from noisyclip_metrics.world.build.stages import noisy_training_prompts
from noisyclip_metrics.world.oracle import judge_trajectories
from noisyclip_metrics.world.splits import make_split

MODELS = ("sd-small", "sd-base", "sd-large")
STEPS = (4, 5, 6, 7, 8, 10, 20)
CHUNK = 600


def fresh_prompts(n: int, seed: int = 4242) -> list[str]:
    """``n`` distinct training-split prompts that the full build's NoisyCLIP training did not use."""
    build = PRESETS.get("full")
    used = set(noisy_training_prompts(build))
    drawn = make_split(seed=build.seed).train(n * 5, seed=seed)
    fresh = [t for t in dict.fromkeys(p.text for p in drawn) if t not in used][:n]
    if len(fresh) < n:
        raise RuntimeError(f"only {len(fresh)} fresh prompts in {n * 5} draws")
    return fresh


def record(out: Path, model: str, prompts: Sequence[str], ids: Sequence[str], seeds: int) -> dict[str, float]:
    """Record (or resume) the trajectories of ``prompts`` x ``seeds`` on ``world:<model>``; oracle TIFA per key."""
    sampler = world_sampler()
    store = record_trajectories(
        load_pipeline(f"world:{model}"),
        out / model,
        list(prompts),
        list(range(seeds)),
        prompt_ids=list(ids),
        batch_size=64,
        num_inference_steps=sampler["num_inference_steps"],
        guidance_scale=sampler["guidance_scale"],
        height=32,
        width=32,
        progress=False,
    )
    path = out / f"judgments-{model}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    scores = {key: float(res.score) for key, res in judge_trajectories(store.root).items()}
    write_json(path, scores)
    return scores


@torch.no_grad()
def step_scores(
    model: NoisyCLIPModel, source: TrajectorySource, order: Sequence[int], steps: Sequence[int]
) -> np.ndarray:
    """``(len(steps), len(order))`` scores of each candidate's preview at each step."""
    text = model.encode_text([source.records[i].prompt for i in order])
    return np.stack([(embed_at_step(model, source, order, k, CHUNK) * text).sum(-1).numpy() for k in steps])


@torch.no_grad()
def final_scores(model: NoisyCLIPModel, source: TrajectorySource, order: Sequence[int]) -> np.ndarray:
    """Frozen CLIP on each candidate's final image (``clip-final``)."""
    text = model.encode_text([source.records[i].prompt for i in order])
    return np.concatenate(
        [
            (model.encode_images(source.images(list(order[lo : lo + CHUNK]))) * text[lo : lo + CHUNK]).sum(-1).numpy()
            for lo in range(0, len(order), CHUNK)
        ]
    )


def pick(judge: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per prompt, the judge score of the highest-scoring seed (``(P, S)`` arrays; ties: the first seed)."""
    return judge[np.arange(len(judge)), np.argmax(scores, axis=1)]


def ratio_cell(num: np.ndarray, den: np.ndarray, resamples: int) -> str:
    """``mean(num) / mean(den)`` with a 95% paired bootstrap interval over prompts."""
    value, lo, hi = (float(x) for x in bootstrap_ratio(num, den, n_resamples=resamples))
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the trajectory stores and judgments")
    parser.add_argument("--fresh", type=int, default=200, help="fresh training-distribution prompts (0: none)")
    parser.add_argument("--benchmark-prompts", type=int, default=None, help="first N benchmark prompts (default: all)")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--scorers",
        nargs="+",
        default=["world:noisyclip-x0"],
        help="NoisyCLIP ids or folders (each read as it was trained: x̂0 preview or latent)",
    )
    parser.add_argument(
        "--wise",
        type=float,
        nargs="+",
        default=[],
        metavar="ALPHA",
        help="also score WiSE-FT interpolations of each scorer with world:clip at these weights",
    )
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="decision steps k")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    fresh = fresh_prompts(args.fresh)
    bench = world_promptset(args.benchmark_prompts)
    sets = {
        "fresh": (fresh, [f"v{i:04d}" for i in range(len(fresh))]),
        "benchmark": (list(bench.texts), list(bench.ids)),
    }
    sets = {name: value for name, value in sets.items() if value[0]}  # --fresh 0: the benchmark only
    heldout = {p.id for p in bench if p.extra.get("heldout")}
    frozen = resolve_model("world:clip")
    scorers = {name: resolve_model(name) for name in args.scorers}
    scorers.update(
        {
            f"{name} WiSE-FT {alpha:g}": interpolate_image_tower(scorers[name], frozen, alpha)
            for name in args.scorers
            for alpha in args.wise
        }
    )
    rows = []
    for model in args.models:
        for set_name, (texts, ids) in sets.items():
            judgments = record(args.out / set_name, model, texts, [f"{model}/{i}" for i in ids], args.seeds)
            store = args.out / set_name / model
            by_key = {}
            for read in {s.config.reads for s in scorers.values()} | {"latents"}:
                by_key[read] = TrajectorySource([str(store)], read=read)
            source = by_key["latents"]
            position = {(r.prompt_id, r.seed): i for i, r in enumerate(source.records)}
            pids = list(dict.fromkeys(r.prompt_id for r in source.records))
            order = [position[(p, s)] for p in pids for s in range(args.seeds)]
            shape = (len(pids), args.seeds)
            judge = np.array([judgments[source.records[i].key] for i in order]).reshape(shape)
            reference = pick(judge, final_scores(frozen, source, order).reshape(shape))
            picks = {
                name: step_scores(s, by_key[s.config.reads], order, args.steps).reshape(len(args.steps), *shape)
                for name, s in scorers.items()
            }
            unseen = np.array([p.split("/", 1)[1] in heldout for p in pids])
            parts = (
                {"fresh": np.ones(len(pids), dtype=bool)}
                if set_name == "fresh"
                else {
                    "benchmark, training compositions": ~unseen,
                    "benchmark, held-out compositions": unseen,
                    "benchmark, all": np.ones(len(pids), dtype=bool),
                }
            )
            for part, mask in parts.items():
                if not mask.any():
                    continue
                for name, scores in picks.items():
                    cells = [
                        ratio_cell(pick(judge[mask], scores[i][mask]), reference[mask], args.resamples)
                        for i in range(len(args.steps))
                    ]
                    rows.append(
                        (
                            model,
                            part,
                            int(mask.sum()),
                            float(reference[mask].mean()),
                            float(judge[mask].mean()),
                            name,
                            cells,
                        )
                    )
            print(f"{model} {set_name}: done", flush=True)

    print(
        f"\nBest-of-{args.seeds}: judge score (oracle TIFA) of each scorer's pick at step k of "
        f"{world_sampler()['num_inference_steps']}, as a ratio to `clip-final`'s pick, 95% paired bootstrap "
        "intervals over prompts\n"
    )
    steps = " | ".join(f"k = {k}" for k in args.steps)
    print(f"| model | prompts | n | random | `clip-final` | scorer | {steps} |")
    print("|---|---|---:|---:|---:|---|" + "---|" * len(args.steps))
    for model, part, n, ref, rand, name, cells in rows:
        print(f"| {model} | {part} | {n} | {rand:.3f} | {ref:.3f} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

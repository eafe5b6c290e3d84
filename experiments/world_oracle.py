"""Measure the ShapesWorld oracle: exactness on clean renders, shuffled captions, robustness to perturbations.

Usage:
    python experiments/world_oracle.py [--n 2000] [--seed 0]

Prints Markdown tables:

1. clean renders of ``n`` sampled prompts (all templates equally likely): fraction judged fully aligned and mean
   TIFA score per template, with render / judge throughput;
2. shuffled captions (image i judged against the prompt of image perm(i), perm a derangement): the aligned rate
   the oracle gives, next to the ground truth (the prompt's questions answered from the rendered layout itself);
3. robustness: under Gaussian blur, additive Gaussian noise and colour jitter, the fraction of matched pairs still
   judged aligned, of truly mismatched shuffled pairs and of hard negatives (the prompt minimally edited: colour,
   shape, count, swapped colours, flipped relation / comparison / size) still judged misaligned; then per edit,
   per template and per question kind where the failures are.
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable

import numpy as np

from noisyclip_metrics.world import (
    HARD_NEGATIVE_EDITS,
    QUESTION_KINDS,
    TEMPLATES,
    colour_jitter,
    gaussian_blur,
    gaussian_noise,
    hard_negative,
    judge_objects,
    render_scene,
    sample_prompts,
    segment_image,
)

Perturb = Callable[[np.ndarray, np.random.Generator], np.ndarray]

PERTURBATIONS: dict[str, Perturb] = {
    "clean": lambda x, g: x,
    "blur 0.5": lambda x, g: gaussian_blur(x, 0.5),
    "blur 0.8": lambda x, g: gaussian_blur(x, 0.8),
    "blur 1.0": lambda x, g: gaussian_blur(x, 1.0),
    "blur 1.2": lambda x, g: gaussian_blur(x, 1.2),
    "noise 0.03": lambda x, g: gaussian_noise(x, 0.03, g),
    "noise 0.06": lambda x, g: gaussian_noise(x, 0.06, g),
    "blur 1.5": lambda x, g: gaussian_blur(x, 1.5),
    "noise 0.10": lambda x, g: gaussian_noise(x, 0.10, g),
    "noise 0.15": lambda x, g: gaussian_noise(x, 0.15, g),
    "jitter mild (b/c/s 0.1, hue 8 deg)": lambda x, g: colour_jitter(x, g, 0.1, 0.1, 0.1, 8.0),
    "jitter strong (b/c/s 0.2, hue 15 deg)": lambda x, g: colour_jitter(x, g, 0.2, 0.2, 0.2, 15.0),
    "jitter harsh (b/c/s 0.3, hue 25 deg)": lambda x, g: colour_jitter(x, g, 0.3, 0.3, 0.3, 25.0),
    "blur 0.5 + noise 0.03": lambda x, g: gaussian_noise(gaussian_blur(x, 0.5), 0.03, g),
    "blur 0.8 + noise 0.06 + jitter mild": lambda x, g: colour_jitter(
        gaussian_noise(gaussian_blur(x, 0.8), 0.06, g), g, 0.1, 0.1, 0.1, 8.0
    ),
}


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation without fixed points."""
    while True:
        perm = rng.permutation(n)
        if n < 2 or not (perm == np.arange(n)).any():
            return perm


def pct(x: float) -> str:
    """Format a fraction as a percentage."""
    return f"{100 * x:.1f}%"


def table(header: list[str], body: list[list[object]]) -> None:
    """Print a Markdown table followed by a blank line."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in body:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of rendered prompts (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of prompts, renders, shuffles and perturbations")
    args = parser.parse_args()
    n = args.n

    prompts = sample_prompts(n, seed=args.seed)
    t0 = time.perf_counter()
    renders = [render_scene(p, np.random.default_rng([args.seed, i])) for i, p in enumerate(prompts)]
    t_render = time.perf_counter() - t0
    images = [img.astype(np.float64) / 255.0 for img, _ in renders]
    truths = [layout.scene_objects() for _, layout in renders]
    perm = derangement(n, np.random.default_rng([args.seed, 1]))
    shuffled_truth = np.array([judge_objects(truths[i], prompts[perm[i]]).aligned for i in range(n)])
    # hard negatives: for every render, one minimal edit of its prompt per applicable edit kind
    neg_rng = np.random.default_rng([args.seed, 3])
    negatives: list[tuple[int, str, object]] = []
    for i, p in enumerate(prompts):
        for edit in HARD_NEGATIVE_EDITS:
            try:
                negatives.append((i, edit, hard_negative(p.spec, neg_rng, edit)[1]))
            except ValueError:
                continue
    neg_truth = np.array([judge_objects(truths[i], spec).aligned for i, _, spec in negatives])

    print(f"# ShapesWorld oracle: {n} sampled prompts (all templates equally likely), seed {args.seed}\n")
    rows = []
    t_clean = 0.0
    for k, (name, fn) in enumerate(PERTURBATIONS.items()):
        rng = np.random.default_rng([args.seed, 2, k])
        t0 = time.perf_counter()
        objects = [segment_image(fn(img, rng)) for img in images]
        matched = [judge_objects(o, p) for o, p in zip(objects, prompts, strict=True)]
        t_clean = t_clean or time.perf_counter() - t0
        shuffled = [judge_objects(objects[i], prompts[perm[i]]) for i in range(n)]
        hard = [judge_objects(objects[i], spec).aligned for i, _, spec in negatives]
        rows.append((name, matched, shuffled, np.array(hard)))

    clean_matched, clean_shuffled = rows[0][1], rows[0][2]
    print("## Clean renders, judged against their own prompt\n")
    body = []
    for t in TEMPLATES:
        res = [r for r, p in zip(clean_matched, prompts, strict=True) if p.template == t]
        if res:
            body.append([t, len(res), pct(np.mean([r.aligned for r in res])), f"{np.mean([r.score for r in res]):.3f}"])
    all_aligned = pct(np.mean([r.aligned for r in clean_matched]))
    body.append(["**all**", n, f"**{all_aligned}**", f"{np.mean([r.score for r in clean_matched]):.3f}"])
    table(["template", "n", "fully aligned", "mean TIFA score"], body)
    print(
        f"Throughput (this machine, 1 process): render {n / t_render:.0f} images/s; "
        f"segment + judge {n / t_clean:.0f} images/s.\n"
    )

    judged = np.array([r.aligned for r in clean_shuffled])
    print("## Shuffled captions (clean images, prompt of another image)\n")
    table(
        [
            "pairs",
            "judged aligned",
            "truly aligned (ground truth from the layout)",
            "oracle agrees with ground truth",
            "mean TIFA",
        ],
        [
            [
                n,
                pct(judged.mean()),
                pct(shuffled_truth.mean()),
                pct((judged == shuffled_truth).mean()),
                f"{np.mean([r.score for r in clean_shuffled]):.3f}",
            ]
        ],
    )

    mismatched = ~shuffled_truth
    print("## Robustness\n")
    print(
        "Matched: a render with its own prompt, perturbed, still judged aligned. Shuffled: truly misaligned shuffled "
        f"pairs ({int(mismatched.sum())} of {n}) still judged misaligned. Hard negatives: the prompt minimally edited "
        f"({len(negatives)} pairs, {pct(1 - neg_truth.mean())} truly misaligned) still judged misaligned. "
        "Balanced = mean of matched and hard-negative accuracy.\n"
    )
    body = []
    for name, matched, shuffled, hard in rows:
        m = np.mean([r.aligned for r in matched])
        s = np.mean([not r.aligned for r, bad in zip(shuffled, mismatched, strict=True) if bad])
        h = np.mean(~hard[~neg_truth])
        body.append([name, pct(m), pct(s), pct(h), pct((m + h) / 2), f"{np.mean([r.score for r in matched]):.3f}"])
    table(
        [
            "perturbation",
            "matched judged aligned",
            "shuffled judged misaligned",
            "hard negatives judged misaligned",
            "balanced",
            "mean TIFA (matched)",
        ],
        body,
    )

    print("### Hard negatives judged misaligned, per edit\n")
    edits = [e for e in HARD_NEGATIVE_EDITS if any(k == e for _, k, _ in negatives)]
    counts = {e: sum(k == e for _, k, _ in negatives) for e in edits}
    body = []
    for name, _, _, hard in rows:
        cells = []
        for e in edits:
            sel = [not a for a, (_, k, _), t in zip(hard, negatives, neg_truth, strict=True) if k == e and not t]
            cells.append(pct(np.mean(sel)))
        body.append([name, *cells])
    table(["perturbation", *(f"{e} ({counts[e]})" for e in edits)], body)

    print("### Matched pairs judged aligned, per template\n")
    body = []
    for name, matched, _, _ in rows:
        cells = []
        for t in TEMPLATES:
            res = [r.aligned for r, p in zip(matched, prompts, strict=True) if p.template == t]
            cells.append(pct(np.mean(res)) if res else "-")
        body.append([name, *cells])
    table(["perturbation", *TEMPLATES], body)

    print("### Wrong answers on matched pairs, per question kind (number of questions)\n")
    body = []
    for name, matched, _, _ in rows:
        wrong = collections.Counter(q.kind for r in matched for q in r.questions if not q.correct)
        body.append([name, *(wrong.get(k, 0) for k in QUESTION_KINDS)])
    table(["perturbation", *QUESTION_KINDS], body)


if __name__ == "__main__":
    main()

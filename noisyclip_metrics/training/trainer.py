"""Fine-tune the image tower (and its projection) of a CLIP on noisy trajectory latents.

Deterministic given the seed: each optimizer step draws its batch and its steps from a generator seeded by
``(seed, step)``, so a resumed run continues exactly where an uninterrupted run would be. Runs single-process or
under ``torchrun`` (DDP; gloo on CPU, nccl on GPU): every rank draws the same global batch, takes its contiguous
share, and the loss is computed on embeddings gathered from all ranks, so ``n`` processes train the same model as
one process with the same global batch.

Output folder::

    train_config.json     the configuration (a resumed run must match it)
    log.jsonl             one line per logged step: loss, learning rate, seconds since the run (re)started
    checkpoints/step-000100/{model/, state.pt}    periodic checkpoints (state loads with weights_only=True)
    model/                the final checkpoint (``NoisyCLIPModel.from_pretrained``)
    eval.json             held-out recall@1/5 and pairwise accuracy per step
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from noisyclip_metrics.errors import ConfigMismatchError, InputError
from noisyclip_metrics.provenance import describe_training_data
from noisyclip_metrics.registry import Registry
from noisyclip_metrics.scoring.factory import resolve_model, torch_device
from noisyclip_metrics.scoring.model import NoisyCLIPModel
from noisyclip_metrics.training.dataset import TrajectorySource, held_out, load_labels
from noisyclip_metrics.training.loop import LoopSettings, StepLog, StepOutput, replace_folder, run_loop, warmup_cosine
from noisyclip_metrics.training.negatives import negatives_source
from noisyclip_metrics.training.steps import parse_step_sampler
from noisyclip_metrics.training.targets import TARGETS, TargetBatch
from noisyclip_metrics.training.validation import evaluate_steps

__all__ = ["TrainConfig", "TrainResult", "train"]


OPTIMIZERS: Registry[Callable[[list[nn.Parameter], Any], torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adamw", lambda params, cfg: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay))
OPTIMIZERS.register(
    "sgd", lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
)


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of a NoisyCLIP fine-tuning run.

    Args:
        init: the CLIP to start from (checkpoint folder or model id); also the frozen teacher/reference.
        trajectories: trajectory store folders.
        out_dir: output folder (see the module docstring).
        steps: optimizer steps.
        batch_size: global batch size (split across DDP ranks).
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warmup steps before the cosine decay to ``min_lr_ratio * lr``.
        min_lr_ratio: floor of the cosine schedule.
        grad_clip: gradient-norm clip.
        optimizer: ``adamw`` (default) or ``sgd`` (plain SGD with momentum 0.9).
        step_sampling: which steps to show (see :mod:`noisyclip_metrics.training.steps`), e.g. ``window:20-29``.
        target: ``prompt``, ``filtered``, ``distill``, ``judged`` or ``listwise`` (see
            :mod:`noisyclip_metrics.training.targets`).
        read: ``latents`` (the paper) or ``x0`` (preview of the x̂0 estimate).
        train_preview: also learn the preview map (initialised from the model's map).
        noise_conditioned: make the tower noise-conditioned (:mod:`noisyclip_metrics.scoring.conditioning`; the
            timestep-conditioned towers of LRM, arXiv 2502.01051) and train its noise embedding with it; each sample
            is shown with the noise level of its step (:meth:`TrajectoryStore.noise_std
            <noisyclip_metrics.diffusion.trajectory_store.TrajectoryStore.noise_std>`). An ``init`` that is
            already noise-conditioned trains conditioned either way.
        negatives: hard-negative caption source name (``none``, or e.g. ``world``).
        labels: JSON file of per-trajectory judge scores (``{"<prompt_id>#<seed>": score}``; ``filtered``,
            ``judged``, ``listwise``).
        keep_threshold: with ``target="filtered"``, keep trajectories whose label is at least this.
        val_fraction: share of prompt ids held out for evaluation.
        eval_fractions: step fractions evaluated on the held-out prompts.
        seed: seed of everything random.
        checkpoint_every: steps between checkpoints (0: only the final model).
        log_every: steps between log lines.
        num_threads: torch CPU threads (fixed for reproducibility; 0 leaves torch's default).
        device: where the model trains: ``cpu``, ``cuda``, ``cuda:1``... or ``auto`` (under ``torchrun`` each process
            takes ``cuda:LOCAL_RANK``; CPU without CUDA). It may change when a run is resumed. On the CPU a resumed
            run equals an uninterrupted one bit for bit; on a GPU to within its kernels' nondeterminism (6.2e-05 on
            an H200, ``tests/gpu``).
    """

    init: str
    trajectories: tuple[str, ...]
    out_dir: str
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    optimizer: str = "adamw"
    step_sampling: str = "uniform"
    target: str = "prompt"
    read: str = "latents"
    train_preview: bool = False
    noise_conditioned: bool = False
    negatives: str = "none"
    labels: str | None = None
    keep_threshold: float = 1.0
    val_fraction: float = 0.1
    eval_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    seed: int = 0
    checkpoint_every: int = 0
    log_every: int = 10
    num_threads: int = 0
    device: str = "cpu"

    #: Fields that may differ when a run is resumed.
    RESUMABLE_CHANGES = ("checkpoint_every", "log_every", "num_threads", "device")

    def __post_init__(self) -> None:
        if isinstance(self.trajectories, (str, Path)):
            object.__setattr__(self, "trajectories", (str(self.trajectories),))
        object.__setattr__(self, "trajectories", tuple(str(t) for t in self.trajectories))
        object.__setattr__(self, "eval_fractions", tuple(float(f) for f in self.eval_fractions))
        for name in ("steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"val_fraction: expected a value in [0, 1), got {self.val_fraction}")
        TARGETS.get(self.target)
        OPTIMIZERS.get(self.optimizer)
        negatives_source(self.negatives)
        parse_step_sampler(self.step_sampling)
        if self.device != "auto":
            torch_device(self.device)
        if TARGETS.get(self.target).uses_labels and self.labels is None:
            raise InputError(f"labels: target {self.target!r} trains on judged trajectories and needs labels=")

    def to_json(self) -> dict[str, Any]:
        """JSON form (``train_config.json``)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class TrainResult:
    """What :func:`train` returns on rank 0."""

    model: NoisyCLIPModel
    out_dir: Path
    evaluation: list[dict[str, float]] = field(default_factory=list)
    final_loss: float = float("nan")


def _dist() -> tuple[int, int]:
    if dist.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(name: str) -> torch.device:
    """The training device: ``auto`` is ``cuda`` when CUDA is available, else the CPU; ``cuda`` without an index is
    ``cuda:LOCAL_RANK`` (under ``torchrun``, each process its own GPU; the current one otherwise)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch_device(name)
    assert device is not None
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return device


def _gather(x: torch.Tensor, world: int) -> torch.Tensor:
    if world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


class _ImageBranch(nn.Module):
    """Preview (optionally trainable) -> resize/normalise -> image tower -> normalised embedding."""

    def __init__(self, model: NoisyCLIPModel, train_preview: bool) -> None:
        super().__init__()
        self.model = model
        self.model.preview_weight.requires_grad_(train_preview)
        self.model.preview_bias.requires_grad_(train_preview)

    def forward(self, latents: torch.Tensor, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        preview = self.model.make_preview(latents, clamp=not self.model.preview_weight.requires_grad)
        if self.model.preview_weight.requires_grad:
            preview = preview.clamp(0.0, 1.0)  # clamp after the map so gradients reach the map where in range
        return self.model.encode_prepared(self.model._prepare_images(preview), noise_std)


def _check_resume(out: Path, cfg: TrainConfig) -> None:
    path = out / "train_config.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    new = cfg.to_json()
    diff = sorted(k for k in set(old) | set(new) if k not in cfg.RESUMABLE_CHANGES and old.get(k) != new.get(k))
    if diff:
        raise ConfigMismatchError(
            f"{out}: resuming a run started with another configuration (differences in {diff}); "
            "use a new out_dir or the original settings"
        )


class _RunCheckpoints:
    """A fine-tuning run's checkpoints: ``checkpoints/step-<step>/{model/, state.pt}``, each model loadable."""

    def __init__(self, out: Path, model: NoisyCLIPModel, optimizer: Any, schedule: Any) -> None:
        self.out, self.model, self.optimizer, self.schedule = out, model, optimizer, schedule
        self.log = StepLog(out / "log.jsonl")

    def resume(self) -> int:
        ckpts = sorted((self.out / "checkpoints").glob("step-*"))
        complete = [c for c in ckpts if (c / "state.pt").is_file() and (c / "model" / "model.safetensors").is_file()]
        if not complete:
            return 0
        self.model.load_state_dict(NoisyCLIPModel.from_pretrained(complete[-1] / "model").state_dict())
        state = torch.load(complete[-1] / "state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        return int(state["step"])

    def checkpoint(self, step: int) -> Path:
        final = self.out / "checkpoints" / f"step-{step:06d}"
        tmp = self.out / "checkpoints" / f".tmp-step-{step:06d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        self.model.save_pretrained(tmp / "model")
        state = {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "step": step}
        torch.save(state, tmp / "state.pt")
        return replace_folder(tmp, final)


def train(config: TrainConfig, progress: bool = True, stop_at: int | None = None) -> TrainResult | None:
    """Run (or resume) a fine-tuning run; returns the result on rank 0 and ``None`` on other ranks.

    Args:
        config: the run's configuration.
        progress: show a progress bar (rank 0).
        stop_at: stop after this many steps without finishing (as if interrupted; a later call resumes).
    """
    device = _device(config.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before the process group, so that nccl binds this process's GPU
    rank, world = _dist()
    if config.batch_size % world:
        raise InputError(f"batch_size: expected a multiple of the {world} DDP processes, got {config.batch_size}")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(config.out_dir)
    _check_resume(out, config)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")

    torch.manual_seed(config.seed)
    target = TARGETS.get(config.target)
    student = copy.deepcopy(resolve_model(config.init)).to(device)  # never train a cached/shared model in place
    if config.noise_conditioned and not student.config.noise_conditioned:
        student.condition_on_noise()
    teacher = resolve_model(config.init, device) if (target.needs_teacher or config.labels is None) else None
    for p in student.parameters():
        p.requires_grad_(False)
    for p in student.vision_parameters():
        p.requires_grad_(True)
    branch = _ImageBranch(student, config.train_preview)

    source = TrajectorySource(config.trajectories, read=config.read)
    labels = load_labels(config.labels) if config.labels else None
    train_idx = [i for i, r in enumerate(source.records) if not held_out(r.prompt_id, config.val_fraction)]
    val_idx = [i for i, r in enumerate(source.records) if held_out(r.prompt_id, config.val_fraction)]
    if target.uses_labels:
        assert labels is not None
        missing = [source.records[i].key for i in train_idx if source.records[i].key not in labels]
        if missing:
            raise InputError(f"labels: no score for {len(missing)} trajectories, e.g. {missing[:3]}")
    if target.needs_labels:
        assert labels is not None
        train_idx = [i for i in train_idx if labels[source.records[i].key] >= config.keep_threshold]
    if not train_idx:
        raise InputError("trajectories: no training trajectories left after the held-out split and filtering")
    siblings: dict[str, list[int]] = {}  # prompt id -> its training trajectories with a sibling (targets that rank)
    if target.ranks_seeds:
        for i in train_idx:
            siblings.setdefault(source.records[i].prompt_id, []).append(i)
        group = target.group_size
        siblings = {p: v for p, v in siblings.items() if len(v) >= group}
        if not siblings or config.batch_size % group:
            raise InputError(
                f"target {config.target!r}: expected prompts with >= {group} seeds and a batch_size "
                f"divisible by {group}, got batch_size {config.batch_size}"
            )
    group_prompts = sorted(siblings)
    negatives_fn = negatives_source(config.negatives) if target.uses_negatives else negatives_source("none")
    sampler = parse_step_sampler(config.step_sampling)
    for progress in (0.0, 1.0):  # both ends of a curriculum are valid steps
        sampler.ranges(source.num_steps, progress)

    params = [p for p in branch.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS.get(config.optimizer)(params, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.steps, config.warmup_steps, config.min_lr_ratio)
    )
    ddp_branch: nn.Module = branch
    if world > 1:
        ids = [device] if device.type == "cuda" else None
        ddp_branch = nn.parallel.DistributedDataParallel(branch, device_ids=ids)

    text_cache: dict[str, torch.Tensor] = {}

    def texts_for(prompts: Sequence[str]) -> torch.Tensor:
        # one text per forward: a batched embedding can differ in its last bits with the batch it came in, and a
        # resumed run fills the cache in other batches than an uninterrupted one (that broke resume == no resume)
        with torch.no_grad():
            for p in dict.fromkeys(prompts):
                if p not in text_cache:
                    text_cache[p] = student.encode_text([p])[0]
        return torch.stack([text_cache[p] for p in prompts])

    logit_scale = float(student.clip.logit_scale.exp())
    per_rank = config.batch_size // world
    group = target.group_size

    def step(i: int) -> StepOutput:
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + i)
        if target.ranks_seeds:  # groups of distinct seeds of one prompt
            idx = []
            for j in torch.randint(len(group_prompts), (config.batch_size // group,), generator=g).tolist():
                seeds = siblings[group_prompts[j]]
                idx += [seeds[k] for k in torch.randperm(len(seeds), generator=g)[:group].tolist()]
        else:
            picks = torch.randint(len(train_idx), (config.batch_size,), generator=g)
            idx = [train_idx[int(j)] for j in picks]
        progress = i / max(1, config.steps - 1)  # a curriculum's position: 0 at the first step, 1 at the last
        if target.shared_step:
            ks = sampler.sample(config.batch_size // group, source.num_steps, g, progress)
            ks = ks.repeat_interleave(group).tolist()
        else:
            ks = sampler.sample(config.batch_size, source.num_steps, g, progress).tolist()
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        z, scale = source.latents(idx[mine], ks[mine])
        level = source.noise_std(idx[mine], ks[mine]).to(device) if student.config.noise_conditioned else None
        image = _gather(ddp_branch((z * scale.view(-1, 1, 1, 1)).to(device), level), world)
        prompts = source.prompts(idx)
        unique = list(dict.fromkeys(prompts))
        negs = [n for n in dict.fromkeys(n for p in unique for n in negatives_fn(p)) if n not in set(unique)]
        teacher_image = None
        if target.needs_teacher:
            assert teacher is not None
            with torch.no_grad():
                teacher_image = teacher.encode_images(source.images(idx))
        batch = TargetBatch(
            image=image,
            texts=texts_for(unique + negs),
            prompt_index=torch.tensor([unique.index(p) for p in prompts], device=device),
            num_prompts=len(unique),
            logit_scale=logit_scale,
            teacher_image=teacher_image,
            labels=(
                torch.tensor([labels[source.records[j].key] for j in idx], device=device)
                if siblings and labels
                else None
            ),
        )
        # every rank holds the same full-batch loss; all_gather's backward sums each slice's gradient over the
        # ranks (world x the true gradient) and DDP divides by world again: the update equals one process's
        return StepOutput(target.loss(batch))

    settings = LoopSettings(
        config.steps,
        config.checkpoint_every,
        log_every=config.log_every,
        grad_clip=config.grad_clip,
        checkpoint_last=False,  # the final model is saved below, with what it was trained on
    )
    checkpoints = _RunCheckpoints(out, student, optimizer, schedule)
    ran = run_loop(
        settings, step, optimizer, schedule, params, checkpoints, main=rank == 0, progress=progress, stop_at=stop_at
    )
    if ran.stopped:
        return None
    if world > 1:
        dist.barrier()
    if rank != 0:
        return None
    # the scorers check what it reads; evaluation checks its training seeds and prompts against a run's
    trained_on = describe_training_data((r.seed for r in source.records), (r.prompt for r in source.records))
    student.config = dataclasses.replace(student.config, reads=config.read, trained_on=trained_on)
    student.save_pretrained(out / "model")
    evaluation: list[dict[str, float]] = []
    if val_idx:
        ref_model = teacher if teacher is not None else student
        if labels is not None and all(source.records[i].key in labels for i in val_idx):
            reference = torch.tensor([labels[source.records[i].key] for i in val_idx])
        else:  # frozen CLIP's judgment of the final image
            with torch.no_grad():
                reference = torch.cat(
                    [
                        ref_model.score_images(
                            source.images(val_idx[lo : lo + 256]), source.prompts(val_idx[lo : lo + 256])
                        )
                        for lo in range(0, len(val_idx), 256)
                    ]
                )
        steps = sorted({round(f * source.num_steps) for f in config.eval_fractions})
        student.eval()
        evaluation = evaluate_steps(student, source, val_idx, steps, reference.cpu())
        (out / "eval.json").write_text(json.dumps(evaluation, indent=2) + "\n", encoding="utf-8")
    return TrainResult(model=student, out_dir=out, evaluation=evaluation, final_loss=ran.last_loss)

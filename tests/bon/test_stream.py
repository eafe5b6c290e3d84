"""Continuous batching: every run of a stream equals the run alone, whatever step the other runs in its calls are at."""

from __future__ import annotations

import pytest

from noisyclip_metrics.bon import HalvingPolicy, OneShotPolicy
from noisyclip_metrics.bon.stream import StreamBestOfN
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.scorers import build_scorer
from tests.bon.test_early import SIZE, T, _same_run, _scheduler, models, pipes  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

STREAM = ["a red circle above a blue square", "a green triangle", "two blue squares", "a dog", "three yellow stars"]
SEEDS = [7, 8, 9, 10]


@pytest.mark.parametrize(
    ("family", "kind"),
    [
        ("sd", "ddim"),
        ("sd", "euler"),
        ("sd", "dpm++"),
        ("sdxl", "ddim"),
        ("sdxl", "euler"),
        ("sdxl", "dpm++"),
        ("sd3", "default"),
        ("sd3", "dpm++"),
        ("flux", "default"),
        ("flux", "dpm++"),
    ],
)
def test_every_run_of_a_stream_is_the_run_alone(pipes, models, family, kind):  # noqa: F811
    """Slots for 6 candidates and runs of 4: a run is admitted when an earlier one has been pruned, so denoiser calls
    mix runs at different steps (each with its own scheduler state, the multistep history included); each run's
    decisions, picks and images equal its run alone, and every call served several runs."""
    pipe = pipes(family)
    default = pipe.scheduler
    pipe.scheduler = _scheduler(pipe, family, "default" if kind == "ddim" and family == "sd" else kind)
    try:
        for name, policy in (("clip", OneShotPolicy(k=1, m=1)), ("clip-x0", HalvingPolicy((1, 2)))):
            scorer = build_scorer(name, model=models[family])
            stream = StreamBestOfN(pipe, scorer, policy, slots=6)
            batch = stream.run(STREAM, n=4, seeds=SEEDS, num_inference_steps=T, **SIZE)
            assert [r.prompts[0] for r in batch] == STREAM
            for prompt, result in zip(STREAM, batch, strict=True):
                _same_run(result, stream.engine(prompt, n=4, seeds=SEEDS, num_inference_steps=T, **SIZE))
            own_calls = sum(max(d.step for d in r.decisions) + 1 for r in batch)  # at least the calls each run made
            assert T < stream.calls < own_calls  # runs overlapped, and not in lock step
            assert stream.rows == batch.denoiser_evals  # every call's rows are the runs' counted calls
            assert batch[0].settings["denoiser_calls"] == stream.calls
    finally:
        pipe.scheduler = default


def test_chunked_calls_and_one_slot(pipes, models):  # noqa: F811
    """``max_batch`` splits the stream's calls; with one slot the runs go one after another; the picks stay."""
    pipe = pipes("sd")
    scorer = build_scorer("clip-x0", model=models["sd"])
    reference = StreamBestOfN(pipe, scorer, OneShotPolicy(k=2), slots=64).run(
        STREAM, n=3, num_inference_steps=T, **SIZE
    )
    assert reference[0].settings["denoiser_calls"] == T  # all admitted at once: lock step
    for kwargs in ({"slots": 64, "max_batch": 2}, {"slots": 1}):
        batch = StreamBestOfN(pipe, scorer, OneShotPolicy(k=2), **kwargs).run(
            STREAM, n=3, num_inference_steps=T, **SIZE
        )
        for a, b in zip(batch, reference, strict=True):
            _same_run(a, b)
    assert batch[0].settings["denoiser_calls"] == len(STREAM) * T  # one slot: no two runs share a call


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_runs_due_at_the_same_step_are_scored_in_one_call(pipes, models, family):  # noqa: F811
    """Every run decides at k = 2 (x̂0 from each run's own scheduler, Euler or flow matching) and, with a
    noise-conditioned tower, at each run's own noise level: the runs due together are scored in one call, with the
    scores of each run alone; one slot scores them one by one, and a cascade's final scorer is batched too."""
    import torch

    from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
    from tests.bon.test_early import PREVIEW

    pipe = pipes(family)
    conditioned = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview=PREVIEW[family], seed=0).condition_on_noise()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for p in conditioned.noise_embedding.parameters():
            torch.nn.init.normal_(p, std=0.5)
    for model in (models[family], conditioned):
        scorer = build_scorer("clip-x0", model=model)
        together = StreamBestOfN(pipe, scorer, OneShotPolicy(k=2), slots=64)
        batch = together.run(STREAM, n=3, seeds=SEEDS[:3], num_inference_steps=T, **SIZE)
        assert together.scorer_calls == 1  # five runs, one decision step, one call
        for prompt, result in zip(STREAM, batch, strict=True):
            _same_run(result, together.engine(prompt, n=3, seeds=SEEDS[:3], num_inference_steps=T, **SIZE))
        alone = StreamBestOfN(pipe, scorer, OneShotPolicy(k=2), slots=1)
        alone.run(STREAM, n=3, seeds=SEEDS[:3], num_inference_steps=T, **SIZE)
        assert alone.scorer_calls == len(STREAM)
    final = build_scorer("clip-final", model=models[family])
    cascade = StreamBestOfN(pipe, build_scorer("clip", model=models[family]), OneShotPolicy(k=1, m=2), final, slots=64)
    batch = cascade.run(STREAM[:3], n=3, seeds=SEEDS[:3], num_inference_steps=T, **SIZE)
    assert cascade.scorer_calls == 2  # the decisions at k = 1 together, then the final picks together
    for prompt, result in zip(STREAM[:3], batch, strict=True):
        _same_run(result, cascade.engine(prompt, n=3, seeds=SEEDS[:3], num_inference_steps=T, **SIZE))


def test_flux_true_cfg_and_bad_input_are_refused(pipes, models):  # noqa: F811
    """A FLUX run with true CFG calls the transformer twice per step; a stream refuses it before any call."""
    stream = StreamBestOfN(pipes("flux"), build_scorer("clip", model=models["flux"]))
    with pytest.raises(InputError, match="true CFG calls the transformer twice; run it alone"):
        stream.run(STREAM[:2], n=2, num_inference_steps=T, negative_prompt="a dog", true_cfg_scale=2.0, **SIZE)
    scorer = build_scorer("clip", model=models["sd"])
    with pytest.raises(InputError, match="slots: expected an integer >= 1"):
        StreamBestOfN(pipes("sd"), scorer, slots=0)
    with pytest.raises(InputError, match="prompts: expected a non-empty list"):
        StreamBestOfN(pipes("sd"), scorer).run("a dog", n=2, num_inference_steps=T, **SIZE)

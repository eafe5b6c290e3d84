"""Small random diffusers pipelines of every supported family, built offline (for tests, docs and smoke runs).

Each builder creates the components with random weights (seeded), saves the pipeline with ``save_pretrained`` and
loads it back with ``from_pretrained`` from that local folder: the code path a user takes with SD 1.5 / SDXL / SD3 /
FLUX weights. CLIP tokenizers are the real CLIP BPE built from open_clip's bundled vocabulary (truncated to a few
hundred merges to keep the text encoders tiny). Nothing is downloaded.

Examples:
    >>> import tempfile
    >>> pipe = tiny_pipeline("sd", tempfile.mkdtemp())
    >>> type(pipe).__name__, pipe.vae.config.latent_channels
    ('StableDiffusionPipeline', 4)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from noisyclip_metrics.registry import Registry
from noisyclip_metrics.scoring.tokenizers import load_clip_tokenizer, write_clip_bpe_files

__all__ = ["TINY_MERGES", "TINY_PIPELINES", "tiny_pipeline"]

#: Merges kept for the tiny tokenizers (a valid ~1,000-token CLIP BPE).
TINY_MERGES = 486

TINY_PIPELINES: Registry[Callable[[Path], Any]] = Registry("tiny pipeline family")


def _clip_text(cls: Any, vocab: int, hidden: int = 32, projection: int | None = None, seed: int = 0) -> Any:
    from transformers import CLIPTextConfig

    cfg = CLIPTextConfig(
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab,
        max_position_embeddings=77,
        projection_dim=projection or hidden,
    )
    torch.manual_seed(seed)
    return cls(cfg).eval()


def _tokenizer(folder: Path) -> Any:
    return load_clip_tokenizer(write_clip_bpe_files(folder / "_bpe", n_merges=TINY_MERGES), model_max_length=77)


def _vae(latent_channels: int, seed: int, **kwargs: Any) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=32,
        **kwargs,
    ).eval()


def _save_and_reload(pipe: Any, folder: Path, **none_components: None) -> Any:
    pipe.save_pretrained(folder)
    return type(pipe).from_pretrained(folder, **none_components)


@TINY_PIPELINES.register("sd")
def _tiny_sd(folder: Path) -> Any:
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tok = _tokenizer(folder)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
        attention_head_dim=8,
    )
    sched = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=_vae(4, 1),
        text_encoder=_clip_text(CLIPTextModel, len(tok)),
        tokenizer=tok,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    return _save_and_reload(pipe, folder)


@TINY_PIPELINES.register("sdxl")
def _tiny_sdxl(folder: Path) -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tok = _tokenizer(folder)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=32,
    )
    sched = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    pipe = StableDiffusionXLPipeline(
        unet=unet,
        vae=_vae(4, 1, force_upcast=False),
        scheduler=sched,
        text_encoder=_clip_text(CLIPTextModel, len(tok), seed=2),
        tokenizer=tok,
        text_encoder_2=_clip_text(CLIPTextModelWithProjection, len(tok), seed=3),
        tokenizer_2=tok,
    )
    return _save_and_reload(pipe, folder)


@TINY_PIPELINES.register("sd3")
def _tiny_sd3(folder: Path) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tok = _tokenizer(folder)
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=1,
        in_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=16,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(16, 1, shift_factor=0.0609, scaling_factor=1.5305, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=_clip_text(CLIPTextModelWithProjection, len(tok), seed=2),
        tokenizer=tok,
        text_encoder_2=_clip_text(CLIPTextModelWithProjection, len(tok), seed=3),
        tokenizer_2=tok,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    return _save_and_reload(pipe, folder, text_encoder_3=None, tokenizer_3=None)


def _tiny_t5(folder: Path) -> tuple[Any, Any]:
    """A tiny T5 encoder with a word-level tokenizer built in code (no sentencepiece model to download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words = [
        "<pad>",
        "</s>",
        "<unk>",
        *sorted(
            set(
                "a an the of and to left right above below red green blue yellow white circle square "
                "triangle cube sphere dog cat photo two three four big small no all them".split()
            )
        ),
    ]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(4)
    enc = T5EncoderModel(
        T5Config(
            vocab_size=len(words), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, decoder_start_token_id=0
        )
    ).eval()
    return enc, fast


@TINY_PIPELINES.register("flux")
def _tiny_flux(folder: Path) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    tok = _tokenizer(folder)
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        out_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )
    t5, t5_tok = _tiny_t5(folder)
    pipe = FluxPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(16, 1, shift_factor=0.1159, scaling_factor=0.3611, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=_clip_text(CLIPTextModel, len(tok), seed=2),
        tokenizer=tok,
        text_encoder_2=t5,
        tokenizer_2=t5_tok,
    )
    return _save_and_reload(pipe, folder)


def tiny_pipeline(family: str, folder: str | Path) -> Any:
    """Build, save to ``folder`` and reload a tiny random pipeline of ``family`` (sd, sdxl, sd3 or flux)."""
    builder = TINY_PIPELINES.get(family)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pipe = builder(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe

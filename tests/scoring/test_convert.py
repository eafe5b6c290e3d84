"""HF CLIPModel <-> open_clip CLIP conversion with tiny random models, fully offline."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import open_clip
import pytest
import torch
import transformers
from safetensors.torch import save_file

from noisyclip_metrics.errors import CheckpointError, InputError
from noisyclip_metrics.scoring.convert import (
    hf_clip_state_dict_to_open_clip,
    load_hf_clip,
    open_clip_config_from_hf,
    open_clip_text_to_hf,
    open_clip_text_token_features,
)
from noisyclip_metrics.scoring.tokenizers import ClipTextTokenizer, load_clip_tokenizer, write_clip_bpe_files

N_MERGES = 1000
VOCAB = 512 + N_MERGES + 2  # 1514; sot 1512, eot 1513
CTX = 16
ATOL = 1e-5
TEXTS = ["a photo of a red cube", "two blue spheres on a wooden table", "an astronaut riding a horse on mars " * 3]


def _features(out: Any) -> torch.Tensor:
    """transformers 5 returns a ModelOutput (projected features in ``pooler_output``); 4.x returns a tensor."""
    return out if torch.is_tensor(out) else out.pooler_output


def _hf_config(hidden_act: str = "quick_gelu", eos_token_id: int = VOCAB - 1, **text: Any) -> transformers.CLIPConfig:
    text_config = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": CTX,
        "hidden_act": hidden_act,
        "bos_token_id": VOCAB - 2,
        "eos_token_id": eos_token_id,
        "pad_token_id": VOCAB - 1,
    }
    text_config.update(text)
    vision_config = {
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "hidden_act": hidden_act,
    }
    return transformers.CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=32)


def _hf_model(config: transformers.CLIPConfig, seed: int = 0) -> transformers.CLIPModel:
    torch.manual_seed(seed)
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():  # make layer norms, biases and logit_scale non-trivial
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip_bpe_files(tmp_path_factory.mktemp("bpe"), n_merges=N_MERGES)


@pytest.fixture(scope="module")
def tokens(bpe_dir: Path) -> dict[str, torch.Tensor]:
    ours = ClipTextTokenizer(bpe_dir, context_length=CTX)(TEXTS)
    hf = load_clip_tokenizer(bpe_dir, model_max_length=CTX)
    hf_ids = hf(TEXTS, padding="max_length", truncation=True, return_tensors="pt").input_ids
    return {"open_clip": ours, "hf": hf_ids}


def test_tokenizers_agree_on_test_texts(tokens: dict[str, torch.Tensor]) -> None:
    ours, hf = tokens["open_clip"], tokens["hf"]
    eot = ours.argmax(dim=-1)
    assert (ours.max(dim=-1).values == VOCAB - 1).all() and eot[-1].item() == CTX - 1  # last text is truncated
    for row in range(len(TEXTS)):
        n = int(eot[row]) + 1
        assert torch.equal(ours[row, :n], hf[row, :n])
        assert (ours[row, n:] == 0).all() and (hf[row, n:] == VOCAB - 1).all()  # paddings differ: 0 vs eot


@pytest.mark.parametrize(
    ("hidden_act", "eos_token_id", "extra"),
    [
        ("quick_gelu", VOCAB - 1, {}),
        ("gelu", 2, {"layer_norm_eps": 1e-6}),  # HF's legacy argmax pooling and a non-default eps
    ],
)
def test_folder_round_trip_matches_hf(
    tmp_path: Path, tokens: dict[str, torch.Tensor], hidden_act: str, eos_token_id: int, extra: dict[str, Any]
) -> None:
    hf = _hf_model(_hf_config(hidden_act, eos_token_id, **extra))
    hf.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    model, cfg = load_hf_clip(tmp_path)
    assert isinstance(model, open_clip.model.CLIP) and not model.training
    assert cfg["quick_gelu"] is (hidden_act == "quick_gelu")
    assert cfg["text_cfg"]["pool_type"] == ("argmax" if eos_token_id == 2 else "eos")
    assert cfg["text_cfg"].get("norm_kwargs") == ({"eps": 1e-6} if extra else None)
    assert json.loads(json.dumps(cfg)) == cfg  # serialisable

    torch.manual_seed(1)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref_image = _features(hf.get_image_features(pixel_values=images))
        assert torch.allclose(model.encode_image(images), ref_image, atol=ATOL)
        ref_text = _features(hf.get_text_features(input_ids=tokens["hf"]))
        assert torch.allclose(model.encode_text(tokens["open_clip"]), ref_text, atol=ATOL)
        assert torch.allclose(model.logit_scale, hf.logit_scale)
        # the model can also be rebuilt from the returned config alone
        rebuilt = open_clip.model.CLIP(**cfg).eval()
        rebuilt.load_state_dict(model.state_dict())
        assert torch.allclose(rebuilt.encode_image(images), model.encode_image(images), atol=ATOL)


def test_in_memory_and_bin_match_safetensors(tmp_path: Path) -> None:
    hf = _hf_model(_hf_config())
    from_memory, cfg_memory = load_hf_clip(hf)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    hf.config.to_json_file(tmp_path / "config.json")
    from_bin, cfg_bin = load_hf_clip(str(tmp_path))
    assert cfg_memory == cfg_bin
    for key, value in from_memory.state_dict().items():
        assert torch.equal(value, from_bin.state_dict()[key]), key


def test_sharded_safetensors(tmp_path: Path) -> None:
    hf = _hf_model(_hf_config())
    sd = {k: v.contiguous() for k, v in hf.state_dict().items()}
    keys = sorted(sd)
    shards = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2 :]}
    for name, names in shards.items():
        save_file({k: sd[k] for k in names}, str(tmp_path / name))
    weight_map = {k: name for name, names in shards.items() for k in names}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    hf.config.to_json_file(tmp_path / "config.json")
    model, _ = load_hf_clip(tmp_path)
    assert torch.equal(model.visual.proj, hf.visual_projection.weight.t())


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_text_tower_export_matches_open_clip(tmp_path: Path, bpe_dir: Path, quick_gelu: bool) -> None:
    cfg = {
        "embed_dim": 32,
        "quick_gelu": quick_gelu,
        "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {
            "context_length": CTX,
            "vocab_size": VOCAB,
            "width": 64,
            "heads": 4,
            "layers": 2,
            "mlp_ratio": 3.0,
        },
    }
    torch.manual_seed(2)
    model = open_clip.model.CLIP(**cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    hf_text = open_clip_text_to_hf(model, cfg)
    assert isinstance(hf_text, transformers.CLIPTextModel) and not hf_text.training
    c = hf_text.config
    assert (c.hidden_act, c.intermediate_size, c.max_position_embeddings) == (
        "quick_gelu" if quick_gelu else "gelu",
        192,
        CTX,
    )
    assert (c.bos_token_id, c.eos_token_id, c.pad_token_id) == (VOCAB - 2, VOCAB - 1, VOCAB - 1)

    ours = ClipTextTokenizer(bpe_dir, context_length=CTX)(TEXTS)
    hf_ids = load_clip_tokenizer(bpe_dir, model_max_length=CTX)(
        TEXTS, padding="max_length", truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        ref = open_clip_text_token_features(model, ours)
        assert ref.shape == (len(TEXTS), CTX, 64)
        out = hf_text(input_ids=ours)
        assert torch.allclose(out.last_hidden_state, ref, atol=ATOL)
        # pooled (eot) features + open_clip's projection give encode_text, also for HF-tokenizer ids (eot padding)
        out_hf_ids = hf_text(input_ids=hf_ids)
        assert torch.allclose(out_hf_ids.pooler_output @ model.text_projection, model.encode_text(ours), atol=ATOL)
        # causal: a shorter prefix gives the prefix of the features
        assert torch.allclose(open_clip_text_token_features(model, ours[:, :5]), ref[:, :5], atol=ATOL)
        # and the exported tower survives save_pretrained / from_pretrained (what a diffusers pipeline does)
        hf_text.save_pretrained(tmp_path)
        again = transformers.CLIPTextModel.from_pretrained(tmp_path).eval()
        assert torch.allclose(again(input_ids=ours).last_hidden_state, ref, atol=ATOL)


def test_text_export_folds_layer_scale_and_eps() -> None:
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {
            "context_length": 8,
            "vocab_size": 600,
            "width": 32,
            "heads": 2,
            "layers": 2,
            "ls_init_value": 0.5,
            "norm_kwargs": {"eps": 1e-6},
            "act_kwargs": {"approximate": "tanh"},
        },
    }
    torch.manual_seed(3)
    model = open_clip.model.CLIP(**cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    hf_text = open_clip_text_to_hf(model, cfg)
    assert hf_text.config.layer_norm_eps == 1e-6 and hf_text.config.hidden_act == "gelu_pytorch_tanh"
    ids = torch.tensor([[598, 3, 17, 599, 0, 0, 0, 0], [598, 300, 599, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        assert torch.allclose(hf_text(ids).last_hidden_state, open_clip_text_token_features(model, ids), atol=ATOL)


def test_hf_to_open_clip_to_hf_text(tokens: dict[str, torch.Tensor]) -> None:
    hf = _hf_model(_hf_config("gelu"))
    model, cfg = load_hf_clip(hf)
    back = open_clip_text_to_hf(model, cfg)
    with torch.no_grad():
        expected = hf.text_model(input_ids=tokens["hf"]).last_hidden_state
        assert torch.allclose(back(input_ids=tokens["hf"]).last_hidden_state, expected, atol=ATOL)


# ------------------------------------------------------------------------------------------------- bad inputs


def test_missing_config_and_weights(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config.json"):
        load_hf_clip(tmp_path)
    _hf_config().to_json_file(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=r"model.safetensors"):
        load_hf_clip(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"model.safetensors"):
        load_hf_clip(tmp_path)


def test_wrong_model_type(tmp_path: Path) -> None:
    raw = _hf_config().to_dict()
    raw["model_type"] = "siglip"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="model_type"):
        load_hf_clip(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json"):
        load_hf_clip(tmp_path)


class _Malicious:
    """Unpickling this would call ``open(marker, "w")``, i.e. create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump", "non-tensor dict"])
def test_unsafe_bin_is_refused(tmp_path: Path, writer: str) -> None:
    _hf_config().to_json_file(tmp_path / "config.json")
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    if writer == "torch.save":
        torch.save({"logit_scale": _Malicious(marker)}, path)
    elif writer == "pickle.dump":
        with open(path, "wb") as fh:
            pickle.dump({"logit_scale": _Malicious(marker)}, fh)
    else:
        torch.save({"logit_scale": [1, 2, 3]}, path)  # weights_only accepts it, but it is not a tensor
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin"):
        load_hf_clip(tmp_path)
    assert not marker.exists()


def test_inconsistent_state_dict(tmp_path: Path) -> None:
    hf = _hf_model(_hf_config())
    sd = hf.state_dict()
    with pytest.raises(CheckpointError, match="missing key"):
        hf_clip_state_dict_to_open_clip({k: v for k, v in sd.items() if "layers.1.mlp.fc2" not in k}, hf.config)
    with pytest.raises(CheckpointError, match="unexpected"):
        hf_clip_state_dict_to_open_clip({**sd, "text_model.extra.weight": torch.zeros(1)}, hf.config)
    # weights from one config, config.json from another (wider MLP)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    _hf_config(intermediate_size=128).to_json_file(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="shape"):
        load_hf_clip(tmp_path)


def test_unsupported_hf_options() -> None:
    with pytest.raises(InputError, match="hidden_act"):
        open_clip_config_from_hf(_hf_config("relu"))
    mixed = _hf_config("gelu").to_dict()
    mixed["vision_config"]["hidden_act"] = "quick_gelu"
    with pytest.raises(InputError, match="quick_gelu"):
        open_clip_config_from_hf(mixed)
    four_channels = _hf_config().to_dict()
    four_channels["vision_config"]["num_channels"] = 4
    with pytest.raises(InputError, match="num_channels"):
        open_clip_config_from_hf(four_channels)
    with pytest.warns(UserWarning, match="outside the vocabulary"):  # HF would pool position 0; so does the copy
        assert open_clip_config_from_hf(_hf_config(eos_token_id=49407))["text_cfg"]["eos_id"] == 49407
    with pytest.raises(InputError, match="hf_config"):
        open_clip_config_from_hf("openai/clip-vit-base-patch32")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="path_or_model"):
        load_hf_clip(42)  # type: ignore[arg-type]


def test_text_export_rejects_bad_models() -> None:
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 600, "width": 32, "heads": 2, "layers": 1},
    }
    model = open_clip.model.CLIP(**cfg)
    with pytest.raises(InputError, match="width"):
        open_clip_text_to_hf(model, {**cfg, "text_cfg": {**cfg["text_cfg"], "width": 64}})
    with pytest.raises(InputError, match="quick_gelu"):
        open_clip_text_to_hf(model, {**cfg, "quick_gelu": True})
    with pytest.raises(InputError, match="eos_token_id"):
        open_clip_text_to_hf(model, cfg, eos_token_id=600)
    bidirectional = {**cfg, "text_cfg": {**cfg["text_cfg"], "no_causal_mask": True}}
    with pytest.raises(InputError, match="causal"):
        open_clip_text_to_hf(open_clip.model.CLIP(**bidirectional), bidirectional)
    with pytest.raises(InputError, match="clip_model"):
        open_clip_text_to_hf(torch.nn.Linear(2, 2), cfg)
    with pytest.raises(InputError, match="tokens"):
        open_clip_text_token_features(model, torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(InputError, match="tokens"):
        open_clip_text_token_features(model, torch.full((1, 8), 600))
    with pytest.raises(InputError, match="tokens"):
        open_clip_text_token_features(model, torch.zeros(8))


def test_exported_text_encoder_in_stable_diffusion_pipeline(bpe_dir: Path) -> None:
    """The use case: SD conditions on last_hidden_state of the exported tower, tokenized by the HF tokenizer."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {"context_length": CTX, "vocab_size": VOCAB, "width": 32, "heads": 2, "layers": 1},
    }
    torch.manual_seed(4)
    model = open_clip.model.CLIP(**cfg).eval()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        sample_size=16,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=open_clip_text_to_hf(model, cfg),
        tokenizer=load_clip_tokenizer(bpe_dir, model_max_length=CTX),
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    with torch.no_grad():
        prompt_embeds, _ = pipe.encode_prompt(TEXTS[:2], "cpu", 1, False)
        ours = ClipTextTokenizer(bpe_dir, context_length=CTX)(TEXTS[:2])
        reference = open_clip_text_token_features(model, ours)
    assert prompt_embeds.shape == (2, CTX, 32)
    for row, eot in enumerate(ours.argmax(dim=-1).tolist()):  # after the eot the paddings differ (0 vs eot)
        assert torch.allclose(prompt_embeds[row, : eot + 1], reference[row, : eot + 1], atol=ATOL)

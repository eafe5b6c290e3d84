"""save_pretrained / from_pretrained, safe loading, and import of Hugging Face CLIPModel checkpoints."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
import transformers

from noisyclip_metrics.errors import CheckpointError, InputError, UnknownNameError
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.scoring.tokenizers import load_clip_tokenizer, write_clip_bpe_files

TEXTS = ["a photo of a red cube", "two blue spheres on a table"]


def test_round_trip_keeps_scores_and_preview(tiny_model, latents, prompts, tmp_path):
    path = tiny_model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = NoisyCLIPModel.from_pretrained(path)
    assert loaded.preview == tiny_model.preview
    torch.testing.assert_close(loaded.score_latents(latents, prompts), tiny_model.score_latents(latents, prompts))


def test_round_trip_with_own_bpe_tokenizer(tmp_path, latents, prompts):
    bpe = write_clip_bpe_files(tmp_path / "bpe", n_merges=600)
    cfg = json.loads(json.dumps(TINY_TEST_CONFIG))
    cfg["text_cfg"]["vocab_size"] = 512 + 600 + 2
    model = NoisyCLIPModel.from_config(cfg, preview="sd1", seed=1, tokenizer_files=bpe)
    path = model.save_pretrained(tmp_path / "ckpt")
    assert (path / "tokenizer" / "vocab.json").is_file()
    loaded = NoisyCLIPModel.from_pretrained(path)
    torch.testing.assert_close(loaded.score_latents(latents, prompts), model.score_latents(latents, prompts))


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_checkpoint_folder_and_files_get_the_mode_the_umask_gives(tiny_model, tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tiny_model.save_pretrained(tmp_path / "ckpt")  # first write: the temporary folder is renamed
        again = tiny_model.save_pretrained(tmp_path / "ckpt")  # overwrite: swapped in place of the old one
    finally:
        os.umask(old)
    assert again == path
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [path, *path.iterdir()]}
    assert modes == {
        "ckpt": oct(0o777 & ~umask),
        "config.json": oct(0o666 & ~umask),
        "model.safetensors": oct(0o666 & ~umask),
    }


def test_preview_override_on_load(tiny_model, tmp_path):
    path = tiny_model.save_pretrained(tmp_path / "ckpt")
    assert NoisyCLIPModel.from_pretrained(path, preview="sdxl").config.preview_name == "sdxl"


def test_missing_files(tiny_model, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        NoisyCLIPModel.from_pretrained(tmp_path / "nope")
    path = tiny_model.save_pretrained(tmp_path / "ckpt")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors: missing"):
        NoisyCLIPModel.from_pretrained(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config.json: missing"):
        NoisyCLIPModel.from_pretrained(path)


def test_mismatched_config(tiny_model, tmp_path):
    path = tiny_model.save_pretrained(tmp_path / "ckpt")
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["model_cfg"]["vision_cfg"]["layers"] = 3
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"do not match config.json"):
        NoisyCLIPModel.from_pretrained(path)


def test_pickle_checkpoint_is_refused(tiny_model, tmp_path):
    path = tiny_model.save_pretrained(tmp_path / "ckpt")
    (path / "model.safetensors").unlink()
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(CheckpointError, match="pickle files"):
        NoisyCLIPModel.from_pretrained(path)
    from noisyclip_metrics.scoring.checkpoint import load_state_dict_file

    with pytest.raises(CheckpointError, match="weights_only"):
        load_state_dict_file(path / "pytorch_model.bin")
    assert not marker.exists()


def test_other_format_and_unknown_arch(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a noisyclip-metrics checkpoint"):
        NoisyCLIPModel.from_pretrained(tmp_path)
    with pytest.raises(UnknownNameError, match="did you mean 'ViT-B-32'"):
        NoisyCLIPModel.from_config("ViT-B-23")
    with pytest.raises(InputError, match="missing"):
        NoisyCLIPModel.from_config({"embed_dim": 8})


def test_builtin_open_clip_architecture_builds_offline():
    model = NoisyCLIPModel.from_config("RN50", preview="sdxl", seed=0)
    assert model.config.arch == "RN50" and model.config.image_size == 224


# ------------------------------------------------------------------------------- Hugging Face CLIPModel import
@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A small transformers CLIPModel with the full CLIP BPE vocabulary, saved like the official release."""
    folder = tmp_path_factory.mktemp("hf_clip")
    write_clip_bpe_files(folder)
    tok = load_clip_tokenizer(folder)
    cfg = transformers.CLIPConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        projection_dim=32,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(folder)
    return folder


def _pooled(out):
    return out if torch.is_tensor(out) else out.pooler_output


def test_imported_scorer_gives_transformers_embeddings(hf_folder):
    hf = transformers.CLIPModel.from_pretrained(hf_folder).eval()
    tok = load_clip_tokenizer(hf_folder)
    ours = NoisyCLIPModel.from_pretrained(hf_folder)
    assert ours.config.source == "transformers" and ours.config.preview_name == "sdxl"
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pixel_values = ours._prepare_images(images)
        ref_img = torch.nn.functional.normalize(_pooled(hf.get_image_features(pixel_values=pixel_values)), dim=-1)
        enc = tok(TEXTS, padding="max_length", max_length=77, return_tensors="pt")
        ref_txt = torch.nn.functional.normalize(_pooled(hf.get_text_features(**enc)), dim=-1)
        torch.testing.assert_close(ours.encode_images(images), ref_img, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.encode_text(TEXTS), ref_txt, atol=1e-5, rtol=0)


def test_imported_model_saves_and_reloads_in_our_format(hf_folder, tmp_path, latents, prompts):
    ours = NoisyCLIPModel.from_pretrained(hf_folder, preview="sd1")
    again = NoisyCLIPModel.from_pretrained(ours.save_pretrained(tmp_path / "ours"))
    torch.testing.assert_close(again.score_latents(latents, prompts), ours.score_latents(latents, prompts))


def _fine_tuned_copy(model, seed=5):
    """The model with a changed image tower and the same text tower (what NoisyCLIP fine-tuning produces)."""
    import copy

    tuned = copy.deepcopy(model)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for p in tuned.clip.visual.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return tuned


def test_shared_text_tower_round_trip(tiny_model, latents, prompts, tmp_path):
    from safetensors.torch import load_file

    from noisyclip_metrics.scoring.checkpoint import share_text_tower

    base = tiny_model.save_pretrained(tmp_path / "clip")
    tuned = _fine_tuned_copy(tiny_model)
    path = tuned.save_pretrained(tmp_path / "tuned")
    full_size = (path / "model.safetensors").stat().st_size
    share_text_tower(path, base)
    assert (path / "model.safetensors").stat().st_size < full_size / 2  # the tiny tower is mostly text embedding
    assert not [k for k in load_file(str(path / "model.safetensors")) if k.startswith("clip.token_embedding")]
    assert json.loads((path / "config.json").read_text())["text_from"] == "../clip"
    loaded = NoisyCLIPModel.from_pretrained(path)
    torch.testing.assert_close(loaded.score_latents(latents, prompts), tuned.score_latents(latents, prompts))
    # the pair moves together: a relative path
    moved = tmp_path / "moved"
    moved.mkdir()
    (path).rename(moved / "tuned")
    base.rename(moved / "clip")
    NoisyCLIPModel.from_pretrained(moved / "tuned")


def test_shared_text_tower_errors(tiny_model, tmp_path):
    from noisyclip_metrics.scoring.checkpoint import share_text_tower

    base = tiny_model.save_pretrained(tmp_path / "clip")
    other = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=9).save_pretrained(tmp_path / "other")
    with pytest.raises(CheckpointError, match="text tower differs"):
        share_text_tower(other, base)
    path = _fine_tuned_copy(tiny_model).save_pretrained(tmp_path / "tuned")
    share_text_tower(path, base)
    with pytest.raises(CheckpointError, match="already takes its text tower"):
        share_text_tower(path, base)
    with pytest.raises(CheckpointError, match="itself takes its text tower"):
        share_text_tower(other, path)
    # a different base in the same place is refused, a missing one named
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=9).save_pretrained(tmp_path / "clip")
    with pytest.raises(CheckpointError, match="text_sha256 differs"):
        NoisyCLIPModel.from_pretrained(path)
    import shutil

    shutil.rmtree(tmp_path / "clip")
    with pytest.raises(CheckpointError, match=r"model.safetensors is missing"):
        NoisyCLIPModel.from_pretrained(path)


def test_reads_is_recorded_and_validated(tiny_model, tmp_path):
    import copy
    import dataclasses

    model = copy.deepcopy(tiny_model)  # the fixture is shared: never change it in place
    model.config = dataclasses.replace(model.config, reads="x0")
    path = model.save_pretrained(tmp_path / "x0")
    assert NoisyCLIPModel.from_pretrained(path).config.reads == "x0"
    meta = json.loads((path / "config.json").read_text())
    del meta["config"]["reads"]  # checkpoints written before the field existed read latents
    (path / "config.json").write_text(json.dumps(meta))
    assert NoisyCLIPModel.from_pretrained(path).config.reads == "latents"
    meta["config"]["reads"] = "pixels"
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="reads: expected one of \\['latents', 'x0'\\], got 'pixels'"):
        NoisyCLIPModel.from_pretrained(path)

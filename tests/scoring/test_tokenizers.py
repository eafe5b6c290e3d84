"""Offline CLIP tokenizer utilities: vocab files, minimal merges, open_clip-style and HF tokenizers agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from noisyclip_metrics.errors import CheckpointError, InputError
from noisyclip_metrics.scoring.tokenizers import (
    EOT_TOKEN,
    FULL_N_MERGES,
    SOT_TOKEN,
    ClipTextTokenizer,
    load_clip_tokenizer,
    minimal_merges_for,
    write_clip_bpe_files,
)

SENTENCES = [
    "a photo of a red cube",
    "Two BLUE spheres   on a wooden table.",
    "the dog's ball, isn't it? 42 apples & 7 pears!",
    "an astronaut riding a horse on mars, trending on artstation, 4k",
    "café déjà vu — naïve façade",
    "hello-world_foo(bar) [x] {y} #hashtag @user",
    "",
]


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip_bpe_files(tmp_path_factory.mktemp("bpe_full"))


def _unpadded(row: torch.Tensor) -> list[int]:
    ids = row.tolist()
    return ids[: ids.index(max(ids)) + 1]  # up to and including the (first) eot, the largest id


def test_full_vocab_matches_open_clip_simple_tokenizer(full_dir: Path) -> None:
    from open_clip.tokenizer import SimpleTokenizer

    vocab = json.loads((full_dir / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408 and vocab[SOT_TOKEN] == 49406 and vocab[EOT_TOKEN] == 49407
    ours = ClipTextTokenizer(full_dir, context_length=77)
    reference = SimpleTokenizer(context_length=77)
    assert torch.equal(ours(SENTENCES), reference(SENTENCES))
    assert ours("a photo of a red cube")[0, :8].tolist() == [49406, 320, 1125, 539, 320, 736, 11353, 49407]
    # truncation keeps eot in the last position, exactly as SimpleTokenizer does
    long = " ".join(["cube"] * 40)
    assert torch.equal(ours(long, context_length=16), reference(long, context_length=16))
    assert ours(long, context_length=16)[0, -1].item() == 49407


def test_hf_tokenizer_from_same_folder_gives_same_ids(full_dir: Path) -> None:
    ours = ClipTextTokenizer(full_dir)
    hf = load_clip_tokenizer(full_dir, model_max_length=77)
    assert hf.bos_token_id == 49406 and hf.eos_token_id == 49407 and hf.pad_token_id == 49407
    assert hf.model_max_length == 77
    for text, row in zip(SENTENCES, ours(SENTENCES), strict=True):
        assert hf(text).input_ids == _unpadded(row), text
    padded = hf(SENTENCES[:2], padding="max_length", truncation=True, return_tensors="pt").input_ids
    assert padded.shape == (2, 77)


@pytest.mark.parametrize("n_merges", [0, 37, 1000])
def test_truncated_vocab_is_consistent(tmp_path: Path, n_merges: int) -> None:
    folder = write_clip_bpe_files(tmp_path, n_merges=n_merges)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 512 + n_merges + 2 and sorted(vocab.values()) == list(range(len(vocab)))
    assert merges[0] == "#version: 0.2" and len(merges) == n_merges + 1
    ours = ClipTextTokenizer(folder, context_length=40)
    assert ours.eot_token_id == len(vocab) - 1 and ours.sot_token_id == len(vocab) - 2
    assert ours.vocab_size == len(vocab)
    hf = load_clip_tokenizer(folder, model_max_length=40)
    tokens = ours(SENTENCES)
    assert int(tokens.max()) == ours.eot_token_id
    for text, row in zip(SENTENCES, tokens, strict=True):
        assert hf(text, truncation=True).input_ids == _unpadded(row), text
        # argmax pooling finds the eot
        assert row[row.argmax()].item() == ours.eot_token_id


def test_minimal_merges_for_is_minimal(tmp_path: Path) -> None:
    words = ["photo", "Red", "cube", "sphere", "a"]
    n = minimal_merges_for(words)
    assert minimal_merges_for(["a", "!"]) == 0
    tok = ClipTextTokenizer(write_clip_bpe_files(tmp_path / "n", n_merges=n), context_length=8)
    for word in words:
        assert len(tok.encode(word)) == 1, word
    tok_less = ClipTextTokenizer(write_clip_bpe_files(tmp_path / "n-1", n_merges=n - 1), context_length=8)
    assert any(len(tok_less.encode(word)) > 1 for word in words)
    # with the full vocabulary the single tokens have the openai ids
    assert tok.encode("photo") == [1125] and tok.encode("cube") == [11353]


@pytest.mark.parametrize("bad", [[""], ["red cube"], ["red-cube"], "cube", [3], ["<|endoftext|>"]])
def test_minimal_merges_for_rejects_bad_words(bad: object) -> None:
    with pytest.raises(InputError):
        minimal_merges_for(bad)  # type: ignore[arg-type]


def test_word_that_is_never_one_token() -> None:
    with pytest.raises(InputError, match="not a single token"):
        minimal_merges_for(["supercalifragilisticexpialidocious"])


@pytest.mark.parametrize("n_merges", [-1, FULL_N_MERGES + 1, 1.5, True])
def test_write_rejects_bad_n_merges(tmp_path: Path, n_merges: object) -> None:
    with pytest.raises(InputError, match="n_merges"):
        write_clip_bpe_files(tmp_path, n_merges=n_merges)  # type: ignore[arg-type]


def test_missing_or_inconsistent_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"vocab.json"):
        ClipTextTokenizer(tmp_path)
    with pytest.raises(CheckpointError, match=r"vocab.json"):
        load_clip_tokenizer(tmp_path)
    folder = write_clip_bpe_files(tmp_path / "ok", n_merges=5)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    vocab["extra"] = len(vocab)  # now eot is no longer the largest id
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(CheckpointError, match="largest id"):
        ClipTextTokenizer(folder)
    with pytest.raises(InputError, match="context_length"):
        ClipTextTokenizer(write_clip_bpe_files(tmp_path / "ok2", n_merges=5), context_length=1)


def test_call_shapes_and_padding(full_dir: Path) -> None:
    tok = ClipTextTokenizer(full_dir, context_length=12)
    out = tok("red cube")
    assert out.dtype == torch.long and out.shape == (1, 12)
    assert out[0].tolist() == [49406, 736, 11353, 49407] + [0] * 8
    with pytest.raises(InputError):
        tok([1, 2])  # type: ignore[list-item]
    with pytest.raises(InputError):
        tok(3)  # type: ignore[arg-type]

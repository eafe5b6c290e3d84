"""Offline CLIP tokenizers built from open_clip's bundled BPE merges (no model hub, no network).

OpenAI's CLIP tokenizer is byte-level BPE: 256 byte symbols, the same 256 symbols with the ``</w>`` end-of-word marker,
one token per merge (in merge order), then ``<|startoftext|>`` and ``<|endoftext|>``. With all 48,894 merges of
``bpe_simple_vocab_16e6.txt.gz`` that is the familiar 49,408-token vocabulary; keeping only the first ``n_merges``
merges gives a valid, smaller BPE (``512 + n_merges + 2`` tokens) for tiny test models. In every such vocabulary the
end-of-text id is the largest id, which is what open_clip's ``argmax`` text pooling relies on.

Examples:
    >>> import tempfile
    >>> folder = write_clip_bpe_files(tempfile.mkdtemp(), n_merges=minimal_merges_for(["photo", "red", "cube"]))
    >>> tok = ClipTextTokenizer(folder, context_length=10)
    >>> tok.vocab_size
    11356
    >>> tok("a photo of a red cube!").tolist()
    [[11354, 320, 1125, 539, 320, 736, 11353, 256, 11355, 0]]
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import regex
import torch

from noisyclip_metrics.errors import CheckpointError, InputError

if TYPE_CHECKING:
    import transformers

__all__ = [
    "EOT_TOKEN",
    "FULL_N_MERGES",
    "SOT_TOKEN",
    "ClipTextTokenizer",
    "bytes_to_unicode",
    "default_bpe_path",
    "load_clip_tokenizer",
    "minimal_merges_for",
    "write_clip_bpe_files",
]

FULL_N_MERGES = 49152 - 256 - 2
"""Number of merges OpenAI's SimpleTokenizer uses (48,894), giving a 49,408-token vocabulary."""
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


def default_bpe_path() -> Path:
    """Path of open_clip's bundled ``bpe_simple_vocab_16e6.txt.gz``, found without importing open_clip.

    Raises:
        CheckpointError: if open_clip is not installed or the file is missing.
    """
    spec = importlib.util.find_spec("open_clip")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / "bpe_simple_vocab_16e6.txt.gz"
        if path.is_file():
            return path
    raise CheckpointError("bpe_simple_vocab_16e6.txt.gz: not found; it ships with open_clip_torch (is it installed?)")


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """OpenAI/GPT-2 map from the 256 byte values to printable unicode characters (BPE base symbols).

    Examples:
        >>> m = bytes_to_unicode()
        >>> len(m), m[ord("a")], m[ord(" ")]
        (256, 'a', 'Ġ')
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


@lru_cache(maxsize=4)
def _read_merges(bpe_path: str) -> tuple[tuple[str, str], ...]:
    try:
        lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{bpe_path}: cannot read the gzipped BPE merges file ({exc})") from exc
    merges = tuple(tuple(line.split()) for line in lines[1 : FULL_N_MERGES + 1])
    if len(merges) != FULL_N_MERGES or any(len(m) != 2 for m in merges):
        raise CheckpointError(f"{bpe_path}: expected {FULL_N_MERGES} merges of two symbols after the header line")
    return merges  # type: ignore[return-value]


def _vocab_list(merges: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[str]:
    base = list(bytes_to_unicode().values())
    return base + [v + "</w>" for v in base] + ["".join(m) for m in merges] + [SOT_TOKEN, EOT_TOKEN]


def write_clip_bpe_files(
    out_dir: str | Path, n_merges: int | None = None, *, bpe_path: str | Path | None = None
) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` exactly as OpenAI's SimpleTokenizer builds its vocabulary.

    Args:
        out_dir: folder to write into (created if needed).
        n_merges: keep only the first ``n_merges`` merges (``0 .. 48894``); ``None`` keeps all of them. The vocabulary
            then has ``512 + n_merges + 2`` tokens, the last two being ``<|startoftext|>`` and ``<|endoftext|>``.
        bpe_path: gzipped merges file; defaults to open_clip's bundled ``bpe_simple_vocab_16e6.txt.gz``.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`; ``transformers.CLIPTokenizer.from_pretrained`` accepts it.

    Raises:
        InputError: if ``n_merges`` is out of range.

    Examples:
        >>> import json, tempfile
        >>> d = write_clip_bpe_files(tempfile.mkdtemp(), n_merges=10)
        >>> vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        >>> len(vocab), vocab["<|endoftext|>"]
        (524, 523)
    """
    if n_merges is None:
        n_merges = FULL_N_MERGES
    if isinstance(n_merges, bool) or not isinstance(n_merges, int) or not 0 <= n_merges <= FULL_N_MERGES:
        raise InputError(f"n_merges must be an int in [0, {FULL_N_MERGES}] or None, got {n_merges!r}")
    merges = _read_merges(str(bpe_path or default_bpe_path()))[:n_merges]
    vocab = _vocab_list(merges)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "vocab.json", "w", encoding="utf-8") as fh:
        json.dump({tok: i for i, tok in enumerate(vocab)}, fh, ensure_ascii=False)
    with open(out / "merges.txt", "w", encoding="utf-8") as fh:
        fh.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return out


def _get_pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(word[i], word[i + 1]) for i in range(len(word) - 1)}


def _bpe(token: str, ranks: dict[tuple[str, str], int]) -> tuple[tuple[str, ...], int]:
    """Apply BPE to one byte-encoded pre-token; return the symbols and the largest merge rank used (-1 if none)."""
    word = (*tuple(token[:-1]), token[-1] + "</w>")
    max_rank = -1
    pairs = _get_pairs(word)
    while pairs:
        bigram = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if bigram not in ranks:
            break
        max_rank = max(max_rank, ranks[bigram])
        first, second = bigram
        new_word: list[str] = []
        i = 0
        while i < len(word):
            try:
                j = word.index(first, i)
            except ValueError:
                new_word.extend(word[i:])
                break
            new_word.extend(word[i:j])
            i = j
            if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                new_word.append(first + second)
                i += 2
            else:
                new_word.append(word[i])
                i += 1
        word = tuple(new_word)
        pairs = _get_pairs(word) if len(word) > 1 else set()
    return word, max_rank


def minimal_merges_for(words: list[str], *, bpe_path: str | Path | None = None) -> int:
    """Smallest ``n_merges`` such that every word (lower-cased, with ``</w>``) is a single token.

    BPE merges are learned in order and a merge's two parts are always results of earlier merges, so a word that ends
    as one token is built by a tree of merges whose root (the merge yielding the whole word) has the largest rank; the
    answer is that rank + 1 (0 for one-character words).

    Args:
        words: words without whitespace, each one pre-token of the CLIP tokenizer (e.g. ``"cube"``, not ``"red-cube"``).
        bpe_path: gzipped merges file; defaults to open_clip's bundled one.

    Raises:
        InputError: if a word is empty, splits into several pre-tokens, or is not a single token even with all merges.

    Examples:
        >>> minimal_merges_for(["a", "photo", "of"])
        614
    """
    if isinstance(words, str) or not isinstance(words, (list, tuple)):
        raise InputError(f"words must be a list of strings, got {type(words).__name__}")
    ranks = {m: i for i, m in enumerate(_read_merges(str(bpe_path or default_bpe_path())))}
    byte_encoder = bytes_to_unicode()
    needed = 0
    for word in words:
        if not isinstance(word, str) or not word:
            raise InputError(f"words must be non-empty strings, got {word!r}")
        lowered = word.lower()
        pieces = _PATTERN.findall(lowered)
        if pieces != [lowered] or lowered in (SOT_TOKEN, EOT_TOKEN):
            raise InputError(f"word {word!r} is not a single pre-token of the CLIP tokenizer (it splits into {pieces})")
        symbols, max_rank = _bpe("".join(byte_encoder[b] for b in lowered.encode("utf-8")), ranks)
        if len(symbols) != 1:
            raise InputError(f"word {word!r} is not a single token even with all {FULL_N_MERGES} merges: {symbols}")
        needed = max(needed, max_rank + 1)
    return needed


def _basic_clean(text: str) -> str:
    import ftfy  # dependency of open_clip_torch; imported lazily to keep this module light

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def _whitespace_clean(text: str) -> str:
    return regex.sub(r"\s+", " ", text).strip()


def _read_vocab_folder(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    for path in (vocab_path, merges_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; expected a CLIP BPE folder with vocab.json and merges.txt")
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{vocab_path}: not a JSON object of token -> id ({exc})") from exc
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise CheckpointError(f"{vocab_path}: expected a JSON object mapping tokens to integer ids")
    merges: list[tuple[str, str]] = []
    for lineno, line in enumerate(merges_path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise CheckpointError(f"{merges_path}:{lineno}: expected two symbols separated by a space, got {line!r}")
        merges.append((parts[0], parts[1]))
    return vocab, merges


def load_clip_tokenizer(folder: str | Path, model_max_length: int = 77) -> transformers.CLIPTokenizer:
    """Load a Hugging Face ``CLIPTokenizer`` from a folder written by :func:`write_clip_bpe_files` (offline).

    Args:
        folder: folder with ``vocab.json`` and ``merges.txt``.
        model_max_length: maximum sequence length the tokenizer pads/truncates to (77 for CLIP).

    Raises:
        CheckpointError: if a file is missing.
        InputError: if ``model_max_length`` is not a positive int.

    Examples:
        >>> import tempfile
        >>> tok = load_clip_tokenizer(write_clip_bpe_files(tempfile.mkdtemp(), n_merges=0), model_max_length=5)
        >>> tok("ab", padding="max_length").input_ids
        [512, 64, 321, 513, 513]
    """
    import transformers

    if isinstance(model_max_length, bool) or not isinstance(model_max_length, int) or model_max_length < 2:
        raise InputError(f"model_max_length must be an int >= 2, got {model_max_length!r}")
    path = Path(folder)
    for name in ("vocab.json", "merges.txt"):
        if not (path / name).is_file():
            raise CheckpointError(f"{path / name}: missing; expected a CLIP BPE folder with vocab.json and merges.txt")
    return transformers.CLIPTokenizer.from_pretrained(str(path), model_max_length=model_max_length)


@dataclass
class ClipTextTokenizer:
    """open_clip-style tokenizer (``SimpleTokenizer`` semantics) reading ``vocab.json`` + ``merges.txt``.

    Each text becomes ``[sot, ids..., eot, 0, 0, ...]`` of length ``context_length``; too long texts are truncated and
    the last position is set to eot, so open_clip's ``argmax`` pooling always finds the eot token (the largest id,
    checked at construction).

    Args:
        folder: folder written by :func:`write_clip_bpe_files` (or any OpenAI-CLIP ``vocab.json``/``merges.txt``).
        context_length: length of every row of the output.

    Raises:
        CheckpointError: if the files are missing or malformed, or the eot token is not the largest id.
        InputError: if ``context_length`` < 2.

    Examples:
        >>> import tempfile
        >>> tok = ClipTextTokenizer(write_clip_bpe_files(tempfile.mkdtemp()), context_length=6)
        >>> tok(["a photo of a red cube"]).tolist()
        [[49406, 320, 1125, 539, 320, 49407]]
    """

    folder: str | Path
    context_length: int = 77
    encoder: dict[str, int] = field(init=False, repr=False)
    bpe_ranks: dict[tuple[str, str], int] = field(init=False, repr=False)
    sot_token_id: int = field(init=False)
    eot_token_id: int = field(init=False)
    _cache: dict[str, list[int]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.context_length, bool) or not isinstance(self.context_length, int) or self.context_length < 2:
            raise InputError(f"context_length must be an int >= 2, got {self.context_length!r}")
        self.folder = Path(self.folder)
        self.encoder, merges = _read_vocab_folder(self.folder)
        for special in (SOT_TOKEN, EOT_TOKEN):
            if special not in self.encoder:
                raise CheckpointError(f"{self.folder / 'vocab.json'}: special token {special} is missing")
        self.sot_token_id = self.encoder[SOT_TOKEN]
        self.eot_token_id = self.encoder[EOT_TOKEN]
        if self.eot_token_id != max(self.encoder.values()):
            raise CheckpointError(
                f"{self.folder / 'vocab.json'}: {EOT_TOKEN} has id {self.eot_token_id} but the largest id is "
                f"{max(self.encoder.values())}; open_clip's argmax pooling needs eot to be the largest id"
            )
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self._cache = {SOT_TOKEN: [self.sot_token_id], EOT_TOKEN: [self.eot_token_id]}

    @property
    def vocab_size(self) -> int:
        """Number of token ids (largest id + 1)."""
        return self.eot_token_id + 1

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without sot/eot (ftfy + html unescape, whitespace collapse, lower case, BPE)."""
        if not isinstance(text, str):
            raise InputError(f"texts must be strings, got {type(text).__name__}")
        byte_encoder = bytes_to_unicode()
        ids: list[int] = []
        for piece in _PATTERN.findall(_whitespace_clean(_basic_clean(text)).lower()):
            cached = self._cache.get(piece)
            if cached is None:
                symbols, _ = _bpe("".join(byte_encoder[b] for b in piece.encode("utf-8")), self.bpe_ranks)
                try:
                    cached = [self.encoder[s] for s in symbols]
                except KeyError as exc:
                    raise CheckpointError(
                        f"{self.folder / 'vocab.json'}: BPE symbol {exc.args[0]!r} is not in the vocabulary"
                    ) from None
                self._cache[piece] = cached
            ids.extend(cached)
        return ids

    def __call__(self, texts: list[str] | str, context_length: int | None = None) -> torch.LongTensor:
        """Tokenize to a ``(B, context_length)`` int64 tensor: sot, ids, eot, zero padding (eot kept when truncating).

        Args:
            texts: one string or a list of strings.
            context_length: overrides the instance's ``context_length``.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)):
            raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
        length = self.context_length if context_length is None else context_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 2:
            raise InputError(f"context_length must be an int >= 2, got {length!r}")
        result = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(tokens) > length:
                tokens = tokens[:length]
                tokens[-1] = self.eot_token_id
            result[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return result  # type: ignore[return-value]

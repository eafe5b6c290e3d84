"""Hard-negative captions of world prompts (``negatives="world"`` in training configurations)."""

from __future__ import annotations

import hashlib

import numpy as np

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world.grammar import describe, parse_prompt
from noisyclip_metrics.world.sampling import hard_negative

__all__ = ["world_negatives"]


def world_negatives(prompt: str, n: int = 2) -> list[str]:
    """Up to ``n`` minimal edits of a world prompt that contradict it (deterministic per prompt).

    Examples:
        >>> world_negatives("a red circle to the left of a blue square", n=1)
        ['a blue circle to the left of a red square']
    """
    try:
        spec = parse_prompt(prompt)
    except InputError:
        return []
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big"))
    out: list[str] = []
    for _ in range(4 * n):
        text = describe(hard_negative(spec, rng)[1])
        if text not in out and text != prompt:
            out.append(text)
        if len(out) == n:
            break
    return out

"""Scoring latents: previews (:mod:`.preview`), x̂0 (:mod:`.x0`), the NoisyCLIP model and its checkpoints
(:mod:`.model`, :mod:`.checkpoint`, :mod:`.convert`, :mod:`.tokenizers`), model resolution (:mod:`.factory`), the
scorers (:mod:`.scorers`), the torchmetrics Metric and its functional form (:mod:`.metric`, :mod:`.functional`) and
the t2v-metrics interface (:mod:`.t2v`).

Imports :mod:`noisyclip_metrics.io` and the top-level modules only.
"""

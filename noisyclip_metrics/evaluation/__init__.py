"""Evaluation: benchmarks (:mod:`.benchmarks`), judges and judgments files (:mod:`.judges`), the runner
(:mod:`.runner`) and its results store (:mod:`.results`), timestep-versus-accuracy curves (:mod:`.curves`),
correlation with judgments (:mod:`.correlate`) and the statistics they use (:mod:`.stats`).

Imports :mod:`noisyclip_metrics.diffusion` and the layers below it.
"""

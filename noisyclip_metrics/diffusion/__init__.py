"""Diffusion pipelines: loading and naming them (:mod:`.pipelines`), capturing trajectories during sampling
(:mod:`.trajectory`) and storing them on disk (:mod:`.trajectory_store`).

Imports :mod:`noisyclip_metrics.scoring` and the layers below it.
"""

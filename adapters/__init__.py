"""Benchmark specs (YAML), installed as ``noisyclip_metrics.adapters``; loaded by
``noisyclip_metrics.evaluation.benchmarks``."""

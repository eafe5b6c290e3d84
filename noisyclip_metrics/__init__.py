"""noisyclip-metrics."""

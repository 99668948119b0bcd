"""Scoring what a model predicted: metrics, significance tests and intervals, decision thresholds, a run's
convergence checks, monitoring and the shared figures (chapters 02-06). Imports only ``setup`` and ``data``."""

"""Inference, metrics, results tables and plots."""

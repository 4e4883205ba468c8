"""Accuracy, size and latency of (compressed) models."""

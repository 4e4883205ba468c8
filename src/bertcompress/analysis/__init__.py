"""Analyses of what a model's attention heads do (patterns, roles, ablations), written as tables and heatmaps."""
from bertcompress.analysis.heads import HeadAnalysis, analyze_heads, write_head_analysis

__all__ = ["HeadAnalysis", "analyze_heads", "write_head_analysis"]

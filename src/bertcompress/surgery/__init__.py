"""Pure functions that physically shrink models: heads, FFN neurons, layers, low-rank Linears."""
from bertcompress.surgery.ffn import prune_ffn_neurons
from bertcompress.surgery.heads import head_count, prune_heads
from bertcompress.surgery.layers import prune_layers
from bertcompress.surgery.linear import LowRankLinear, factorize

__all__ = ["prune_heads", "head_count", "prune_ffn_neurons", "prune_layers", "factorize", "LowRankLinear"]
